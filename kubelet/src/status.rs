//! Pod status: what the API shows of a pod the kubelet runs ([`api_status`], pure,
//! upstream's `generateAPIPodStatus` with `getPhase` and the condition
//! generators), and the [`Manager`] that writes it to the apiserver.
//!
//! The manager keeps the last status computed for each pod and a version; a single
//! task patches changed statuses with a strategic merge patch on `pods/status`
//! (conditions merge by type, so conditions other writers own, such as
//! `PodScheduled` or readiness gates, survive), carrying the pod's UID so a
//! recreated pod of the same name is never written. Terminated pods that are being
//! deleted are then deleted with grace period 0, as upstream's status manager does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::cri::{self, v1};
use crate::kuberuntime::{RuntimePod, is_sidecar, labels};

/// Why a container is waiting, as the last sync found (`ErrImagePull`,
/// `CrashLoopBackOff`, `CreateContainerConfigError`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The reason.
    pub reason: String,
    /// The message.
    pub message: String,
}

fn time_ns(ns: i64) -> Option<Time> {
    (ns > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(ns)).ok())
        .flatten()
        .map(Time)
}

/// The container ID as the API shows it: `containerd://<id>`.
pub fn container_id(runtime_name: &str, id: &str) -> String {
    format!("{runtime_name}://{id}")
}

fn terminated(
    st: &v1::ContainerStatus,
    runtime_name: &str,
    message: Option<String>,
) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: st.exit_code,
        reason: Some(if st.reason.is_empty() {
            if st.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_owned()
        } else {
            st.reason.clone()
        }),
        message: message
            .filter(|m| !m.is_empty())
            .or_else(|| (!st.message.is_empty()).then(|| st.message.clone())),
        started_at: time_ns(st.started_at),
        finished_at: time_ns(st.finished_at),
        container_id: Some(container_id(runtime_name, &st.id)),
        signal: None,
    }
}

/// The termination message of an exited container: the file it wrote at its
/// `terminationMessagePath` (the host side of that mount), at most 4096 bytes.
fn termination_message(st: &v1::ContainerStatus) -> Option<String> {
    let path = st.annotations.get(labels::TERMINATION_MESSAGE_PATH)?;
    let m = st.mounts.iter().find(|m| &m.container_path == path)?;
    let data = std::fs::read(&m.host_path).ok()?;
    let data = &data[..data.len().min(4096)];
    Some(String::from_utf8_lossy(data).into_owned())
}

fn container_status(
    c: &Container,
    rt: &RuntimePod,
    waiting: Option<&Waiting>,
    runtime_name: &str,
    old: Option<&ContainerStatus>,
) -> ContainerStatus {
    let mut instances = rt.instances(&c.name);
    let latest = instances.next();
    let previous = instances.next();
    let restart_count = latest
        .and_then(|s| s.annotations.get(labels::RESTART_COUNT))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    let mut status = ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        restart_count,
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    let waiting_state = |reason: &str, message: Option<String>| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..Default::default()
    };
    match latest {
        None => {
            status.state = Some(match waiting {
                Some(w) => waiting_state(&w.reason, Some(w.message.clone())),
                None => waiting_state("ContainerCreating", None),
            });
        }
        Some(st) => {
            status.container_id = Some(container_id(runtime_name, &st.id));
            status.image_id = st.image_ref.clone();
            match st.state {
                s if s == cri::state::RUNNING => {
                    status.state = Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: time_ns(st.started_at),
                        }),
                        ..Default::default()
                    });
                    status.started = Some(true);
                    status.ready = true;
                }
                s if s == cri::state::CREATED => {
                    status.state = Some(match waiting {
                        Some(w) => waiting_state(&w.reason, Some(w.message.clone())),
                        None => waiting_state("ContainerCreating", None),
                    });
                }
                _ => {
                    let t = terminated(st, runtime_name, termination_message(st));
                    match waiting {
                        // Exited and waiting to restart: the exit is the last state.
                        Some(w) => {
                            status.state = Some(waiting_state(&w.reason, Some(w.message.clone())));
                            status.last_state = Some(ContainerState {
                                terminated: Some(t),
                                ..Default::default()
                            });
                        }
                        None => {
                            status.state = Some(ContainerState {
                                terminated: Some(t),
                                ..Default::default()
                            });
                        }
                    }
                }
            }
            if status.last_state.is_none() {
                if let Some(prev) = previous.filter(|p| p.state == cri::state::EXITED) {
                    status.last_state = Some(ContainerState {
                        terminated: Some(terminated(prev, runtime_name, termination_message(prev))),
                        ..Default::default()
                    });
                }
            }
        }
    }
    // A container the runtime no longer has (removed) keeps what was last shown.
    if latest.is_none() && waiting.is_none() {
        if let Some(o) = old.filter(|o| {
            o.state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some() || s.running.is_some())
        }) {
            return o.clone();
        }
    }
    status
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    old: &[PodCondition],
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: if ok { None } else { reason.map(str::to_owned) },
        message: if ok { None } else { message },
        last_probe_time: None,
        last_transition_time: Some(transition),
        observed_generation: None,
    }
}

