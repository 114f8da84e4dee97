//! The Node object: registration, the status the kubelet posts, and the node Lease.
//!
//! [`initial_node`] and [`status`] are pure (machine info, runtime state and
//! configuration in; the Node or its status out), upstream's `initialNode` and
//! node status setters. [`NodeAgent`] owns the loops: register (retrying with
//! upstream's 100 ms → 7 s backoff, reconciling an existing Node's default labels),
//! then compute the status every `nodeStatusUpdateFrequency` and patch it when it
//! changed or `nodeStatusReportFrequency` passed, and renew the Lease in
//! `kube-node-lease` every quarter of `nodeLeaseDurationSeconds`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    AttachedVolume, ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition,
    NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use parking_lot::Mutex;

use crate::config::KubeletConfiguration;
use crate::machine::{MachineInfo, go_arch};

/// The kubelet version nodes report (`nodeInfo.kubeletVersion`).
pub const KUBELET_VERSION: &str = "v1.33.0";

/// What the node status is computed from besides the machine and configuration.
#[derive(Clone, Debug, Default)]
pub struct RuntimeState {
    /// `containerd://1.6.20`.
    pub runtime_version: String,
    /// Why the runtime is not ready (empty when it is), as upstream words it:
    /// `container runtime network not ready: NetworkReady=false reason:... message:...`.
    pub not_ready: Vec<String>,
    /// The images on the node, largest first (at most 50 are reported).
    pub images: Vec<ContainerImage>,
}

/// The static inputs of the node status.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its IP (the InternalIP address).
    pub ip: Option<IpAddr>,
    /// The host's name (the Hostname address).
    pub hostname: String,
    /// The kubelet API port.
    pub port: u16,
    /// The machine.
    pub machine: MachineInfo,
    /// `--node-labels`.
    pub labels: Vec<(String, String)>,
    /// `--cloud-provider=external`.
    pub external_cloud_provider: bool,
}

/// The labels every kubelet sets on its Node (and reconciles on an existing one).
pub fn default_labels(name: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", go_arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", go_arch()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The Node the kubelet registers, as upstream's `initialNode`.
pub fn initial_node(info: &NodeInfo, cfg: &KubeletConfiguration) -> Node {
    let mut labels = default_labels(&info.name);
    labels.extend(info.labels.iter().cloned());
    let mut taints: Vec<Taint> = cfg.register_with_taints.clone();
    if info.external_cloud_provider {
        taints.push(Taint {
            key: "node.cloudprovider.kubernetes.io/uninitialized".into(),
            value: Some("true".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        });
    }
    Node {
        metadata: ObjectMeta {
            name: Some(info.name.clone()),
            labels: Some(labels),
            annotations: Some(
                [(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
                    "true".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            pod_cidr: (!cfg.pod_cidr.is_empty()).then(|| cfg.pod_cidr.clone()),
            pod_cidrs: (!cfg.pod_cidr.is_empty()).then(|| vec![cfg.pod_cidr.clone()]),
            ..Default::default()
        }),
        status: None,
    }
}

fn q(s: String) -> Quantity {
    Quantity(s)
}

/// Bytes as a canonical binary quantity (`16369116Ki`).
fn bytes(n: u64) -> Quantity {
    q(component_base::quantity::format(n as i128 * 1_000_000_000))
}

/// A reserved or threshold amount of `resource` out of `capacity` bytes (or cores ×
/// 1000 for cpu): a quantity or, for thresholds, a percentage.
fn amount(v: &str, capacity: u64) -> u64 {
    if let Some(p) = v.strip_suffix('%') {
        return (p.trim().parse::<f64>().unwrap_or(0.0) / 100.0 * capacity as f64) as u64;
    }
    component_base::quantity::parse(v)
        .map(|n| (n / 1_000_000_000).max(0) as u64)
        .unwrap_or(0)
}

fn reserved(cfg: &KubeletConfiguration, resource: &str) -> i128 {
    [&cfg.system_reserved, &cfg.kube_reserved]
        .iter()
        .filter_map(|m| m.get(resource))
        .filter_map(|v| component_base::quantity::parse(v))
        .sum()
}

/// Capacity and allocatable, as upstream's `MachineInfo` setter: allocatable is
/// capacity less system and kube reserved and the hard eviction threshold.
pub fn resources(
    m: &MachineInfo,
    cfg: &KubeletConfiguration,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut cap = BTreeMap::new();
    cap.insert("cpu".to_owned(), q(m.cores.to_string()));
    cap.insert("memory".to_owned(), bytes(m.memory));
    cap.insert("ephemeral-storage".to_owned(), bytes(m.fs_capacity));
    cap.insert("pods".to_owned(), q(cfg.max_pods.to_string()));
    let mut hugepages = 0u64;
    for (size, total) in &m.hugepages {
        let name = format!(
            "hugepages-{}",
            component_base::quantity::format(*size as i128 * 1_000_000_000)
        );
        cap.insert(name, bytes(*total));
        hugepages += total;
    }
    for size in ["1Gi", "2Mi"] {
        cap.entry(format!("hugepages-{size}"))
            .or_insert_with(|| q("0".into()));
    }
    let mut alloc = cap.clone();
    let nano = 1_000_000_000i128;
    let cpu = (m.cores as i128 * nano - reserved(cfg, "cpu")).max(0);
    alloc.insert(
        "cpu".into(),
        q(component_base::quantity::format_decimal(cpu)),
    );
    let mem_threshold = cfg
        .eviction_hard
        .get("memory.available")
        .map(|v| amount(v, m.memory))
        .unwrap_or(0);
    let mem = (m.memory as i128 * nano
        - reserved(cfg, "memory")
        - mem_threshold as i128 * nano
        - hugepages as i128 * nano)
        .max(0);
    alloc.insert("memory".into(), q(component_base::quantity::format(mem)));
    let fs_threshold = cfg
        .eviction_hard
        .get("nodefs.available")
        .map(|v| amount(v, m.fs_capacity))
        .unwrap_or(0);
    let fs = (m.fs_capacity as i128 * nano
        - reserved(cfg, "ephemeral-storage")
        - fs_threshold as i128 * nano)
        .max(0);
    alloc.insert(
        "ephemeral-storage".into(),
        q(component_base::quantity::format(fs)),
    );
    (cap, alloc)
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: &Time,
    old: Option<&NodeCondition>,
) -> NodeCondition {
    let status = if ok { "True" } else { "False" };
    // Pressure conditions are "True" when under pressure: the caller passes
    // `ok` as the condition's truth.
    let transition = match old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: transition,
    }
}

/// The node's status now, as upstream's setters compute it; `old` is the status
/// last posted (transition times carry over).
pub fn status(
    info: &NodeInfo,
    cfg: &KubeletConfiguration,
    rt: &RuntimeState,
    old: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let now = Time(now);
    let (capacity, allocatable) = resources(&info.machine, cfg);
    let old_cond = |t: &str| {
        old.and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
    };
    let ready = rt.not_ready.is_empty();
    let conditions = vec![
        condition(
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            &now,
            old_cond("MemoryPressure"),
        ),
        condition(
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            &now,
            old_cond("DiskPressure"),
        ),
        condition(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            &now,
            old_cond("PIDPressure"),
        ),
        if ready {
            condition(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
                &now,
                old_cond("Ready"),
            )
        } else {
            condition(
                "Ready",
                false,
                "KubeletNotReady",
                &rt.not_ready.join(", "),
                &now,
                old_cond("Ready"),
            )
        },
    ];
    let mut addresses = Vec::new();
    if let Some(ip) = info.ip {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        });
    }
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: info.hostname.clone(),
    });
    let m = &info.machine;
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(info.port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: m.boot_id.clone(),
            container_runtime_version: rt.runtime_version.clone(),
            kernel_version: m.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: m.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: m.os_image.clone(),
            system_uuid: m.system_uuid.clone(),
            ..Default::default()
        }),
        images: Some(rt.images.iter().take(50).cloned().collect()),
        volumes_attached: None::<Vec<AttachedVolume>>,
        ..Default::default()
    }
}

