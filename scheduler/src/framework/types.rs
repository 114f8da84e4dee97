//! What plugins see of the cluster: [`Resource`] amounts, [`PodInfo`] (a pod with
//! what the plugins precompute from it) and [`NodeInfo`] (a node with its pods and
//! their summed requests), as upstream's `framework/types.go`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use component_base::selectors::LabelSelector as Selector;
use k8s_openapi::api::core::v1::{
    Container, Node, Pod, PodAffinityTerm, ResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The CPU (millicores) and memory (bytes) a container without requests counts
/// for in scoring, upstream's `DefaultMilliCPURequest` and `DefaultMemoryRequest`.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// See [`DEFAULT_MILLI_CPU_REQUEST`]: 200 MiB.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Local ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// How many pods (only meaningful for allocatable).
    pub allowed_pod_number: i64,
    /// Extended and hugepage resources, in whole units.
    pub scalar: BTreeMap<String, i64>,
}

/// A quantity's value in units, rounded up (upstream's `Quantity.Value`).
pub fn quantity_value(q: &Quantity) -> i64 {
    let nano = component_base::quantity::parse(&q.0).unwrap_or(0);
    (nano + 999_999_999).div_euclid(1_000_000_000) as i64
}

/// A quantity in thousandths, rounded up (upstream's `Quantity.MilliValue`).
pub fn quantity_milli(q: &Quantity) -> i64 {
    let nano = component_base::quantity::parse(&q.0).unwrap_or(0);
    (nano + 999_999).div_euclid(1_000_000) as i64
}

/// Whether upstream counts `name` as a scalar resource: extended resources
/// (domain-prefixed, not `kubernetes.io/`), hugepages and attachable volumes.
pub fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

impl Resource {
    /// A resource list's amounts.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Resource::default();
        for (k, q) in list.into_iter().flatten() {
            r.set(k, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = quantity_milli(q),
            "memory" => self.memory = quantity_value(q),
            "ephemeral-storage" => self.ephemeral_storage = quantity_value(q),
            "pods" => self.allowed_pod_number = quantity_value(q),
            n if is_scalar(n) => {
                self.scalar.insert(n.to_owned(), quantity_value(q));
            }
            _ => {}
        }
    }

    /// The amount of `name` (`cpu` in millicores).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.allowed_pod_number,
            n => self.scalar.get(n).copied().unwrap_or(0),
        }
    }

    /// Adds `other`.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts `other`.
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each resource the larger of the two (for init containers).
    fn max_with(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

fn container_requests(c: &Container) -> Resource {
    Resource::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// A container's requests with upstream's non-zero defaults for unset CPU and
/// memory (`schedutil.GetNonzeroRequests`).
fn container_non_zero(c: &Container) -> Resource {
    let reqs = c
        .resources
        .as_ref()
        .and_then(|r: &ResourceRequirements| r.requests.as_ref());
    let mut r = container_requests(c);
    if reqs.is_none_or(|m| !m.contains_key("cpu")) {
        r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if reqs.is_none_or(|m| !m.contains_key("memory")) {
        r.memory = DEFAULT_MEMORY_REQUEST;
    }
    r
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// A pod's effective requests, as upstream's `resourcehelper.PodRequests`: the
/// containers' sum (with restartable init containers, the sidecars, running beside
/// them) or the largest init container's needs at its point in the start-up
/// sequence, whichever is larger, plus the pod overhead. With `non_zero`, unset CPU
/// and memory count as upstream's scoring defaults.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let of = |c: &Container| {
        if non_zero {
            container_non_zero(c)
        } else {
            container_requests(c)
        }
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&of(c));
    }
    // Init containers run one after another, beside the sidecars started before them.
    let mut sidecars = Resource::default();
    let mut init_peak = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = of(c);
        if is_sidecar(c) {
            sidecars.add(&r);
            init_peak.max_with(&sidecars);
        } else {
            let mut at = sidecars.clone();
            at.add(&r);
            init_peak.max_with(&at);
        }
    }
    reqs.add(&sidecars);
    reqs.max_with(&init_peak);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resource::from_list(Some(overhead)));
    }
    reqs
}

/// A host port a pod uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The host IP (`0.0.0.0` when unset).
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port.
    pub port: i32,
}

/// The host ports a pod's containers ask for.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let mut out = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for p in c.ports.iter().flatten() {
            let Some(port) = p.host_port.filter(|p| *p > 0) else {
                continue;
            };
            out.push(HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port,
            });
        }
    }
    out
}

/// A pod with what plugins compute from it once.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// The pod.
    pub pod: Arc<Pod>,
    /// Its requests.
    pub requests: Resource,
    /// Its requests with the scoring defaults.
    pub non_zero_requests: Resource,
    /// Its pod affinity and anti-affinity terms, parsed (`None` when it has
    /// neither).
    pub affinity: Option<Arc<PodAffinityTerms>>,
}

