//! The pod side of the kubelet: the desired pods, one worker per pod, the pod
//! lifecycle event generator, and the sync that makes the runtime match a pod.
//!
//! ```text
//!  pods informer (spec.nodeName=<node>) ─┐
//!  PLEG relist (1 s, CRI list calls) ────┼─▶ notify worker[uid] ─▶ sync(uid)
//!  back-off / resync timers ─────────────┘        │
//!      RuntimePod::read ─▶ compute_actions ─▶ CRI calls (sandbox, pulls,
//!      create/start/stop) ─▶ api_status ─▶ status::Manager ─▶ pods/status PATCH
//! ```
//!
//! A pod removed from the API (or never known: an orphan found by the PLEG) is
//! killed and cleaned up: containers and sandboxes removed, volumes unmounted, the
//! pod and log directories deleted. A pod being deleted is killed with its grace
//! period, its final status posted, and then it is deleted with grace 0.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client_base::events::Recorder;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::KubeletConfiguration;
use crate::cri;
use crate::env::{NodeValues, Objects};
use crate::images::ImageManager;
use crate::kuberuntime::dns::{ClusterDns, HostDns, pod_dns};
use crate::kuberuntime::{self, Backoff, RuntimePod, SandboxContext, labels, pod_desc, pod_ids};
use crate::machine::MachineInfo;
use crate::metrics::Metrics;
use crate::prober;
use crate::static_pods;
use crate::status::{self, StatusContext, Waiting};
use crate::volumes::{self, VolumeManager};

/// What the agent is built from.
pub struct AgentConfig {
    /// The node's name.
    pub node_name: String,
    /// The node's hostname (host-network pods take it).
    pub hostname: String,
    /// The node's IP.
    pub node_ip: Option<IpAddr>,
    /// The configuration.
    pub cfg: KubeletConfiguration,
    /// `--root-dir`.
    pub root_dir: PathBuf,
    /// The machine.
    pub machine: MachineInfo,
}

/// The pod side of the kubelet; shared by its tasks.
pub struct Agent {
    c: AgentConfig,
    runtime: Arc<dyn cri::Runtime>,
    runtime_name: String,
    images: ImageManager,
    volumes: VolumeManager,
    objects: Arc<dyn Objects>,
    /// The status writer.
    pub status: status::Manager,
    recorder: Option<Recorder>,
    metrics: Metrics,
    host_dns: HostDns,
    cluster_dns: ClusterDns,
    /// The pods the node should run, by UID.
    pods: Mutex<HashMap<String, Arc<Pod>>>,
    admitted: Mutex<HashSet<String>>,
    backoff: Mutex<Backoff>,
    waiting: Mutex<HashMap<String, HashMap<String, Waiting>>>,
    workers: Mutex<HashMap<String, Arc<Notify>>>,
    /// When each pod was first seen, for `kubelet_pod_start_duration_seconds`.
    first_seen: Mutex<HashMap<String, Instant>>,
    /// Liveness, readiness and startup probes.
    probes: Arc<prober::Manager>,
    /// The API client (none in standalone mode).
    client: Option<kube::Client>,
    /// The Node's UID once registered (mirror pods' owner).
    node_uid: Mutex<String>,
    /// Mirror pods in the API: `ns/name` → (UID, the static pod's hash).
    mirrors: Mutex<HashMap<String, (String, String)>>,
    /// Static pods by UID: `ns/name`, to delete the mirror once the pod is gone.
    statics: Mutex<HashMap<String, String>>,
}

impl prober::Sink for Agent {
    fn changed(&self, uid: &str) {
        if let Some(n) = self.workers.lock().get(uid) {
            n.notify_one();
        }
    }

    fn unhealthy(&self, uid: &str, container: &str, message: String) {
        let Some(pod) = self.pods.lock().get(uid).cloned() else {
            return;
        };
        let init = pod.spec.as_ref().is_some_and(|s| {
            s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
        });
        self.event(
            &pod,
            Some(field_path(init, container)),
            true,
            "Unhealthy",
            message,
        );
    }
}

/// How long until a worker syncs again by itself.
const RETRY: Duration = Duration::from_secs(2);

/// What starting a pod's containers needs besides the pod.
struct StartContext<'a> {
    uid: &'a str,
    rt: &'a RuntimePod,
    sandbox_id: &'a str,
    sandbox: &'a crate::cri::v1::PodSandboxConfig,
    volumes: &'a volumes::PodVolumes,
    /// The pod's `/etc/hosts` (none on the host network).
    hosts: Option<&'a std::path::Path>,
    node: &'a NodeValues,
}

/// Why a container was not started: what it waits with, and when to try again.
struct NotStarted {
    waiting: Waiting,
    retry: Duration,
}