/// Upstream's `getPhase` over the computed container statuses.
pub fn phase(pod: &Pod, init: &[ContainerStatus], containers: &[ContainerStatus]) -> &'static str {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let inits: &[Container] = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let mut pending_init = false;
    for (c, st) in inits.iter().zip(init) {
        let state = st.state.as_ref();
        if is_sidecar(c) {
            if !st.started.unwrap_or(false) {
                pending_init = true;
            }
            continue;
        }
        match state.and_then(|s| s.terminated.as_ref()) {
            Some(t) if t.exit_code == 0 => {}
            Some(_) if policy == "Never" => return "Failed",
            _ => {
                // Waiting after a failure with restarts allowed, or running.
                if state.and_then(|s| s.waiting.as_ref()).is_some()
                    && st
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .is_some_and(|t| t.exit_code != 0)
                    && policy == "Never"
                {
                    return "Failed";
                }
                pending_init = true;
            }
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for st in containers {
        let Some(state) = st.state.as_ref() else {
            waiting += 1;
            continue;
        };
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if st
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some()
            {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
    }
    if pending_init && running == 0 && stopped == 0 {
        return "Pending";
    }
    match () {
        () if waiting > 0 => "Pending",
        () if running > 0 => "Running",
        () if running == 0 && stopped > 0 => {
            if policy == "Always" {
                "Running"
            } else if stopped == succeeded {
                "Succeeded"
            } else if policy == "Never" {
                "Failed"
            } else {
                "Running"
            }
        }
        () => "Pending",
    }
}

/// The node-side inputs of a pod's status.
#[derive(Clone, Debug, Default)]
pub struct StatusContext {
    /// The runtime's name (`containerd`), the container IDs' scheme.
    pub runtime_name: String,
    /// The node's IPs.
    pub host_ips: Vec<String>,
}

/// Upstream's `generateAPIPodStatus`: the pod's status from the runtime's view, the
/// waiting reasons of the last sync, and the status the kubelet computed last
/// (`cached`; else the API's). Conditions other writers own come from the API's.
pub fn api_status(
    pod: &Pod,
    rt: &RuntimePod,
    waiting: &HashMap<String, Waiting>,
    ctx: &StatusContext,
    cached: Option<&PodStatus>,
    now: Timestamp,
) -> PodStatus {
    let now = Time(now);
    let api = pod.status.clone().unwrap_or_default();
    let old = cached.cloned().unwrap_or_else(|| api.clone());
    let spec = pod.spec.as_ref();
    let inits: &[Container] = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let containers: &[Container] = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let old_of = |list: &Option<Vec<ContainerStatus>>, name: &str| {
        list.iter().flatten().find(|s| s.name == name).cloned()
    };
    let init_statuses: Vec<ContainerStatus> = inits
        .iter()
        .map(|c| {
            let mut s = container_status(
                c,
                rt,
                waiting.get(&c.name),
                &ctx.runtime_name,
                old_of(&old.init_container_statuses, &c.name).as_ref(),
            );
            // Regular init containers are never "ready" once done; sidecars are
            // ready while running.
            if !is_sidecar(c) {
                s.ready = s
                    .state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0);
            }
            s
        })
        .collect();
    let statuses: Vec<ContainerStatus> = containers
        .iter()
        .map(|c| {
            container_status(
                c,
                rt,
                waiting.get(&c.name),
                &ctx.runtime_name,
                old_of(&old.container_statuses, &c.name).as_ref(),
            )
        })
        .collect();
    let phase = phase(pod, &init_statuses, &statuses);
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let mut conditions: Vec<PodCondition> = Vec::new();
    let sandbox_ready = rt.ready_sandbox().is_some()
        && (!rt.pod_ips().is_empty() || spec.and_then(|s| s.host_network).unwrap_or(false));
    conditions.push(condition(
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        None,
        &old_conditions,
        &now,
    ));
    let incomplete: Vec<&str> = inits
        .iter()
        .zip(&init_statuses)
        .filter(|(c, s)| {
            if is_sidecar(c) {
                !s.started.unwrap_or(false)
            } else {
                !s.ready
            }
        })
        .map(|(c, _)| c.name.as_str())
        .collect();
    let initialized = incomplete.is_empty() || phase == "Succeeded";
    conditions.push(condition(
        "Initialized",
        initialized,
        Some("ContainersNotInitialized"),
        Some(format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        )),
        &old_conditions,
        &now,
    ));
    let terminal = phase == "Succeeded" || phase == "Failed";
    let unready: Vec<&str> = inits
        .iter()
        .zip(&init_statuses)
        .filter(|(c, s)| is_sidecar(c) && !s.ready)
        .map(|(c, _)| c.name.as_str())
        .chain(
            containers
                .iter()
                .zip(&statuses)
                .filter(|(_, s)| !s.ready)
                .map(|(c, _)| c.name.as_str()),
        )
        .collect();
    let (ready, reason, message) = if terminal {
        (false, "PodCompleted", String::new())
    } else if !unready.is_empty() {
        (
            false,
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        )
    } else {
        (true, "", String::new())
    };
    let msg = (!message.is_empty()).then_some(message);
    conditions.push(condition(
        "ContainersReady",
        ready,
        Some(reason),
        msg.clone(),
        &old_conditions,
        &now,
    ));
    let api_conditions = api.conditions.clone().unwrap_or_default();
    // Readiness gates: every gate's condition must be True too.
    let gates: Vec<&str> = spec
        .and_then(|s| s.readiness_gates.as_ref())
        .into_iter()
        .flatten()
        .map(|g| g.condition_type.as_str())
        .collect();
    let missing: Vec<&str> = gates
        .iter()
        .copied()
        .filter(|g| {
            !api_conditions
                .iter()
                .any(|c| &c.type_ == g && c.status == "True")
        })
        .collect();
    let pod_ready = if ready && !missing.is_empty() {
        condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                missing[0]
            )),
            &old_conditions,
            &now,
        )
    } else {
        condition("Ready", ready, Some(reason), msg, &old_conditions, &now)
    };
    conditions.push(pod_ready);
    // Conditions other writers own (PodScheduled, DisruptionTarget, gates) stay.
    for c in &api_conditions {
        if !conditions.iter().any(|n| n.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    let mut pod_ips: Vec<String> = rt.pod_ips();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        pod_ips = ctx.host_ips.clone();
    }
    if pod_ips.is_empty() {
        // Keep the last known IPs while the sandbox is gone (terminating pods).
        pod_ips = old.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    }
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: ctx.host_ips.first().cloned(),
        host_ips: (!ctx.host_ips.is_empty()).then(|| {
            ctx.host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old.start_time.clone().or(Some(now)),
        qos_class: api.qos_class.clone().or(old.qos_class.clone()),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        nominated_node_name: old.nominated_node_name.clone(),
        reason: old.reason.clone(),
        message: old.message.clone(),
        ..Default::default()
    }
}

/// The strategic merge patch that turns `old` into `new`: `new`, with an explicit
/// null for every field `old` has and `new` lacks (a container's `waiting` once it
/// runs, a condition's `reason` once it holds), list items matched by their merge
/// keys (conditions by `type`, IPs by `ip`), as upstream's status manager diffs the
/// old and new status. Container statuses are atomic lists: sent whole.
pub fn merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn key(v: &Value) -> Option<(&'static str, &Value)> {
        ["type", "ip"]
            .into_iter()
            .find_map(|k| v.get(k).map(|x| (k, x)))
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in n {
                out.insert(k.clone(), merge_patch(o.get(k).unwrap_or(&Value::Null), v));
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        (Value::Array(o), Value::Array(n)) => Value::Array(
            n.iter()
                .map(|item| {
                    let matched =
                        key(item).and_then(|(k, want)| o.iter().find(|x| x.get(k) == Some(want)));
                    match matched {
                        Some(m) => merge_patch(m, item),
                        None => item.clone(),
                    }
                })
                .collect(),
        ),
        _ => new.clone(),
    }
}

/// What the manager holds of one pod.
struct Entry {
    namespace: String,
    name: String,
    /// The status as the apiserver last had it from us (or as it was).
    last: serde_json::Value,
    status: PodStatus,
    /// Bumped on every change; the writer posts the latest.
    version: u64,
    posted: u64,
    /// Delete the pod (grace 0) once this status is posted.
    delete: bool,
}

/// Writes pod statuses to the apiserver.
#[derive(Clone)]
pub struct Manager {
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    wake: Arc<Notify>,
}

impl Default for Manager {
    fn default() -> Self {
        Manager {
            entries: Arc::default(),
            wake: Arc::new(Notify::new()),
        }
    }
}

impl Manager {
    /// The last status computed for `uid`.
    pub fn get(&self, uid: &str) -> Option<PodStatus> {
        self.entries.lock().get(uid).map(|e| e.status.clone())
    }

    /// Records `status` for `pod`; the writer posts it if it changed.
    pub fn set(&self, pod: &Pod, status: PodStatus) {
        let (name, ns, uid) = crate::kuberuntime::pod_ids(pod);
        let mut entries = self.entries.lock();
        let e = entries.entry(uid.to_owned()).or_insert_with(|| Entry {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            last: serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default(),
            status: PodStatus::default(),
            version: 0,
            posted: 0,
            delete: false,
        });
        if e.version == 0 || e.status != status {
            e.status = status;
            e.version += 1;
            drop(entries);
            self.wake.notify_one();
        }
    }

    /// Deletes the pod from the API (grace 0, UID precondition) after its final
    /// status is posted: its containers are gone.
    pub fn terminated(&self, pod: &Pod) {
        let (_, _, uid) = crate::kuberuntime::pod_ids(pod);
        if let Some(e) = self.entries.lock().get_mut(uid) {
            e.delete = true;
            e.version += 1;
        }
        self.wake.notify_one();
    }

    /// Forgets a pod the kubelet no longer runs.
    pub fn forget(&self, uid: &str) {
        self.entries.lock().remove(uid);
    }

    /// Posts changed statuses until the process ends.
    pub async fn run(self, client: kube::Client) {
        loop {
            let due: Vec<(
                String,
                String,
                String,
                serde_json::Value,
                PodStatus,
                u64,
                bool,
            )> = self
                .entries
                .lock()
                .iter()
                .filter(|(_, e)| e.posted < e.version)
                .map(|(uid, e)| {
                    (
                        uid.clone(),
                        e.namespace.clone(),
                        e.name.clone(),
                        e.last.clone(),
                        e.status.clone(),
                        e.version,
                        e.delete,
                    )
                })
                .collect();
            if due.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let mut failed = false;
            for (uid, ns, name, last, status, version, delete) in due {
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let new = serde_json::to_value(&status).unwrap_or_default();
                let patch = serde_json::json!({"metadata": {"uid": uid}, "status": merge_patch(&last, &new)});
                let r = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await;
                let ok = match r {
                    Ok(_) => true,
                    Err(e) if client_base::errors::is_not_found(&e) => {
                        self.forget(&uid);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "Failed to update status for pod");
                        false
                    }
                };
                if ok && delete {
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: Some(uid.clone()),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match api.delete(&name, &dp).await {
                        Ok(_) => {
                            tracing::info!(pod = %format!("{ns}/{name}"), "Pod fully terminated and removed from etcd");
                            self.forget(&uid);
                            continue;
                        }
                        Err(e)
                            if client_base::errors::is_not_found(&e)
                                || client_base::errors::is_conflict(&e) =>
                        {
                            self.forget(&uid);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "Failed to delete status for pod");
                            failed = true;
                            continue;
                        }
                    }
                }
                if ok {
                    if let Some(e) = self.entries.lock().get_mut(&uid) {
                        e.posted = e.posted.max(version);
                        e.last = new;
                    }
                } else {
                    failed = true;
                }
            }
            if failed {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