/// Whether two statuses differ in anything but heartbeat times.
fn changed(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(a) != strip(b)
}

/// Posts the node's registration, status and Lease.
pub struct NodeAgent {
    /// Static inputs.
    pub info: NodeInfo,
    /// The configuration.
    pub cfg: KubeletConfiguration,
    /// The API client.
    pub client: kube::Client,
    /// The runtime state the status reports, refreshed by the kubelet.
    pub runtime: Arc<Mutex<RuntimeState>>,
}

impl NodeAgent {
    /// Registers the node, retrying until it exists: creates it, or reconciles the
    /// default labels of one that already does (as upstream, it never deletes it).
    pub async fn register(&self) -> Node {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut backoff = Duration::from_millis(100);
        loop {
            let node = initial_node(&self.info, &self.cfg);
            match nodes.create(&PostParams::default(), &node).await {
                Ok(n) => {
                    tracing::info!(node = %self.info.name, "Successfully registered node");
                    return n;
                }
                Err(e) if client_base::errors::is_conflict(&e) || already_exists(&e) => match nodes
                    .get(&self.info.name)
                    .await
                {
                    Ok(existing) => {
                        return self.reconcile_labels(&nodes, existing).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "Unable to register node with API server"),
                },
                Err(e) => {
                    tracing::warn!(node = %self.info.name, error = %e, "Unable to register node with API server");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(7));
        }
    }

    async fn reconcile_labels(&self, nodes: &Api<Node>, existing: Node) -> Node {
        let have = existing.metadata.labels.clone().unwrap_or_default();
        let want: BTreeMap<String, String> = default_labels(&self.info.name)
            .into_iter()
            .filter(|(k, v)| have.get(k) != Some(v))
            .collect();
        if want.is_empty() {
            return existing;
        }
        let patch = serde_json::json!({"metadata": {"labels": want}});
        match nodes
            .patch(
                &self.info.name,
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "Unable to reconcile node labels");
                existing
            }
        }
    }

    /// Computes and posts the status every `nodeStatusUpdateFrequency` until the
    /// process ends.
    pub async fn status_loop(self: Arc<Self>) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut last: Option<(NodeStatus, Instant)> = None;
        let mut tick = tokio::time::interval(self.cfg.node_status_update_frequency.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let rt = self.runtime.lock().clone();
            let new = status(
                &self.info,
                &self.cfg,
                &rt,
                last.as_ref().map(|(s, _)| s),
                Timestamp::now(),
            );
            let due = match &last {
                None => true,
                Some((old, at)) => {
                    changed(old, &new) || at.elapsed() >= self.cfg.node_status_report_frequency.0
                }
            };
            if !due {
                continue;
            }
            let patch = serde_json::json!({ "status": new });
            match nodes
                .patch_status(
                    &self.info.name,
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await
            {
                Ok(_) => last = Some((new, Instant::now())),
                Err(e) => tracing::warn!(error = %e, "Error updating node status, will retry"),
            }
        }
    }

    /// Keeps the node's Lease renewed until the process ends.
    pub async fn lease_loop(self: Arc<Self>, node_uid: String) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let period = Duration::from_secs(self.cfg.node_lease_duration_seconds as u64) / 4;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.renew(&leases, &node_uid).await {
                tracing::warn!(error = %e, "failed to update lease");
            }
        }
    }

    async fn renew(&self, leases: &Api<Lease>, node_uid: &str) -> Result<(), kube::Error> {
        let name = &self.info.name;
        let spec = LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(self.cfg.node_lease_duration_seconds),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        };
        match leases.get_opt(name).await? {
            Some(mut l) => {
                l.spec = Some(spec);
                leases.replace(name, &PostParams::default(), &l).await?;
            }
            None => {
                let l = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some("kube-node-lease".into()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: name.clone(),
                            uid: node_uid.to_owned(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                leases.create(&PostParams::default(), &l).await?;
            }
        }
        Ok(())
    }
}

fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.reason == "AlreadyExists")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> NodeInfo {
        NodeInfo {
            name: "worker-1".into(),
            ip: Some("10.99.0.11".parse().unwrap()),
            hostname: "worker-1".into(),
            port: 10250,
            machine: MachineInfo {
                cores: 2,
                memory: 16 * 1024 * 1024 * 1024,
                fs_capacity: 100 * 1024 * 1024 * 1024,
                machine_id: "m".into(),
                system_uuid: "u".into(),
                boot_id: "b".into(),
                kernel_version: "6.1.0".into(),
                os_image: "Debian GNU/Linux 12 (bookworm)".into(),
                hugepages: Vec::new(),
            },
            labels: vec![("role".into(), "worker".into())],
            external_cloud_provider: true,
        }
    }

    #[test]
    fn capacity_and_allocatable_as_upstream() {
        let mut cfg = KubeletConfiguration::default();
        cfg.system_reserved.insert("cpu".into(), "500m".into());
        cfg.kube_reserved.insert("memory".into(), "1Gi".into());
        let (cap, alloc) = resources(&info().machine, &cfg);
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "16Gi");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(cap["hugepages-2Mi"].0, "0");
        assert_eq!(alloc["cpu"].0, "1500m");
        // 16Gi - 1Gi reserved - 100Mi hard eviction.
        assert_eq!(alloc["memory"].0, "15260Mi");
        // 100Gi less 10% nodefs.available.
        assert_eq!(alloc["ephemeral-storage"].0, "90Gi");
    }

    #[test]
    fn initial_node_and_conditions() {
        let cfg = KubeletConfiguration::default();
        let n = initial_node(&info(), &cfg);
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "worker-1");
        assert_eq!(labels["role"], "worker");
        assert_eq!(
            n.spec.unwrap().taints.unwrap()[0].key,
            "node.cloudprovider.kubernetes.io/uninitialized"
        );
        let t0 = Timestamp::from_second(1_000).unwrap();
        let rt = RuntimeState {
            runtime_version: "containerd://1.6.20".into(),
            not_ready: vec!["container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".into()],
            images: Vec::new(),
        };
        let s0 = status(&info(), &cfg, &rt, None, t0);
        let ready = |s: &NodeStatus| s.conditions.as_ref().unwrap()[3].clone();
        assert_eq!(ready(&s0).status, "False");
        assert_eq!(ready(&s0).reason.as_deref(), Some("KubeletNotReady"));
        let t1 = Timestamp::from_second(1_010).unwrap();
        let s1 = status(&info(), &cfg, &rt, Some(&s0), t1);
        assert!(!changed(&s0, &s1), "only heartbeats moved");
        assert_eq!(ready(&s1).last_transition_time, Some(Time(t0)));
        let ok = RuntimeState {
            not_ready: Vec::new(),
            ..rt
        };
        let s2 = status(&info(), &cfg, &ok, Some(&s1), t1);
        assert!(changed(&s1, &s2));
        assert_eq!(ready(&s2).reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready(&s2).message.as_deref(),
            Some("kubelet is posting ready status")
        );
        assert_eq!(ready(&s2).last_transition_time, Some(Time(t1)));
        assert_eq!(s2.node_info.as_ref().unwrap().kubelet_version, "v1.33.0");
    }
}
