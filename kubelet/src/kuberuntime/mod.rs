//! The pod ↔ CRI translation, as upstream's `kuberuntime` package: the sandbox and
//! container configs a pod becomes ([`sandbox_config`], [`container_config`]), what
//! the runtime holds of a pod ([`RuntimePod`]), and what must change to make it
//! match the spec ([`compute_actions`], upstream's `computePodActions`).
//!
//! Everything here is pure: the pod worker ([`crate::pod_workers`]) feeds it the
//! pod and the runtime's state and carries out the actions.

pub mod dns;

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::cri::{self, v1};

/// Labels and annotations upstream's kubelet puts on sandboxes and containers; the
/// kubelet reads its state back from them after a restart.
pub mod labels {
    /// The pod's name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The pod's UID.
    pub const POD_UID: &str = crate::cri::POD_UID_LABEL;
    /// The container's name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// The container spec's hash (annotation).
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    /// The container's restart count (annotation).
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    /// `terminationMessagePath` (annotation).
    pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
    /// `terminationMessagePolicy` (annotation).
    pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
    /// The pod's grace period (annotation).
    pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
    /// The container's ports, JSON (annotation).
    pub const PORTS: &str = "io.kubernetes.container.ports";
    /// `kubernetes.io/config.source` of pods from the apiserver.
    pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
}