impl PodInfo {
    /// Computes a pod's info.
    pub fn new(pod: Arc<Pod>) -> Self {
        PodInfo {
            requests: pod_requests(&pod, false),
            non_zero_requests: pod_requests(&pod, true),
            affinity: PodAffinityTerms::of(&pod).map(Arc::new),
            pod,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        pod_key(&self.pod)
    }
}

/// A pod's `namespace/name`.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The UID of a pod's controller (its owner reference with `controller: true`).
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// A `metav1.LabelSelector` as upstream's `LabelSelectorAsSelector` parses it:
/// `None` (a missing selector) selects nothing, an empty one everything. An
/// invalid requirement fails with upstream's message (`labels.NewRequirement`).
pub fn parse_label_selector(sel: Option<&LabelSelector>) -> Result<Option<Selector>, String> {
    let Some(sel) = sel else {
        return Ok(None);
    };
    for (k, v) in sel.match_labels.iter().flatten() {
        requirement_errors(k, None, std::slice::from_ref(v))?;
    }
    for e in sel.match_expressions.iter().flatten() {
        if !matches!(
            e.operator.as_str(),
            "In" | "NotIn" | "Exists" | "DoesNotExist"
        ) {
            return Err(format!(
                "{:?} is not a valid label selector operator",
                e.operator
            ));
        }
        let values = e.values.as_deref().unwrap_or_default();
        requirement_errors(&e.key, Some(&e.operator), values)?;
    }
    Ok(client_base::selectors::label_selector(sel))
}

/// Go's `%#v` of a `[]string`.
fn go_strings(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".into();
    }
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Upstream's `labels.NewRequirement` checks (`op` `None`: equality).
fn requirement_errors(key: &str, op: Option<&str>, values: &[String]) -> Result<(), String> {
    use component_base::validation::{label_value_errors, qualified_name_errors};
    let mut errs = Vec::new();
    let key_errs = qualified_name_errors(key);
    if !key_errs.is_empty() {
        errs.push(format!(
            "key: Invalid value: {key:?}: {}",
            key_errs.join("; ")
        ));
    }
    match op {
        Some("In" | "NotIn") if values.is_empty() => errs.push(format!(
            "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
            go_strings(values)
        )),
        Some("Exists" | "DoesNotExist") if !values.is_empty() => errs.push(format!(
            "values: Invalid value: {}: values set must be empty for exists and does not exist",
            go_strings(values)
        )),
        _ => {}
    }
    for (i, v) in values.iter().enumerate() {
        let e = label_value_errors(v);
        if !e.is_empty() {
            errs.push(format!(
                "values[{i}][{key}]: Invalid value: {v:?}: {}",
                e.join("; ")
            ));
        }
    }
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

/// A pod (anti-)affinity term parsed once, as upstream's `framework.AffinityTerm`.
#[derive(Clone, Debug, Default)]
pub struct AffinityTerm {
    /// The namespaces it selects by name (the pod's own when the term names
    /// none and has no namespace selector).
    pub namespaces: HashSet<String>,
    /// The pods it selects (`None`: nothing).
    pub selector: Option<Selector>,
    /// The namespaces it selects by label (`None`: none).
    pub namespace_selector: Option<Selector>,
    /// The topology key.
    pub topology_key: String,
}

fn empty_labels() -> &'static BTreeMap<String, String> {
    static EMPTY: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(BTreeMap::new)
}

impl AffinityTerm {
    fn parse(pod: &Pod, t: &PodAffinityTerm) -> Result<Self, String> {
        let mut selector = parse_label_selector(t.label_selector.as_ref())?;
        // `matchLabelKeys` / `mismatchLabelKeys`: upstream's API server adds the
        // pod's values to the selector when the pod is created; Keelson's does not,
        // so they are added here (a second copy of a requirement changes nothing).
        if let Some(sel) = selector.as_mut() {
            let labels = pod.metadata.labels.as_ref();
            for (keys, in_) in [(&t.match_label_keys, true), (&t.mismatch_label_keys, false)] {
                for key in keys.iter().flatten() {
                    if let Some(v) = labels.and_then(|l| l.get(key)) {
                        let values = vec![v.clone()];
                        sel.0.push(component_base::selectors::Requirement {
                            key: key.clone(),
                            op: if in_ {
                                component_base::selectors::Op::In(values)
                            } else {
                                component_base::selectors::Op::NotIn(values)
                            },
                        });
                    }
                }
            }
        }
        let namespace_selector = parse_label_selector(t.namespace_selector.as_ref())?;
        let names = t.namespaces.as_deref().unwrap_or_default();
        let namespaces = if names.is_empty() && t.namespace_selector.is_none() {
            [pod.metadata.namespace.clone().unwrap_or_default()].into()
        } else {
            names.iter().cloned().collect()
        };
        Ok(AffinityTerm {
            namespaces,
            selector,
            namespace_selector,
            topology_key: t.topology_key.clone(),
        })
    }