/// A reference to a pod (or one of its containers) for events.
fn pod_ref(pod: &Pod, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

fn field_path(init: bool, name: &str) -> String {
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

impl Agent {
    /// The agent over `runtime`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c: AgentConfig,
        runtime: Arc<dyn cri::Runtime>,
        runtime_name: String,
        objects: Arc<dyn Objects>,
        volumes: VolumeManager,
        recorder: Option<Recorder>,
        metrics: Metrics,
        client: Option<kube::Client>,
    ) -> Arc<Self> {
        let host_dns =
            HostDns::parse(&std::fs::read_to_string(&c.cfg.resolv_conf).unwrap_or_default());
        let cluster_dns = ClusterDns {
            servers: c.cfg.cluster_dns.clone(),
            domain: c.cfg.cluster_domain.clone(),
        };
        Arc::new(Agent {
            images: ImageManager::new(runtime.clone(), c.cfg.serialize_image_pulls),
            runtime,
            runtime_name,
            volumes,
            objects,
            status: status::Manager::default(),
            recorder,
            metrics,
            host_dns,
            cluster_dns,
            c,
            pods: Mutex::new(HashMap::new()),
            admitted: Mutex::new(HashSet::new()),
            backoff: Mutex::new(Backoff::default()),
            waiting: Mutex::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
            first_seen: Mutex::new(HashMap::new()),
            probes: Arc::new(prober::Manager::default()),
            client,
            node_uid: Mutex::new(String::new()),
            mirrors: Mutex::new(HashMap::new()),
            statics: Mutex::new(HashMap::new()),
        })
    }

    fn event(
        &self,
        pod: &Pod,
        field: Option<String>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        if let Some(r) = &self.recorder {
            let t = if warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            r.event(pod_ref(pod, field), None, t, reason, reason, message);
        }
    }

    /// The Node is registered with this UID.
    pub fn set_node_uid(&self, uid: String) {
        *self.node_uid.lock() = uid;
    }

    /// A mirror pod was added or changed in the API.
    pub fn mirror_seen(self: &Arc<Self>, pod: &Pod) {
        let (name, ns, uid) = pod_ids(pod);
        let hash = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(static_pods::CONFIG_MIRROR))
            .cloned()
            .unwrap_or_default();
        // A mirror being deleted (gracefully) mirrors nothing: the static pod's
        // sync deletes it at once and posts a new one, as upstream's.
        let mirrored = if pod.metadata.deletion_timestamp.is_some() {
            String::new()
        } else {
            hash.clone()
        };
        self.mirrors
            .lock()
            .insert(format!("{ns}/{name}"), (uid.to_owned(), mirrored));
        self.wake_if_known(&hash);
    }

    /// A mirror pod was deleted from the API: its static pod recreates it.
    pub fn mirror_gone(self: &Arc<Self>, pod: &Pod) {
        let (name, ns, _) = pod_ids(pod);
        let gone = self.mirrors.lock().remove(&format!("{ns}/{name}"));
        if let Some((_, hash)) = gone {
            self.wake_if_known(&hash);
        }
    }

    fn wake_if_known(self: &Arc<Self>, uid: &str) {
        if self.pods.lock().contains_key(uid) {
            self.wake(uid);
        }
    }

    /// Makes the API show a static pod through its mirror pod: created (owned by the
    /// Node) when missing, replaced when it mirrors another version of the file.
    async fn ensure_mirror(&self, pod: &Pod) {
        let Some(client) = &self.client else {
            return;
        };
        let (name, ns, uid) = pod_ids(pod);
        let key = format!("{ns}/{name}");
        let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
        let known = self.mirrors.lock().get(&key).cloned();
        match known {
            Some((muid, hash)) if hash == uid => {
                self.status.set_api_uid(uid, &muid);
                return;
            }
            Some((muid, _)) => {
                if let Err(e) = api.delete(name, &status::delete_now(&muid)).await
                    && !client_base::errors::is_not_found(&e)
                {
                    tracing::warn!(pod = %key, error = %e, "deleting an outdated mirror pod");
                    return;
                }
                self.mirrors.lock().remove(&key);
            }
            None => {}
        }
        let node_uid = self.node_uid.lock().clone();
        if node_uid.is_empty() {
            return;
        }
        let mirror = static_pods::mirror_pod(pod, &self.c.node_name, &node_uid);
        match api.create(&kube::api::PostParams::default(), &mirror).await {
            Ok(m) => {
                let muid = m.metadata.uid.unwrap_or_default();
                self.mirrors
                    .lock()
                    .insert(key, (muid.clone(), uid.to_owned()));
                self.status.set_api_uid(uid, &muid);
            }
            Err(e) => tracing::warn!(pod = %key, error = %e, "Failed creating a mirror pod"),
        }
    }

    /// A pod was added or changed in the API, or read from the static pod path.
    pub fn upsert(self: &Arc<Self>, pod: Arc<Pod>) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if static_pods::is_static(&pod) {
            let (name, ns, _) = pod_ids(&pod);
            self.statics
                .lock()
                .insert(uid.clone(), format!("{ns}/{name}"));
        }
        self.first_seen
            .lock()
            .entry(uid.clone())
            .or_insert_with(Instant::now);
        self.pods.lock().insert(uid.clone(), pod);
        self.wake(&uid);
    }

    /// A pod was removed from the API.
    pub fn remove(self: &Arc<Self>, uid: &str) {
        self.pods.lock().remove(uid);
        self.wake(uid);
    }

    /// The pods the node runs (for `/pods`).
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.pods.lock().values().cloned().collect()
    }

    /// Wakes (or starts) the worker of `uid`.
    pub fn wake(self: &Arc<Self>, uid: &str) {
        let mut workers = self.workers.lock();
        if let Some(n) = workers.get(uid) {
            n.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(uid.to_owned(), notify.clone());
        let agent = self.clone();
        let uid = uid.to_owned();
        tokio::spawn(async move { agent.worker(uid, notify).await });
    }

    async fn worker(self: Arc<Self>, uid: String, notify: Arc<Notify>) {
        loop {
            let start = Instant::now();
            let next = self.sync(&uid).await;
            self.metrics
                .pod_worker_duration
                .with_label_values(&["sync"])
                .observe(start.elapsed().as_secs_f64());
            let Some(next) = next else {
                self.workers.lock().remove(&uid);
                // A wake that raced with the exit starts a new worker.
                if self.pods.lock().contains_key(&uid) {
                    self.wake(&uid);
                }
                return;
            };
            tokio::select! {
                () = notify.notified() => {}
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    /// One sync of `uid`: `None` when the worker is done (the pod is gone and
    /// cleaned up), else how long until the next sync at the latest.
    async fn sync(self: &Arc<Self>, uid: &str) -> Option<Duration> {
        let pod = self.pods.lock().get(uid).cloned();
        let rt = match RuntimePod::read(self.runtime.as_ref(), uid).await {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(%uid, error = %e, "reading the pod from the runtime");
                return Some(RETRY);
            }
        };
        let Some(pod) = pod else {
            self.cleanup(uid, &rt).await;
            return if self.pods.lock().contains_key(uid) {
                Some(Duration::ZERO)
            } else {
                None
            };
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(&pod, rt).await;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) && !rt.any_running() {
            // Terminal: nothing runs again; stop the sandbox.
            for s in rt
                .sandboxes
                .iter()
                .filter(|s| s.state == cri::state::SANDBOX_READY)
            {
                let _ = self.runtime.stop_pod_sandbox(&s.id).await;
            }
            return Some(self.c.cfg.sync_frequency.0);
        }
        let next = self.sync_pod(&pod, rt).await;
        if static_pods::is_static(&pod) {
            self.ensure_mirror(&pod).await;
        }
        Some(next)
    }

    fn node_values(&self, pod_ips: Vec<String>) -> NodeValues {
        let (_, alloc) = crate::node::resources(&self.c.machine, &self.c.cfg);
        let parse = |k: &str| {
            alloc
                .get(k)
                .and_then(|q| component_base::quantity::parse(&q.0))
                .unwrap_or(0)
        };
        NodeValues {
            host_ips: self.c.node_ip.iter().map(|i| i.to_string()).collect(),
            pod_ips,
            allocatable_milli_cpu: (parse("cpu") / 1_000_000) as i64,
            allocatable_memory: (parse("memory") / 1_000_000_000) as i64,
            allocatable_ephemeral: (parse("ephemeral-storage") / 1_000_000_000) as i64,
        }
    }

    fn status_context(&self, pod: &Pod) -> StatusContext {
        let (_, _, uid) = pod_ids(pod);
        let probes = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .filter_map(|c| Some((c.name.clone(), self.probes.state(uid, &c.name)?)))
            .collect();
        StatusContext {
            runtime_name: self.runtime_name.clone(),
            host_ips: self.c.node_ip.iter().map(|i| i.to_string()).collect(),
            probes,
        }
    }

    /// Starts the probe workers of the pod's running containers, and kills the
    /// containers whose liveness or startup probe failed.
    async fn probe(self: &Arc<Self>, pod: &Pod, rt: &RuntimePod) -> bool {
        let (_, _, uid) = pod_ids(pod);
        let pod_ip = rt.pod_ips().first().cloned().unwrap_or_default();
        let mut killed = false;
        let spec = pod.spec.clone().unwrap_or_default();
        let all = spec.containers.iter().map(|c| (false, c)).chain(
            spec.init_containers
                .iter()
                .flatten()
                .filter(|c| kuberuntime::is_sidecar(c))
                .map(|c| (true, c)),
        );
        for (init, c) in all {
            let Some(st) = rt
                .latest(&c.name)
                .filter(|s| s.state == cri::state::RUNNING)
            else {
                continue;
            };
            if let Some(why) = self
                .probes
                .state(uid, &c.name)
                .filter(|s| s.container_id == st.id)
                .and_then(|s| s.kill)
            {
                self.event(pod, Some(field_path(init, &c.name)), false, "Killing", why);
                let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64;
                let _ = self
                    .runtime
                    .stop_container(&st.id, Duration::from_secs(grace))
                    .await;
                killed = true;
                continue;
            }
            if c.liveness_probe.is_some()
                || c.readiness_probe.is_some()
                || c.startup_probe.is_some()
            {
                let sink: Arc<dyn prober::Sink> = self.clone();
                self.probes.ensure(
                    uid,
                    c,
                    prober::Target {
                        container_id: st.id.clone(),
                        pod_ip: pod_ip.clone(),
                    },
                    self.runtime.clone(),
                    sink,
                );
            }
        }
        killed
    }

    fn post_status(&self, pod: &Pod, rt: &RuntimePod) -> k8s_openapi::api::core::v1::PodStatus {
        let (_, _, uid) = pod_ids(pod);
        let waiting = self.waiting.lock().get(uid).cloned().unwrap_or_default();
        let cached = self.status.get(uid);
        let s = status::api_status(
            pod,
            rt,
            &waiting,
            &self.status_context(pod),
            cached.as_ref(),
            Timestamp::now(),
        );
        if s.phase.as_deref() == Some("Running")
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            && let Some(t) = self.first_seen.lock().remove(uid)
        {
            self.metrics
                .pod_start_duration
                .observe(t.elapsed().as_secs_f64());
        }
        self.status.set(pod, s.clone());
        s
    }

    /// Node-level admission, as upstream's predicate admit handler: the pod must fit
    /// the node's allocatable resources beside the pods already admitted.
    fn admit(&self, pod: &Pod) -> Result<(), (String, String)> {
        let (_, alloc) = crate::node::resources(&self.c.machine, &self.c.cfg);
        let admitted = self.admitted.lock().clone();
        let pods = self.pods.lock();
        let others: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|(u, p)| {
                admitted.contains(*u)
                    && !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
            })
            .map(|(_, p)| p)
            .collect();
        if others.len() as i64 >= self.c.cfg.max_pods {
            return Err((
                "OutOfpods".into(),
                format!(
                    "Node didn't have enough resource: pods, requested: 1, used: {}, capacity: {}",
                    others.len(),
                    self.c.cfg.max_pods
                ),
            ));
        }
        for (res, scale) in [("cpu", 1_000_000i128), ("memory", 1_000_000_000i128)] {
            let req = |p: &Pod| -> i128 {
                let Some(spec) = p.spec.as_ref() else {
                    return 0;
                };
                let sum = |cs: &[Container]| -> i128 {
                    cs.iter()
                        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get(res))
                        .filter_map(|q| component_base::quantity::parse(&q.0))
                        .sum()
                };
                let init_max = spec
                    .init_containers
                    .iter()
                    .flatten()
                    .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get(res))
                    .filter_map(|q| component_base::quantity::parse(&q.0))
                    .max()
                    .unwrap_or(0);
                sum(&spec.containers).max(init_max)
            };
            let want = req(pod);
            if want == 0 {
                continue;
            }
            let used: i128 = others.iter().map(|p| req(p)).sum();
            let cap = alloc
                .get(res)
                .and_then(|q| component_base::quantity::parse(&q.0))
                .unwrap_or(0);
            if used + want > cap {
                return Err((
                    format!("Outof{res}"),
                    format!(
                        "Node didn't have enough resource: {res}, requested: {}, used: {}, capacity: {}",
                        want / scale,
                        used / scale,
                        cap / scale
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn sync_pod(self: &Arc<Self>, pod: &Arc<Pod>, mut rt: RuntimePod) -> Duration {
        let (_, _, uid) = pod_ids(pod);
        let uid = uid.to_owned();
        if !self.admitted.lock().contains(&uid) {
            if let Err((reason, message)) = self.admit(pod) {
                let message = format!("Pod was rejected: {message}");
                self.event(pod, None, true, &reason, message.clone());
                let mut s = status::api_status(
                    pod,
                    &rt,
                    &HashMap::new(),
                    &self.status_context(pod),
                    None,
                    Timestamp::now(),
                );
                s.phase = Some("Failed".into());
                s.reason = Some(reason);
                s.message = Some(message);
                self.status.set(pod, s);
                return self.c.cfg.sync_frequency.0;
            }
            self.admitted.lock().insert(uid.clone());
        }
        let before = self.post_status(pod, &rt);
        if matches!(before.phase.as_deref(), Some("Succeeded" | "Failed")) && !rt.any_running() {
            return self.c.cfg.sync_frequency.0;
        }
        let node = self.node_values(rt.pod_ips());
        let vols = match self.volumes.setup(pod, &node).await {
            Ok(v) => v,
            Err((name, e)) => {
                self.event(
                    pod,
                    None,
                    true,
                    "FailedMount",
                    format!("MountVolume.SetUp failed for volume {name:?} : {e}"),
                );
                return RETRY;
            }
        };
        if self.probe(pod, &rt).await {
            match RuntimePod::read(self.runtime.as_ref(), &uid).await {
                Ok(r) => rt = r,
                Err(e) => tracing::warn!(%uid, error = %e, "reading the pod from the runtime"),
            }
        }
        let actions = kuberuntime::compute_actions(pod, &rt);
        let mut next = self.c.cfg.sync_frequency.0;
        if actions.kill_pod {
            if rt
                .sandboxes
                .first()
                .is_some_and(|s| s.state != cri::state::SANDBOX_READY)
            {
                self.event(
                    pod,
                    None,
                    false,
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.".into(),
                );
            }
            self.kill_containers(pod, &rt, None).await;
            for s in &rt.sandboxes {
                let _ = self.runtime.stop_pod_sandbox(&s.id).await;
            }
        }
        for (id, name, why) in &actions.kill {
            let init = pod
                .spec
                .as_ref()
                .is_some_and(|s| s.init_containers.iter().flatten().any(|c| &c.name == name));
            self.event(
                pod,
                Some(field_path(init, name)),
                false,
                "Killing",
                format!("{why}, will be restarted"),
            );
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            let _ = self
                .runtime
                .stop_container(id, Duration::from_secs(grace.max(0) as u64))
                .await;
        }
        let sandbox_cfg = |attempt: u32, this: &Agent, creating: bool| {
            let (dns, warning) = pod_dns(pod, &this.cluster_dns, &this.host_dns);
            if let (Some(w), true) = (warning, creating) {
                this.event(pod, None, true, "MissingClusterDNS", w);
            }
            let ctx = SandboxContext {
                pod_logs_dir: this.c.cfg.pod_logs_dir.clone(),
                dns,
                cgroup_parent: kuberuntime::cgroup_parent(pod, &this.c.cfg.cgroup_root),
                node_hostname: this.c.hostname.clone(),
            };
            kuberuntime::sandbox_config(pod, attempt, &ctx)
        };
        let sandbox_attempt = rt
            .sandboxes
            .first()
            .and_then(|s| s.metadata.as_ref())
            .map(|m| m.attempt)
            .unwrap_or(0);
        let (sandbox_id, sandbox) = if let Some(attempt) = actions.create_sandbox {
            let cfg = sandbox_cfg(attempt, self, true);
            match self.runtime.run_pod_sandbox(cfg.clone()).await {
                Ok(id) => (id, cfg),
                Err(e) => {
                    self.event(
                        pod,
                        None,
                        true,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    return RETRY;
                }
            }
        } else {
            match rt.ready_sandbox() {
                Some(s) => (s.id.clone(), sandbox_cfg(sandbox_attempt, self, false)),
                None => {
                    // Nothing to run (restartPolicy Never after its run).
                    self.post_status(pod, &rt);
                    return next;
                }
            }
        };
        if actions.create_sandbox.is_some() || !actions.start.is_empty() {
            match RuntimePod::read(self.runtime.as_ref(), &uid).await {
                Ok(r) => rt = r,
                Err(e) => tracing::warn!(%uid, error = %e, "reading the pod from the runtime"),
            }
        }
        let pod_ips = rt.pod_ips();
        let hosts = self.volumes.pod_dir(&uid).join("etc-hosts");
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if !host_network {
            let aliases = pod
                .spec
                .as_ref()
                .and_then(|s| s.host_aliases.clone())
                .unwrap_or_default();
            let text = volumes::etc_hosts(
                &kuberuntime::pod_hostname(pod, &self.c.hostname),
                &pod_ips,
                &aliases,
            );
            if std::fs::read_to_string(&hosts).ok().as_deref() != Some(text.as_str()) {
                let _ = std::fs::create_dir_all(self.volumes.pod_dir(&uid));
                if let Err(e) = std::fs::write(&hosts, text) {
                    tracing::warn!(%uid, error = %e, "writing /etc/hosts");
                }
            }
        }
        let node = self.node_values(pod_ips);
        let mut waiting: HashMap<String, Waiting> = HashMap::new();
        let spec = pod.spec.clone().unwrap_or_default();
        let sctx = StartContext {
            uid: &uid,
            rt: &rt,
            sandbox_id: &sandbox_id,
            sandbox: &sandbox,
            volumes: &vols,
            hosts: (!host_network).then_some(hosts.as_path()),
            node: &node,
        };
        for start in &actions.start {
            let c: &Container = if start.init {
                &spec.init_containers.as_ref().expect("index from the spec")[start.index]
            } else {
                &spec.containers[start.index]
            };
            if let Err(not) = self.start_container(pod, c, start.init, &sctx).await {
                waiting.insert(c.name.clone(), not.waiting);
                next = next.min(not.retry);
                // Init containers run in order: the next waits for this one.
                if start.init {
                    break;
                }
            }
        }
        self.waiting.lock().insert(uid.clone(), waiting);
        match RuntimePod::read(self.runtime.as_ref(), &uid).await {
            Ok(r) => rt = r,
            Err(e) => tracing::warn!(%uid, error = %e, "reading the pod from the runtime"),
        }
        self.probe(pod, &rt).await;
        let s = self.post_status(pod, &rt);
        // Init containers and restarts are driven by the PLEG; stay close while
        // the pod is starting.
        if s.phase.as_deref() == Some("Pending") {
            next = next.min(RETRY);
        }
        next
    }

    /// Starts one container of `pod` in its sandbox: its back-off, image, env,
    /// mounts, then CreateContainer and StartContainer, with upstream's events. `Err`
    /// says why it waits and when to try again.
    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        init: bool,
        ctx: &StartContext<'_>,
    ) -> Result<(), NotStarted> {
        let fp = Some(field_path(init, &c.name));
        // Every failure below is an event and a waiting reason, retried soon.
        let failed = |reason: &str, message: String| {
            self.event(pod, fp.clone(), true, "Failed", format!("Error: {message}"));
            NotStarted {
                waiting: Waiting {
                    reason: reason.into(),
                    message,
                },
                retry: RETRY,
            }
        };
        // A container that ran before waits out its back-off.
        if let Some(prev) = ctx
            .rt
            .latest(&c.name)
            .filter(|s| s.state == cri::state::EXITED)
        {
            let finished = Timestamp::from_nanosecond(i128::from(prev.finished_at))
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let since = Timestamp::now().duration_since(finished).unsigned_abs();
            let key = Backoff::key(ctx.uid, &c.name);
            if let Some(d) = self.backoff.lock().check(&key, since, Instant::now()) {
                self.event(
                    pod,
                    fp.clone(),
                    true,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name,
                        pod_desc(pod)
                    ),
                );
                return Err(NotStarted {
                    waiting: Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: format!(
                            "back-off {} restarting failed container={} pod={}",
                            component_base::duration::go_string(d.as_nanos() as i64),
                            c.name,
                            pod_desc(pod)
                        ),
                    },
                    retry: d.saturating_sub(since) + Duration::from_millis(100),
                });
            }
        }
        let mut notes = Vec::new();
        let pulled = self
            .images
            .ensure(ctx.uid, c, Some(ctx.sandbox.clone()), &mut notes)
            .await;
        for (warn, reason, msg) in notes {
            self.event(pod, fp.clone(), warn, reason, msg);
        }
        let image_ref = pulled.map_err(|f| NotStarted {
            waiting: Waiting {
                reason: f.reason.into(),
                message: f.message,
            },
            retry: RETRY,
        })?;
        let env = crate::env::container_env(pod, c, self.objects.as_ref(), ctx.node)
            .await
            .map_err(|e| failed("CreateContainerConfigError", e.to_string()))?;
        let term_dir = self
            .volumes
            .pod_dir(ctx.uid)
            .join("containers")
            .join(&c.name);
        let term = term_dir.join(format!("{:08x}", rand::random::<u32>()));
        let term_ok = std::fs::create_dir_all(&term_dir)
            .and_then(|()| std::fs::write(&term, b""))
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&term, std::fs::Permissions::from_mode(0o666))
            })
            .is_ok();
        let mounts =
            volumes::container_mounts(c, ctx.volumes, ctx.hosts, term_ok.then_some(term.as_path()))
                .map_err(|e| failed("CreateContainerConfigError", e))?;
        let cc = kuberuntime::ContainerContext {
            image_ref,
            env,
            mounts,
            restart_count: ctx.rt.next_restart_count(&c.name),
            node_memory: self.c.machine.memory,
        };
        let config = kuberuntime::container_config(pod, c, &cc);
        let id = self
            .runtime
            .create_container(ctx.sandbox_id, config, ctx.sandbox.clone())
            .await
            .map_err(|e| failed("CreateContainerError", e.to_string()))?;
        self.event(
            pod,
            fp.clone(),
            false,
            "Created",
            format!("Created container: {}", c.name),
        );
        self.runtime
            .start_container(&id)
            .await
            .map_err(|e| failed("RunContainerError", e.to_string()))?;
        self.event(
            pod,
            fp.clone(),
            false,
            "Started",
            format!("Started container {}", c.name),
        );
        // Keep the newest exited instance (lastState); remove older ones.
        for old in ctx.rt.instances(&c.name).skip(1) {
            if old.state != cri::state::RUNNING {
                let _ = self.runtime.remove_container(&old.id).await;
            }
        }
        Ok(())
    }

    /// Stops the running containers of `pod` (all of them, or those not in `keep`)
    /// within the grace period.
    async fn kill_containers(&self, pod: &Pod, rt: &RuntimePod, grace: Option<i64>) {
        let grace = grace
            .or(pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(0) as u64;
        let mut stops = Vec::new();
        for c in rt
            .containers
            .iter()
            .filter(|c| c.state == cri::state::RUNNING)
        {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let init = pod
                .spec
                .as_ref()
                .is_some_and(|s| s.init_containers.iter().flatten().any(|i| i.name == name));
            self.event(
                pod,
                Some(field_path(init, &name)),
                false,
                "Killing",
                format!("Stopping container {name}"),
            );
            stops.push(
                self.runtime
                    .stop_container(&c.id, Duration::from_secs(grace)),
            );
        }
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r
                && !e.is_not_found()
            {
                tracing::warn!(pod = %pod_desc(pod), error = %e, "stopping a container");
            }
        }
    }

    /// A pod being deleted: kill it within its grace period, post the final status,
    /// then have it deleted from the API.
    async fn terminate(self: &Arc<Self>, pod: &Arc<Pod>, rt: RuntimePod) -> Option<Duration> {
        let (_, _, uid) = pod_ids(pod);
        let grace = pod.metadata.deletion_grace_period_seconds;
        if rt.any_running() {
            self.kill_containers(pod, &rt, grace).await;
        }
        for s in rt
            .sandboxes
            .iter()
            .filter(|s| s.state == cri::state::SANDBOX_READY)
        {
            if let Err(e) = self.runtime.stop_pod_sandbox(&s.id).await {
                tracing::warn!(%uid, error = %e, "stopping the sandbox");
                return Some(RETRY);
            }
        }
        let rt = RuntimePod::read(self.runtime.as_ref(), uid)
            .await
            .unwrap_or_default();
        if rt.any_running() {
            return Some(RETRY);
        }
        self.waiting.lock().remove(uid);
        self.post_status(pod, &rt);
        self.status.terminated(pod);
        Some(self.c.cfg.sync_frequency.0)
    }

    /// A pod gone from the API: kill what is left and remove every trace of it.
    async fn cleanup(&self, uid: &str, rt: &RuntimePod) {
        let grace = rt
            .containers
            .iter()
            .filter_map(|c| c.annotations.get(labels::GRACE_PERIOD)?.parse::<u64>().ok())
            .max()
            .unwrap_or(30);
        let stops = rt
            .containers
            .iter()
            .filter(|c| c.state == cri::state::RUNNING)
            .map(|c| {
                self.runtime
                    .stop_container(&c.id, Duration::from_secs(grace))
            });
        futures::future::join_all(stops).await;
        for c in &rt.containers {
            if let Err(e) = self.runtime.remove_container(&c.id).await
                && !e.is_not_found()
            {
                tracing::warn!(%uid, error = %e, "removing a container");
            }
        }
        for s in &rt.sandboxes {
            let _ = self.runtime.stop_pod_sandbox(&s.id).await;
            if let Err(e) = self.runtime.remove_pod_sandbox(&s.id).await
                && !e.is_not_found()
            {
                tracing::warn!(%uid, error = %e, "removing a sandbox");
            }
            if let Some(m) = &s.metadata {
                let dir = PathBuf::from(&self.c.cfg.pod_logs_dir)
                    .join(format!("{}_{}_{}", m.namespace, m.name, m.uid));
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        if let Err(e) = self.volumes.teardown(uid) {
            tracing::warn!(%uid, error = %e, "tearing down volumes");
        }
        remove_pod_cgroups(
            std::path::Path::new(CGROUP_MOUNT),
            &self.c.cfg.cgroup_root,
            uid,
        );
        self.admitted.lock().remove(uid);
        self.waiting.lock().remove(uid);
        self.backoff.lock().forget_pod(uid);
        self.probes.forget_pod(uid);
        let stat = self.statics.lock().remove(uid);
        if let (Some(key), Some(client)) = (stat, &self.client) {
            let mirror = self.mirrors.lock().get(&key).cloned();
            if let Some((muid, _)) = mirror.filter(|(_, h)| h == uid)
                && let Some((ns, name)) = key.split_once('/')
            {
                let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
                if let Err(e) = api.delete(name, &status::delete_now(&muid)).await {
                    tracing::debug!(pod = %key, error = %e, "deleting the mirror pod");
                }
                self.mirrors.lock().remove(&key);
            }
        }
        self.first_seen.lock().remove(uid);
        self.status.forget(uid);
        tracing::info!(%uid, "pod cleaned up");
    }

    /// The pod lifecycle event generator: relists the runtime every second and wakes
    /// the worker of every pod whose sandboxes or containers changed, and of every
    /// pod the runtime holds that nobody asked for (orphans, cleaned up).
    pub async fn pleg(self: Arc<Self>) {
        let mut last: HashMap<String, Vec<(String, i32)>> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let start = Instant::now();
            let (sandboxes, containers) = match (
                self.runtime.list_pod_sandbox(None).await,
                self.runtime.list_containers(None).await,
            ) {
                (Ok(s), Ok(c)) => (s, c),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "PLEG: unable to relist");
                    continue;
                }
            };
            let mut now: HashMap<String, Vec<(String, i32)>> = HashMap::new();
            for s in &sandboxes {
                if let Some(uid) = s.labels.get(labels::POD_UID) {
                    now.entry(uid.clone())
                        .or_default()
                        .push((s.id.clone(), s.state));
                }
            }
            let (mut running_pods, mut running_containers) = (0i64, 0i64);
            for c in &containers {
                if let Some(uid) = c.labels.get(labels::POD_UID) {
                    now.entry(uid.clone())
                        .or_default()
                        .push((c.id.clone(), c.state + 100));
                }
                if c.state == cri::state::RUNNING {
                    running_containers += 1;
                }
            }
            for s in &sandboxes {
                if s.state == cri::state::SANDBOX_READY {
                    running_pods += 1;
                }
            }
            self.metrics.running_pods.set(running_pods);
            self.metrics
                .running_containers
                .with_label_values(&["running"])
                .set(running_containers);
            for v in now.values_mut() {
                v.sort();
            }
            for (uid, sig) in &now {
                if last.get(uid) != Some(sig) {
                    self.wake(uid);
                }
            }
            for uid in last.keys() {
                if !now.contains_key(uid) {
                    self.wake(uid);
                }
            }
            // Pod directories of pods nobody runs any more.
            if last.is_empty() {
                for uid in self.volumes.pod_dirs() {
                    if !now.contains_key(&uid) {
                        self.wake(&uid);
                    }
                }
            }
            last = now;
            self.metrics
                .pleg_relist_duration
                .observe(start.elapsed().as_secs_f64());
        }
    }

    /// The log file of a container of a pod the node runs: the newest instance, or
    /// the one before it (`previous`).
    pub async fn log_path(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        previous: bool,
    ) -> Result<(PathBuf, bool), String> {
        let pod = self
            .pods
            .lock()
            .values()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .cloned()
            .ok_or_else(|| format!("pod {ns}/{name} not found"))?;
        let (_, _, uid) = pod_ids(&pod);
        let rt = RuntimePod::read(self.runtime.as_ref(), uid)
            .await
            .map_err(|e| e.to_string())?;
        let mut instances = rt.instances(container);
        let st = if previous {
            instances.nth(1).ok_or_else(|| {
                format!("previous terminated container {container:?} in pod {name:?} not found")
            })?
        } else {
            instances.next().ok_or_else(|| {
                format!(
                    "container {container:?} in pod {name:?} is waiting to start: ContainerCreating"
                )
            })?
        };
        Ok((PathBuf::from(&st.log_path), st.state == cri::state::RUNNING))
    }

    /// Whether the container with log file `path` still runs.
    pub async fn still_running(&self, container_id_of: &str) -> bool {
        matches!(self.runtime.container_status(container_id_of).await, Ok(s) if s.state == cri::state::RUNNING)
    }

    /// The newest container of a pod by name, for exec/attach/port-forward.
    pub async fn container_id(
        &self,
        ns: &str,
        name: &str,
        container: Option<&str>,
    ) -> Result<(String, String), String> {
        let pod = self
            .pods
            .lock()
            .values()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .cloned()
            .ok_or_else(|| format!("pod {ns}/{name} not found"))?;
        let (_, _, uid) = pod_ids(&pod);
        let rt = RuntimePod::read(self.runtime.as_ref(), uid)
            .await
            .map_err(|e| e.to_string())?;
        let sandbox = rt.ready_sandbox().map(|s| s.id.clone()).unwrap_or_default();
        let cname = match container {
            Some(c) => c.to_owned(),
            None => pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .map(|c| c.name.clone())
                .unwrap_or_default(),
        };
        let st = rt
            .latest(&cname)
            .filter(|s| s.state == cri::state::RUNNING)
            .ok_or_else(|| format!("container {cname} is not valid for pod {name}"))?;
        Ok((st.id.clone(), sandbox))
    }

    /// The runtime (for the API's streaming calls).
    pub fn runtime(&self) -> &Arc<dyn cri::Runtime> {
        &self.runtime
    }
}

/// Where the cgroup hierarchies are mounted.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// Removes a pod's (empty) cgroup directories under `cgroup_root` in every
/// hierarchy mounted at `mount` (cgroup v1's per-controller mounts, v2's unified
/// one), as upstream's pod container manager does once the pod's containers are
/// gone. The runtime removes the containers' own cgroups.
pub fn remove_pod_cgroups(mount: &std::path::Path, cgroup_root: &str, uid: &str) {
    let root = cgroup_root.trim_matches('/');
    let mut hierarchies: Vec<PathBuf> = std::fs::read_dir(mount)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    hierarchies.push(mount.to_path_buf());
    for h in hierarchies {
        for qos in ["kubepods", "kubepods/burstable", "kubepods/besteffort"] {
            let dir = h.join(root).join(qos).join(format!("pod{uid}"));
            if dir.is_dir()
                && let Err(e) = std::fs::remove_dir(&dir)
            {
                tracing::debug!(dir = %dir.display(), error = %e, "removing a pod cgroup");
            }
        }
    }
}