/// The pod's name, namespace and UID.
pub fn pod_ids(pod: &Pod) -> (&str, &str, &str) {
    (
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// `<ns>_<name>_<uid>`: the pod's log directory name under `podLogsDir`.
pub fn log_dir_name(pod: &Pod) -> String {
    let (name, ns, uid) = pod_ids(pod);
    format!("{ns}_{name}_{uid}")
}

/// `name_namespace(uid)`, the kubelet's name for a pod in messages (`format.Pod`).
pub fn pod_desc(pod: &Pod) -> String {
    let (name, ns, uid) = pod_ids(pod);
    format!("{name}_{ns}({uid})")
}

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let (name, ns, uid) = pod_ids(pod);
    let mut l: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    l.insert(labels::POD_NAME.into(), name.into());
    l.insert(labels::POD_NAMESPACE.into(), ns.into());
    l.insert(labels::POD_UID.into(), uid.into());
    l
}

/// Per-node inputs of the sandbox config.
#[derive(Clone, Debug, Default)]
pub struct SandboxContext {
    /// `podLogsDir`.
    pub pod_logs_dir: String,
    /// The resolver configuration ([`dns::pod_dns`]).
    pub dns: v1::DnsConfig,
    /// The pod's cgroup (`/kubepods/burstable/pod<uid>`).
    pub cgroup_parent: String,
    /// The node's hostname (host-network pods use it).
    pub node_hostname: String,
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => v1::Protocol::Udp as i32,
        Some("SCTP") => v1::Protocol::Sctp as i32,
        _ => v1::Protocol::Tcp as i32,
    }
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

fn namespace_options(pod: &Pod) -> v1::NamespaceOption {
    let spec = pod.spec.as_ref();
    let node = v1::NamespaceMode::Node as i32;
    let pod_mode = v1::NamespaceMode::Pod as i32;
    v1::NamespaceOption {
        network: if host_network(pod) { node } else { pod_mode },
        pid: if spec.and_then(|s| s.host_pid).unwrap_or(false) {
            node
        } else if spec
            .and_then(|s| s.share_process_namespace)
            .unwrap_or(false)
        {
            pod_mode
        } else {
            v1::NamespaceMode::Container as i32
        },
        ipc: if spec.and_then(|s| s.host_ipc).unwrap_or(false) {
            node
        } else {
            pod_mode
        },
        ..Default::default()
    }
}

/// The pod's hostname: `spec.hostname` or its name, cut at 63 characters, as
/// upstream's `GeneratePodHostNameAndDomain` (the node's for host-network pods).
pub fn pod_hostname(pod: &Pod, node_hostname: &str) -> String {
    if host_network(pod) {
        return node_hostname.to_owned();
    }
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

/// Upstream's `generatePodSandboxConfig`.
pub fn sandbox_config(pod: &Pod, attempt: u32, ctx: &SandboxContext) -> v1::PodSandboxConfig {
    let (name, ns, uid) = pod_ids(pod);
    let spec = pod.spec.as_ref();
    // Every port of the regular containers, as upstream's `MakePortMappings` (the
    // runtime maps those with a hostPort), once per name in a container.
    let mut port_mappings = Vec::new();
    for c in spec.iter().flat_map(|s| s.containers.iter()) {
        let mut names = std::collections::HashSet::new();
        for p in c.ports.iter().flatten() {
            let host_ip = p.host_ip.clone().unwrap_or_default();
            let host_port = p.host_port.unwrap_or(0);
            let name = p.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
                let family = match host_ip.parse::<std::net::IpAddr>() {
                    _ if host_ip.is_empty() => "any",
                    Ok(std::net::IpAddr::V6(_)) => "v6",
                    _ => "v4",
                };
                format!(
                    "{family}-{}-{host_ip}:{}:{host_port}",
                    p.protocol.as_deref().unwrap_or_default(),
                    p.container_port
                )
            });
            if !names.insert(name) {
                continue;
            }
            port_mappings.push(v1::PortMapping {
                protocol: protocol(p.protocol.as_deref()),
                container_port: p.container_port,
                host_port,
                host_ip,
            });
        }
    }
    let psc = spec.and_then(|s| s.security_context.as_ref());
    let sysctls = psc
        .and_then(|s| s.sysctls.as_ref())
        .map(|ss| {
            ss.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: ns.into(),
            attempt,
        }),
        // Host-network pods keep the node's hostname: upstream leaves it unset.
        hostname: if host_network(pod) {
            String::new()
        } else {
            pod_hostname(pod, &ctx.node_hostname)
        },
        log_directory: format!("{}/{}", ctx.pod_logs_dir, log_dir_name(pod)),
        dns_config: (!host_network(pod) || !ctx.dns.servers.is_empty()).then(|| ctx.dns.clone()),
        port_mappings,
        labels: pod_labels(pod),
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: ctx.cgroup_parent.clone(),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc
                    .and_then(|s| s.run_as_user)
                    .map(|value| v1::Int64Value { value }),
                run_as_group: psc
                    .and_then(|s| s.run_as_group)
                    .map(|value| v1::Int64Value { value }),
                supplemental_groups: psc
                    .and_then(|s| s.supplemental_groups.clone())
                    .unwrap_or_default(),
                readonly_rootfs: false,
                privileged: spec
                    .iter()
                    .flat_map(|s| {
                        s.containers
                            .iter()
                            .chain(s.init_containers.iter().flatten())
                    })
                    .any(|c| {
                        c.security_context
                            .as_ref()
                            .and_then(|s| s.privileged)
                            .unwrap_or(false)
                    }),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    }
}

/// The container spec's hash, as upstream's `HashContainer`: FNV-32a over its JSON.
pub fn container_hash(c: &Container) -> String {
    format!(
        "{:x}",
        component_base::hash::fnv32a(&serde_json::to_vec(c).unwrap_or_default())
    )
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Upstream's `expandContainerCommandAndArgs` / `expansion.Expand`: `$(VAR)`
/// references to the container's env are replaced, `$$` escapes a `$`, unknown
/// references stay as written.
pub fn expand(s: &str, env: &HashMap<String, String>) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'('
                && let Some(end) = s[i + 2..].find(')')
            {
                let name = &s[i + 2..i + 2 + end];
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&s[i..i + 3 + end]),
                }
                i += 3 + end;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The QoS class of a pod, as `v1qos.GetPodQOS`.