    /// Whether `pod` (whose namespace has `ns_labels`) is selected: its namespace
    /// named or selected, and its labels matching.
    pub fn matches(&self, pod: &Pod, ns_labels: Option<&BTreeMap<String, String>>) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let in_ns = self.namespaces.contains(ns)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.matches(ns_labels.unwrap_or_else(|| empty_labels())));
        in_ns
            && self.selector.as_ref().is_some_and(|s| {
                s.matches(
                    pod.metadata
                        .labels
                        .as_ref()
                        .unwrap_or_else(|| empty_labels()),
                )
            })
    }
}

/// An affinity term with its weight.
#[derive(Clone, Debug, Default)]
pub struct WeightedAffinityTerm {
    /// The term.
    pub term: AffinityTerm,
    /// Its weight.
    pub weight: i32,
}

/// A pod's inter-pod affinity, parsed (upstream's `PodInfo` term fields).
#[derive(Clone, Debug, Default)]
pub struct PodAffinityTerms {
    /// `podAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Vec<AffinityTerm>,
    /// `podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// `podAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    /// `podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    /// Why a group of terms did not parse (that group is left empty), as
    /// upstream's aggregated parse errors.
    pub parse_error: Option<String>,
}

impl PodAffinityTerms {
    /// A pod's terms; `None` when it has neither pod affinity nor anti-affinity.
    pub fn of(pod: &Pod) -> Option<Self> {
        let a = pod.spec.as_ref()?.affinity.as_ref()?;
        if a.pod_affinity.is_none() && a.pod_anti_affinity.is_none() {
            return None;
        }
        let mut errs = Vec::new();
        let mut required = |what: &str, terms: Option<&Vec<PodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(pod, t))
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|e| {
                    errs.push(format!("{what}: {e}"));
                    Vec::new()
                })
        };
        let pa = a.pod_affinity.as_ref();
        let paa = a.pod_anti_affinity.as_ref();
        let required_affinity = required(
            "requiredAffinityTerms",
            pa.and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        );
        let required_anti_affinity = required(
            "requiredAntiAffinityTerms",
            paa.and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        );
        let mut weighted = |what: &str, terms: Option<&Vec<WeightedPodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .map(|t| {
                    AffinityTerm::parse(pod, &t.pod_affinity_term).map(|term| {
                        WeightedAffinityTerm {
                            term,
                            weight: t.weight,
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|e| {
                    errs.push(format!("{what}: {e}"));
                    Vec::new()
                })
        };
        let preferred_affinity = weighted(
            "preferredAffinityTerms",
            pa.and_then(|p| {
                p.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        );
        let preferred_anti_affinity = weighted(
            "preferredAntiAffinityTerms",
            paa.and_then(|p| {
                p.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        );
        let parse_error = match errs.len() {
            0 => None,
            1 => errs.pop(),
            _ => Some(format!("[{}]", errs.join(", "))),
        };
        Some(PodAffinityTerms {
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            parse_error,
        })
    }
}

/// An image present on a node, with how many nodes have it.
#[derive(Clone, Debug, Default)]
pub struct ImageState {
    /// The image's size in bytes (as the first node reporting it said).
    pub size: i64,
    /// How many nodes in the cluster have it: shared with the cache, which keeps
    /// it current as nodes come and go (read it with [`ImageState::num_nodes`]).
    pub nodes: Arc<AtomicUsize>,
}

impl ImageState {
    /// How many nodes in the cluster have the image now.
    pub fn num_nodes(&self) -> usize {
        self.nodes.load(Ordering::Relaxed)
    }
}

/// A node and what is placed on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// The node (`None` while only its pods are known).
    pub node: Option<Arc<Node>>,
    /// Pods bound or assumed to it.
    pub pods: Vec<PodInfo>,
    /// The sum of their requests.
    pub requested: Resource,
    /// The sum of their requests with the scoring defaults.
    pub non_zero_requested: Resource,
    /// What the node offers (`status.allocatable`).
    pub allocatable: Resource,
    /// Host ports in use.
    pub used_ports: HashMap<HostPort, usize>,
    /// Images on the node (by every name), with their spread across nodes.
    pub image_states: Arc<HashMap<String, ImageState>>,
    /// How many of its pods have pod affinity or anti-affinity (upstream's
    /// `PodsWithAffinity`).
    pub pods_with_affinity: usize,
    /// How many of its pods have required pod anti-affinity (upstream's
    /// `PodsWithRequiredAntiAffinity`).
    pub pods_with_required_anti_affinity: usize,
    /// Its pods that are not terminating, counted by their controller's UID (a
    /// node holds few controllers' pods: a short list scans faster than a map).
    pub controlled_pods: Vec<(String, usize)>,
    /// Bumped on every change, for the incremental snapshot.
    pub generation: u64,
}

impl NodeInfo {
    /// The node's name.
    pub fn name(&self) -> &str {
        self.node
            .as_ref()
            .and_then(|n| n.metadata.name.as_deref())
            .unwrap_or_default()
    }

    /// Sets the node object.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable =
            Resource::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        self.node = Some(node);
    }

    /// Adds a pod's requests and ports.
    pub fn add_pod(&mut self, pi: PodInfo) {
        self.requested.add(&pi.requests);
        self.non_zero_requested.add(&pi.non_zero_requests);
        for p in host_ports(&pi.pod) {
            *self.used_ports.entry(p).or_default() += 1;
        }
        self.count_pod(&pi, true);
        self.pods.push(pi);
    }

    fn count_pod(&mut self, pi: &PodInfo, add: bool) {
        let step = |n: &mut usize| {
            if add {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
            }
        };
        if let Some(a) = pi.affinity.as_ref() {
            step(&mut self.pods_with_affinity);
            if !a.required_anti_affinity.is_empty() {
                step(&mut self.pods_with_required_anti_affinity);
            }
        }
        if pi.pod.metadata.deletion_timestamp.is_none()
            && let Some(uid) = controller_uid(&pi.pod)
        {
            let i = self.controlled_pods.iter().position(|(u, _)| u == uid);
            match (i, add) {
                (Some(i), true) => self.controlled_pods[i].1 += 1,
                (None, true) => self.controlled_pods.push((uid.to_owned(), 1)),
                (Some(i), false) => {
                    self.controlled_pods[i].1 -= 1;
                    if self.controlled_pods[i].1 == 0 {
                        self.controlled_pods.swap_remove(i);
                    }
                }
                (None, false) => {}
            }
        }
    }

    /// How many of its pods that are not terminating the controller with `uid`
    /// owns.
    pub fn controlled_by(&self, uid: &str) -> usize {
        self.controlled_pods
            .iter()
            .find(|(u, _)| u == uid)
            .map_or(0, |(_, n)| *n)
    }

    /// Removes a pod (by namespace/name); whether it was there.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key() == key) else {
            return false;
        };
        let pi = self.pods.swap_remove(i);
        self.count_pod(&pi, false);
        self.requested.sub(&pi.requests);
        self.non_zero_requested.sub(&pi.non_zero_requests);
        for p in host_ports(&pi.pod) {
            if let Some(n) = self.used_ports.get_mut(&p) {
                *n -= 1;
                if *n == 0 {
                    self.used_ports.remove(&p);
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;

    fn container(cpu: Option<&str>, mem: Option<&str>, restart: Option<&str>) -> Container {
        let mut reqs = BTreeMap::new();
        if let Some(c) = cpu {
            reqs.insert("cpu".to_owned(), Quantity(c.into()));
        }
        if let Some(m) = mem {
            reqs.insert("memory".to_owned(), Quantity(m.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(reqs),
                ..Default::default()
            }),
            restart_policy: restart.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn requests_count_init_containers_and_sidecars_as_upstream() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![
                    container(Some("1"), Some("1Gi"), None),
                    container(Some("500m"), None, None),
                ],
                init_containers: Some(vec![
                    container(Some("2"), None, None),
                    container(Some("200m"), Some("100Mi"), Some("Always")),
                    container(Some("1"), Some("3Gi"), None),
                ]),
                overhead: Some([("cpu".to_owned(), Quantity("10m".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = pod_requests(&pod, false);
        // cpu: max(1500 + 200 sidecar, init peak max(2000, 200 + 1000)) + 10 overhead.
        assert_eq!(r.milli_cpu, 2010);
        // memory: max(1Gi + 100Mi, 100Mi + 3Gi).
        assert_eq!(r.memory, (3 << 30) + (100 << 20));
        let nz = pod_requests(
            &Pod {
                spec: Some(PodSpec {
                    containers: vec![container(None, None, None)],
                    ..Default::default()
                }),
                ..Default::default()
            },
            true,
        );
        assert_eq!((nz.milli_cpu, nz.memory), (100, 200 << 20));
    }

    #[test]
    fn quantities_round_up() {
        assert_eq!(quantity_milli(&Quantity("1.0001m".into())), 2);
        assert_eq!(quantity_value(&Quantity("1500m".into())), 2);
        assert_eq!(quantity_value(&Quantity("1Ki".into())), 1024);
    }
}