pub fn qos_class(pod: &Pod) -> &'static str {
    if let Some(q) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        return match q {
            "Guaranteed" => "Guaranteed",
            "Burstable" => "Burstable",
            _ => "BestEffort",
        };
    }
    let mut any = false;
    let mut guaranteed = true;
    for c in pod.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    }) {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        for res in ["cpu", "memory"] {
            let rq = req.and_then(|m| m.get(res));
            let lm = lim.and_then(|m| m.get(res));
            if rq.is_some() || lm.is_some() {
                any = true;
            }
            match (rq, lm) {
                (Some(a), Some(b))
                    if component_base::quantity::parse(&a.0)
                        == component_base::quantity::parse(&b.0) => {}
                (None, Some(_)) => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The pod's cgroup parent under `cgroup_root` (cgroupfs driver), as upstream's
/// pod container manager names it: `/kubepods/pod<uid>` for Guaranteed pods,
/// `/kubepods/burstable/pod<uid>` and `/kubepods/besteffort/pod<uid>` otherwise.
pub fn cgroup_parent(pod: &Pod, cgroup_root: &str) -> String {
    let root = cgroup_root.trim_end_matches('/');
    let (_, _, uid) = pod_ids(pod);
    match qos_class(pod) {
        "Guaranteed" => format!("{root}/kubepods/pod{uid}"),
        "Burstable" => format!("{root}/kubepods/burstable/pod{uid}"),
        _ => format!("{root}/kubepods/besteffort/pod{uid}"),
    }
}

fn milli(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i64> {
    q.and_then(|q| component_base::quantity::parse(&q.0))
        .map(|n| (n / 1_000_000) as i64)
}

fn units(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<i64> {
    q.and_then(|q| component_base::quantity::parse(&q.0))
        .map(|n| (n / 1_000_000_000) as i64)
}

/// Upstream's `IsNodeCriticalPod`: a critical pod (static, mirror, or of system
/// priority) of priority class `system-node-critical`.
fn node_critical(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let critical = spec
        .and_then(|s| s.priority)
        .is_some_and(|p| p >= 2_000_000_000)
        || pod.metadata.annotations.as_ref().is_some_and(|a| {
            a.contains_key("kubernetes.io/config.mirror")
                || a.get(labels::CONFIG_SOURCE).is_some_and(|s| s != "api")
        });
    critical && spec.and_then(|s| s.priority_class_name.as_deref()) == Some("system-node-critical")
}

fn memory_request(c: &Container) -> i64 {
    units(
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get("memory")),
    )
    .unwrap_or(0)
}

/// Upstream's `GetContainerOOMScoreAdjust`: -997 for Guaranteed and node-critical
/// pods, 1000 for BestEffort, and for Burstable `1000 - 1000 × request / memory`
/// (a sidecar no higher than the smallest regular container), kept within 3..=999.
fn oom_score_adj(pod: &Pod, c: &Container, node_memory: u64) -> i64 {
    const GUARANTEED: i64 = -997;
    const BEST_EFFORT: i64 = 1000;
    if node_critical(pod) {
        return GUARANTEED;
    }
    match qos_class(pod) {
        "Guaranteed" => return GUARANTEED,
        "BestEffort" => return BEST_EFFORT,
        _ => {}
    }
    if node_memory == 0 {
        return BEST_EFFORT - 1;
    }
    let adj = |req: i64| 1000 - (1000 * i128::from(req) / i128::from(node_memory)) as i64;
    let mut oom = adj(memory_request(c));
    let spec = pod.spec.as_ref();
    let sidecar = is_sidecar(c)
        && spec.is_some_and(|s| s.init_containers.iter().flatten().any(|i| i.name == c.name));
    if sidecar {
        let min = spec
            .and_then(|s| s.containers.iter().map(memory_request).min())
            .unwrap_or(0);
        oom = oom.min(adj(min));
    }
    if oom < 1000 + GUARANTEED {
        1000 + GUARANTEED
    } else if oom == BEST_EFFORT {
        oom - 1
    } else {
        oom
    }
}

/// The container's Linux resources, as upstream's `generateLinuxContainerResources`:
/// cpu shares from the request (the limit when there is none; 2 to 262144), the CFS
/// period (always, `cpuCFSQuota` being on) and quota from the limit (at least
/// 1000), the memory limit, and the OOM score adjustment ([`oom_score_adj`]).
pub fn linux_resources(pod: &Pod, c: &Container, node_memory: u64) -> v1::LinuxContainerResources {
    let r = c.resources.as_ref();
    let req = r.and_then(|r| r.requests.as_ref());
    let lim = r.and_then(|r| r.limits.as_ref());
    let cpu_limit = milli(lim.and_then(|m| m.get("cpu"))).filter(|m| *m > 0);
    let cpu_req = milli(req.and_then(|m| m.get("cpu")))
        .filter(|m| *m > 0)
        .or(cpu_limit);
    let shares = match cpu_req {
        Some(m) => (m * 1024 / 1000).clamp(2, 262_144),
        None => 2,
    };
    let period = 100_000i64;
    let quota = cpu_limit
        .map(|m| (m * period / 1000).max(1000))
        .unwrap_or(0);
    let mem_limit = units(lim.and_then(|m| m.get("memory"))).unwrap_or(0);
    v1::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: mem_limit,
        oom_score_adj: oom_score_adj(pod, c, node_memory),
        ..Default::default()
    }
}

/// Per-container inputs of the container config besides the pod.
#[derive(Clone, Debug, Default)]
pub struct ContainerContext {
    /// The image as pulled (its reference in the runtime).
    pub image_ref: String,
    /// The resolved environment, in order.
    pub env: Vec<(String, String)>,
    /// The mounts (volumes, `/etc/hosts`, the termination log).
    pub mounts: Vec<v1::Mount>,
    /// The restart count this instance starts with.
    pub restart_count: u32,
    /// The node's memory, for the OOM score of Burstable pods.
    pub node_memory: u64,
}

/// Upstream's `generateContainerConfig`.
pub fn container_config(pod: &Pod, c: &Container, ctx: &ContainerContext) -> v1::ContainerConfig {
    let env_map: HashMap<String, String> = ctx.env.iter().cloned().collect();
    let mut labels = pod_labels(pod)
        .into_iter()
        .filter(|(k, _)| k.starts_with("io.kubernetes.pod."))
        .collect::<HashMap<_, _>>();
    labels.insert(labels::CONTAINER_NAME.into(), c.name.clone());
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let mut annotations = HashMap::from([
        (labels::CONTAINER_HASH.to_owned(), container_hash(c)),
        (
            labels::RESTART_COUNT.to_owned(),
            ctx.restart_count.to_string(),
        ),
        (
            labels::TERMINATION_MESSAGE_PATH.to_owned(),
            c.termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        (
            labels::TERMINATION_MESSAGE_POLICY.to_owned(),
            c.termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
        (labels::GRACE_PERIOD.to_owned(), grace.to_string()),
    ]);
    if let Some(ports) = &c.ports {
        annotations.insert(
            labels::PORTS.into(),
            serde_json::to_string(ports).unwrap_or_default(),
        );
    }
    let sc = c.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: c.name.clone(),
            attempt: ctx.restart_count,
        }),
        image: Some(v1::ImageSpec {
            image: ctx.image_ref.clone(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: c
            .command
            .iter()
            .flatten()
            .map(|s| expand(s, &env_map))
            .collect(),
        args: c
            .args
            .iter()
            .flatten()
            .map(|s| expand(s, &env_map))
            .collect(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: ctx
            .env
            .iter()
            .map(|(k, v)| v1::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts: ctx.mounts.clone(),
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, ctx.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(linux_resources(pod, c, ctx.node_memory)),
            security_context: Some(v1::LinuxContainerSecurityContext {
                capabilities: sc
                    .and_then(|s| s.capabilities.as_ref())
                    .map(|caps| v1::Capability {
                        add_capabilities: caps.add.clone().unwrap_or_default(),
                        drop_capabilities: caps.drop.clone().unwrap_or_default(),
                        ..Default::default()
                    }),
                privileged,
                namespace_options: Some(namespace_options(pod)),
                run_as_user: sc
                    .and_then(|s| s.run_as_user)
                    .or(psc.and_then(|s| s.run_as_user))
                    .map(|value| v1::Int64Value { value }),
                run_as_group: sc
                    .and_then(|s| s.run_as_group)
                    .or(psc.and_then(|s| s.run_as_group))
                    .map(|value| v1::Int64Value { value }),
                supplemental_groups: psc
                    .and_then(|s| s.supplemental_groups.clone())
                    .unwrap_or_default(),
                readonly_rootfs: sc
                    .and_then(|s| s.read_only_root_filesystem)
                    .unwrap_or(false),
                no_new_privs: !sc
                    .and_then(|s| s.allow_privilege_escalation)
                    .unwrap_or(true),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// What the runtime holds of one pod: its sandboxes and containers, newest first.
#[derive(Clone, Debug, Default)]
pub struct RuntimePod {
    /// Sandbox statuses, newest first.
    pub sandboxes: Vec<v1::PodSandboxStatus>,
    /// Container statuses, newest first.
    pub containers: Vec<v1::ContainerStatus>,
}

impl RuntimePod {
    /// Reads one pod's state from the runtime.
    pub async fn read(runtime: &dyn cri::Runtime, uid: &str) -> cri::Result<RuntimePod> {
        let mut sandboxes = Vec::new();
        for s in runtime.list_pod_sandbox(Some(uid)).await? {
            match runtime.pod_sandbox_status(&s.id).await {
                Ok(st) => sandboxes.push(st),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let mut containers = Vec::new();
        for c in runtime.list_containers(Some(uid)).await? {
            match runtime.container_status(&c.id).await {
                Ok(st) => containers.push(st),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Ok(RuntimePod {
            sandboxes,
            containers,
        })
    }

    /// The newest sandbox, if it is ready.
    pub fn ready_sandbox(&self) -> Option<&v1::PodSandboxStatus> {
        self.sandboxes
            .first()
            .filter(|s| s.state == cri::state::SANDBOX_READY)
    }

    /// The newest instance of container `name`.
    pub fn latest(&self, name: &str) -> Option<&v1::ContainerStatus> {
        self.containers
            .iter()
            .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == name))
    }

    /// Every instance of container `name`, newest first.
    pub fn instances<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a v1::ContainerStatus> + 'a {
        self.containers
            .iter()
            .filter(move |c| c.metadata.as_ref().is_some_and(|m| m.name == name))
    }

    /// The pod's IP from its ready sandbox.
    pub fn pod_ips(&self) -> Vec<String> {
        self.ready_sandbox()
            .and_then(|s| s.network.as_ref())
            .map(|n| {
                std::iter::once(n.ip.clone())
                    .chain(n.additional_ips.iter().map(|i| i.ip.clone()))
                    .filter(|ip| !ip.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether any container still runs.
    pub fn any_running(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.state == cri::state::RUNNING)
    }

    /// The restart count a new instance of `name` starts with.
    pub fn next_restart_count(&self, name: &str) -> u32 {
        self.latest(name)
            .map(|c| {
                c.annotations
                    .get(labels::RESTART_COUNT)
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
                    + 1
            })
            .unwrap_or(0)
    }
}

/// One container the sync must start: init (`init: true`) or regular, by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    /// An init container.
    pub init: bool,
    /// Its index in `initContainers` or `containers`.
    pub index: usize,
}

/// What one sync does, as upstream's `podActions`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Kill every container and the sandbox first: a new sandbox is needed, an init
    /// container failed for good, or nothing is left to run.
    pub kill_pod: bool,
    /// Create a sandbox (with this attempt number).
    pub create_sandbox: Option<u32>,
    /// Containers to start, in order.
    pub start: Vec<Start>,
    /// Running containers to kill, as (id, name, why).
    pub kill: Vec<(String, String, String)>,
    /// An init container failed and the pod will never run (restartPolicy Never).
    pub init_failed: bool,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn container_name(c: &v1::ContainerStatus) -> String {
    c.metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

/// Upstream's `ShouldContainerBeRestarted` for a container that is not running.
fn should_restart(pod: &Pod, st: Option<&v1::ContainerStatus>) -> bool {
    let Some(s) = st else {
        return true;
    };
    if s.state == cri::state::RUNNING {
        return false;
    }
    if s.state == cri::state::UNKNOWN || s.state == cri::state::CREATED {
        return true;
    }
    match restart_policy(pod) {
        "Never" => false,
        "OnFailure" => s.exit_code != 0,
        _ => true,
    }
}

/// Upstream's `containerSucceeded`: the latest instance is not running and exited 0.
fn succeeded(st: Option<&v1::ContainerStatus>) -> bool {
    st.is_some_and(|s| s.state != cri::state::RUNNING && s.exit_code == 0)
}

/// Upstream's `isInitContainerFailed`.
fn init_container_failed(s: &v1::ContainerStatus) -> bool {
    s.reason == "OOMKilled"
        || (s.state == cri::state::EXITED && s.exit_code != 0)
        || s.state == cri::state::UNKNOWN
}

fn unknown_state_kill(s: &v1::ContainerStatus, init: bool) -> (String, String, String) {
    let what = if init { "Init container" } else { "Container" };
    (
        s.id.clone(),
        container_name(s),
        format!("{what} is in \"unknown\" state, try killing it before restart"),
    )
}

/// Upstream's `computeInitContainerActions`: the init containers to start (the
/// next regular one, sidecars to (re)start) and whether the pod is initialized.
/// The runtime may have lost older init containers, so the scan goes backwards from
/// the last one that has a status; once a regular container was created or runs,
/// only sidecars matter.
fn init_actions(pod: &Pod, rt: &RuntimePod, a: &mut Actions) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let inits: &[Container] = spec.init_containers.as_deref().unwrap_or_default();
    if inits.is_empty() {
        return true;
    }
    let mut initialized = spec.containers.iter().any(|c| {
        rt.latest(&c.name)
            .is_some_and(|s| s.state == cri::state::CREATED || s.state == cri::state::RUNNING)
    });
    let mut previously_initialized = initialized;
    let restart_on_failure = restart_policy(pod) != "Never";
    let last = inits.len() - 1;
    let mut starts = Vec::new();
    for (i, c) in inits.iter().enumerate().rev() {
        let Some(st) = rt.latest(&c.name) else {
            // Its status is gone; a sidecar of an initialized pod runs again.
            if previously_initialized && is_sidecar(c) {
                starts.push(i);
            }
            continue;
        };
        if previously_initialized && !is_sidecar(c) {
            continue;
        }
        match st.state {
            s if s == cri::state::CREATED => starts.push(i),
            s if s == cri::state::RUNNING => {
                if is_sidecar(c) {
                    if i == last {
                        initialized = true;
                    } else if !previously_initialized {
                        starts.push(i + 1);
                    }
                    if st.annotations.get(labels::CONTAINER_HASH) != Some(&container_hash(c)) {
                        a.kill.push((
                            st.id.clone(),
                            c.name.clone(),
                            format!("Init container {} definition changed", c.name),
                        ));
                        starts.push(i);
                    }
                }
            }
            s if s == cri::state::EXITED => {
                if is_sidecar(c) {
                    starts.push(i);
                } else if init_container_failed(st) {
                    if !restart_on_failure {
                        a.kill_pod = true;
                        a.init_failed = true;
                        return false;
                    }
                    starts.push(i);
                } else if i == last {
                    initialized = true;
                } else {
                    starts.push(i + 1);
                }
            }
            _ => {
                if !is_sidecar(c) && !restart_on_failure {
                    a.kill_pod = true;
                    a.init_failed = true;
                    return false;
                }
                a.kill.push(unknown_state_kill(st, true));
                starts.push(i);
            }
        }
        previously_initialized = true;
    }
    if !previously_initialized {
        starts.push(0);
    }
    a.start.extend(
        starts
            .into_iter()
            .rev()
            .map(|index| Start { init: true, index }),
    );
    initialized
}

/// Upstream's `computePodActions`: what to kill, create and start so the runtime
/// matches the spec.
pub fn compute_actions(pod: &Pod, rt: &RuntimePod) -> Actions {
    let mut a = Actions::default();
    let Some(spec) = pod.spec.as_ref() else {
        return a;
    };
    let inits: &[Container] = spec.init_containers.as_deref().unwrap_or_default();
    let need_sandbox = match rt.sandboxes.first() {
        None => true,
        Some(s) => {
            s.state != cri::state::SANDBOX_READY
                || (!host_network(pod) && s.network.as_ref().is_none_or(|n| n.ip.is_empty()))
        }
    };
    if need_sandbox {
        let attempt = rt
            .sandboxes
            .first()
            .and_then(|s| s.metadata.as_ref())
            .map(|m| m.attempt + 1)
            .unwrap_or(0);
        // A pod that must not restart keeps its dead sandbox once its containers ran.
        if restart_policy(pod) == "Never" && !rt.sandboxes.is_empty() && !rt.containers.is_empty() {
            a.kill_pod = rt.any_running();
            return a;
        }
        // Every container starts again but those that succeeded under OnFailure.
        let to_start: Vec<Start> = spec
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| !(restart_policy(pod) == "OnFailure" && succeeded(rt.latest(&c.name))))
            .map(|(index, _)| Start { init: false, index })
            .collect();
        // Initialized (a regular container was created) and nothing left to run: no
        // new sandbox.
        let created = spec.containers.iter().any(|c| {
            rt.latest(&c.name).is_some_and(|s| {
                [cri::state::CREATED, cri::state::RUNNING, cri::state::EXITED].contains(&s.state)
            })
        });
        if to_start.is_empty() && created {
            a.kill_pod = rt.any_running();
            return a;
        }
        a.kill_pod = !rt.sandboxes.is_empty();
        a.create_sandbox = Some(attempt);
        if !inits.is_empty() {
            a.start.push(Start {
                init: true,
                index: 0,
            });
        } else {
            a.start = to_start;
        }
        return a;
    }
    if !init_actions(pod, rt, &mut a) || a.kill_pod {
        return a;
    }
    // Running containers to keep.
    let mut keep = 0;
    let mut app_starts = 0;
    for (index, c) in spec.containers.iter().enumerate() {
        let st = rt.latest(&c.name);
        match st {
            Some(s) if s.state == cri::state::RUNNING => {
                // A container whose spec changed is killed and started again.
                if s.annotations.get(labels::CONTAINER_HASH) != Some(&container_hash(c)) {
                    a.kill.push((
                        s.id.clone(),
                        c.name.clone(),
                        format!("Container {} definition changed", c.name),
                    ));
                    a.start.push(Start { init: false, index });
                    app_starts += 1;
                } else {
                    keep += 1;
                }
            }
            _ => {
                if should_restart(pod, st) {
                    a.start.push(Start { init: false, index });
                    app_starts += 1;
                    if let Some(s) = st.filter(|s| s.state == cri::state::UNKNOWN) {
                        a.kill.push(unknown_state_kill(s, false));
                    }
                }
            }
        }
    }
    // Nothing runs and nothing will: stop the pod, sidecars included.
    if keep == 0 && app_starts == 0 {
        a.kill_pod = true;
        a.start.retain(|s| !s.init);
    }
    a
}

/// Upstream's container restart back-off: 10 s doubling to 5 min per container,
/// forgotten after 10 min without a restart.
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, (Duration, std::time::Instant)>,
}

/// The first back-off.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

impl Backoff {
    /// The key of one container of one pod.
    pub fn key(pod_uid: &str, container: &str) -> String {
        format!("{pod_uid}_{container}")
    }

    /// The back-off in effect for `key` if the container last finished
    /// `since_finish` ago, else `None` (and the next back-off is armed).
    pub fn check(
        &mut self,
        key: &str,
        since_finish: Duration,
        now: std::time::Instant,
    ) -> Option<Duration> {
        if let Some((d, last)) = self.entries.get(key) {
            if now.duration_since(*last) > 2 * BACKOFF_MAX {
                self.entries.remove(key);
            } else if since_finish < *d {
                return Some(*d);
            }
        }
        let next = match self.entries.get(key) {
            Some((d, _)) => (*d * 2).min(BACKOFF_MAX),
            None => BACKOFF_INITIAL,
        };
        self.entries.insert(key.to_owned(), (next, now));
        None
    }

    /// Forgets a pod's entries.
    pub fn forget_pod(&mut self, pod_uid: &str) {
        let prefix = format!("{pod_uid}_");
        self.entries.retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests;
