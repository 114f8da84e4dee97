//! The built-in resources Kubernetes 1.33 serves: one table that discovery, OpenAPI
//! paths, routing and storage keys are all derived from.
//!
//! Each [`Resource`] is one resource at one group-version. Resources that upstream
//! serves at several versions of one group (autoscaling v1 and v2) or in two groups
//! (core and events.k8s.io events) share storage: their `storage` key prefix is the same
//! and their objects are kept at the storage version, converted on the way in and out
//! by [`crate::convert`].

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use parking_lot::{Mutex, RwLock};

/// Verbs of an ordinary resource.
pub const STANDARD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NO_COLLECTION_DELETE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const CREATE: &[&str] = &["create"];
const CREATE_GET: &[&str] = &["create", "get"];
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];

/// A subresource: `pods/status`, `deployments/scale`.
#[derive(Clone, Debug)]
pub struct Subresource {
    /// Name after the slash.
    pub name: &'static str,
    /// Group of the object it takes and returns.
    pub group: &'static str,
    /// Version of that object.
    pub version: &'static str,
    /// Kind of that object.
    pub kind: &'static str,
    /// Verbs.
    pub verbs: &'static [&'static str],
}

/// One resource at one group-version.
#[derive(Clone, Debug)]
pub struct Resource {
    /// API group; empty for core.
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural name, as in the URL.
    pub plural: &'static str,
    /// Singular name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Subresources.
    pub subresources: Vec<Subresource>,
    /// Storage key segment under the prefix: `pods`, `services/specs`, `minions`.
    pub storage: &'static str,
    /// The group and version objects are stored at.
    pub storage_gv: (&'static str, &'static str),
    /// For a custom resource: what its CustomResourceDefinition says of this version.
    pub custom: Option<&'static crate::crd::CustomInfo>,
}

impl Resource {
    /// `apiVersion` as objects carry it.
    pub fn api_version(&self) -> String {
        gv_string(self.group, self.version)
    }
    /// The group-resource, for errors.
    pub fn gr(&self) -> crate::error::GroupResource {
        crate::error::GroupResource::new(self.group, self.plural)
    }
    /// The subresource by name.
    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
    /// Whether the resource takes `verb`.
    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
    /// Whether objects are converted between this version and the storage version.
    pub fn converts(&self) -> bool {
        self.storage_gv != (self.group, self.version)
    }
}

/// `apps/v1`, or `v1` for the core group.
pub fn gv_string(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn sub(name: &'static str, kind: &'static str, verbs: &'static [&'static str]) -> Subresource {
    Subresource {
        name,
        group: "",
        version: "",
        kind,
        verbs,
    }
}

fn status() -> Subresource {
    sub("status", "", GET_PATCH_UPDATE)
}

fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: GET_PATCH_UPDATE,
    }
}

struct B(Resource);

impl B {
    fn new(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
    ) -> Self {
        B(Resource {
            group,
            version,
            kind,
            plural,
            singular: kind.to_lowercase(),
            namespaced,
            short_names: &[],
            categories: &[],
            verbs: STANDARD,
            subresources: Vec::new(),
            storage: plural,
            storage_gv: (group, version),
            custom: None,
        })
    }
    fn short(mut self, s: &'static [&'static str]) -> Self {
        self.0.short_names = s;
        self
    }
    fn all(mut self) -> Self {
        self.0.categories = &["all"];
        self
    }
    fn verbs(mut self, v: &'static [&'static str]) -> Self {
        self.0.verbs = v;
        self
    }
    fn subs(mut self, s: Vec<Subresource>) -> Self {
        self.0.subresources = s;
        self
    }
    fn storage(mut self, s: &'static str) -> Self {
        self.0.storage = s;
        self
    }
    fn stored_as(mut self, group: &'static str, version: &'static str) -> Self {
        self.0.storage_gv = (group, version);
        self
    }
}

fn build() -> Vec<Resource> {
    let ns = true;
    let cl = false;
    let v = vec![
        // core/v1
        B::new("", "v1", "Binding", "bindings", ns).verbs(CREATE),
        B::new("", "v1", "ComponentStatus", "componentstatuses", cl)
            .short(&["cs"])
            .verbs(&["get", "list"]),
        B::new("", "v1", "ConfigMap", "configmaps", ns).short(&["cm"]),
        B::new("", "v1", "Endpoints", "endpoints", ns)
            .short(&["ep"])
            .storage("services/endpoints"),
        B::new("", "v1", "Event", "events", ns).short(&["ev"]),
        B::new("", "v1", "LimitRange", "limitranges", ns).short(&["limits"]),
        B::new("", "v1", "Namespace", "namespaces", cl)
            .short(&["ns"])
            .verbs(NO_COLLECTION_DELETE)
            .subs(vec![sub("finalize", "", &["update"]), status()]),
        B::new("", "v1", "Node", "nodes", cl)
            .short(&["no"])
            .storage("minions")
            .subs(vec![sub("proxy", "NodeProxyOptions", PROXY), status()]),
        B::new(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            ns,
        )
        .short(&["pvc"])
        .subs(vec![status()]),
        B::new("", "v1", "PersistentVolume", "persistentvolumes", cl)
            .short(&["pv"])
            .subs(vec![status()]),
        B::new("", "v1", "Pod", "pods", ns)
            .short(&["po"])
            .all()
            .subs(vec![
                sub("attach", "PodAttachOptions", CREATE_GET),
                sub("binding", "Binding", CREATE),
                sub("ephemeralcontainers", "", GET_PATCH_UPDATE),
                Subresource {
                    name: "eviction",
                    group: "policy",
                    version: "v1",
                    kind: "Eviction",
                    verbs: CREATE,
                },
                sub("exec", "PodExecOptions", CREATE_GET),
                sub("log", "", &["get"]),
                sub("portforward", "PodPortForwardOptions", CREATE_GET),
                sub("proxy", "PodProxyOptions", PROXY),
                sub("resize", "", GET_PATCH_UPDATE),
                status(),
            ]),
        B::new("", "v1", "PodTemplate", "podtemplates", ns),
        B::new(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            ns,
        )
        .short(&["rc"])
        .all()
        .storage("controllers")
        .subs(vec![scale(), status()]),
        B::new("", "v1", "ResourceQuota", "resourcequotas", ns)
            .short(&["quota"])
            .subs(vec![status()]),
        B::new("", "v1", "Secret", "secrets", ns),
        B::new("", "v1", "ServiceAccount", "serviceaccounts", ns)
            .short(&["sa"])
            .subs(vec![Subresource {
                name: "token",
                group: "authentication.k8s.io",
                version: "v1",
                kind: "TokenRequest",
                verbs: CREATE,
            }]),
        B::new("", "v1", "Service", "services", ns)
            .short(&["svc"])
            .all()
            .storage("services/specs")
            .subs(vec![sub("proxy", "ServiceProxyOptions", PROXY), status()]),
        // admissionregistration.k8s.io/v1
        B::new(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            cl,
        ),
        B::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            cl,
        )
        .subs(vec![status()]),
        B::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            cl,
        ),
        B::new(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            cl,
        ),
        // apiextensions.k8s.io/v1
        B::new(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            cl,
        )
        .short(&["crd", "crds"])
        .storage("apiextensions.k8s.io/customresourcedefinitions")
        .subs(vec![status()]),
        // apps/v1
        B::new(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            ns,
        ),
        B::new("apps", "v1", "DaemonSet", "daemonsets", ns)
            .short(&["ds"])
            .all()
            .subs(vec![status()]),
        B::new("apps", "v1", "Deployment", "deployments", ns)
            .short(&["deploy"])
            .all()
            .subs(vec![scale(), status()]),
        B::new("apps", "v1", "ReplicaSet", "replicasets", ns)
            .short(&["rs"])
            .all()
            .subs(vec![scale(), status()]),
        B::new("apps", "v1", "StatefulSet", "statefulsets", ns)
            .short(&["sts"])
            .all()
            .subs(vec![scale(), status()]),
        // autoscaling: v2 is preferred and stored; v1 is converted.
        B::new(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            ns,
        )
        .short(&["hpa"])
        .all()
        .subs(vec![status()]),
        B::new(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            ns,
        )
        .short(&["hpa"])
        .all()
        .subs(vec![status()])
        .stored_as("autoscaling", "v2"),
        // batch/v1
        B::new("batch", "v1", "CronJob", "cronjobs", ns)
            .short(&["cj"])
            .all()
            .subs(vec![status()]),
        B::new("batch", "v1", "Job", "jobs", ns)
            .all()
            .subs(vec![status()]),
        // authentication.k8s.io/v1 and authorization.k8s.io/v1: the self reviews,
        // create-only and never stored (`review`).
        B::new(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            cl,
        )
        .verbs(CREATE),
        B::new(
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            "tokenreviews",
            cl,
        )
        .verbs(CREATE),
        B::new(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            cl,
        )
        .verbs(CREATE),
        B::new(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            ns,
        )
        .verbs(CREATE),
        B::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            cl,
        )
        .verbs(CREATE),
        B::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            cl,
        )
        .verbs(CREATE),
        // certificates.k8s.io/v1
        B::new(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            cl,
        )
        .short(&["csr"])
        .subs(vec![sub("approval", "", GET_PATCH_UPDATE), status()]),
        // coordination.k8s.io/v1
        B::new("coordination.k8s.io", "v1", "Lease", "leases", ns),
        // discovery.k8s.io/v1
        B::new(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            ns,
        ),
        // events.k8s.io/v1 shares storage with core events.
        B::new("events.k8s.io", "v1", "Event", "events", ns)
            .short(&["ev"])
            .stored_as("", "v1"),
        // flowcontrol.apiserver.k8s.io/v1
        B::new(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "FlowSchema",
            "flowschemas",
            cl,
        )
        .subs(vec![status()]),
        B::new(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            cl,
        )
        .subs(vec![status()]),
        // networking.k8s.io/v1
        B::new("networking.k8s.io", "v1", "IPAddress", "ipaddresses", cl).short(&["ip"]),
        B::new(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasses",
            cl,
        ),
        B::new("networking.k8s.io", "v1", "Ingress", "ingresses", ns)
            .short(&["ing"])
            .storage("ingress")
            .subs(vec![status()]),
        B::new(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            ns,
        )
        .short(&["netpol"]),
        B::new("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", cl).subs(vec![status()]),
        // node.k8s.io/v1
        B::new("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", cl),
        // policy/v1
        B::new(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            ns,
        )
        .short(&["pdb"])
        .subs(vec![status()]),
        // rbac.authorization.k8s.io/v1
        B::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            cl,
        ),
        B::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            cl,
        ),
        B::new(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            ns,
        ),
        B::new("rbac.authorization.k8s.io", "v1", "Role", "roles", ns),
        // scheduling.k8s.io/v1
        B::new(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            cl,
        )
        .short(&["pc"]),
        // storage.k8s.io/v1
        B::new("storage.k8s.io", "v1", "CSIDriver", "csidrivers", cl),
        B::new("storage.k8s.io", "v1", "CSINode", "csinodes", cl),
        B::new(
            "storage.k8s.io",
            "v1",
            "CSIStorageCapacity",
            "csistoragecapacities",
            ns,
        ),
        B::new("storage.k8s.io", "v1", "StorageClass", "storageclasses", cl).short(&["sc"]),
        B::new(
            "storage.k8s.io",
            "v1",
            "VolumeAttachment",
            "volumeattachments",
            cl,
        )
        .subs(vec![status()]),
    ];
    v.into_iter().map(|b| b.0).collect()
}

/// The catalog: every built-in resource, indexed, and the custom resources the
/// CustomResourceDefinitions in the store define ([`crate::crd`] registers them).
///
/// Resources are handed out as `&'static Resource`. A custom resource's entry is
/// leaked when its CRD is registered (and its strings interned), so a CRD's later
/// change or deletion leaves the old entry allocated: memory grows with the number of
/// CRD changes, not with requests.
pub struct Catalog {
    resources: Vec<Resource>,
    by_path: HashMap<(String, String, String), usize>,
    /// Custom resources, by CRD name.
    custom: RwLock<Vec<(String, Vec<&'static Resource>)>>,
}

/// `s` as a `&'static str`, allocated once per distinct string.
pub fn intern(s: &str) -> &'static str {
    static STRINGS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = STRINGS.get_or_init(Default::default).lock();
    if let Some(v) = set.get(s) {
        return v;
    }
    let v: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(v);
    v
}

impl Catalog {
    fn new() -> Self {
        let resources = build();
        let by_path = resources
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    (
                        r.group.to_owned(),
                        r.version.to_owned(),
                        r.plural.to_owned(),
                    ),
                    i,
                )
            })
            .collect();
        Catalog {
            resources,
            by_path,
            custom: RwLock::new(Vec::new()),
        }
    }

    /// The resource at `group`/`version`/`plural`, built in or custom.
    pub fn get(
        &'static self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static Resource> {
        if let Some(i) =
            self.by_path
                .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
        {
            return Some(&self.resources[*i]);
        }
        self.custom
            .read()
            .iter()
            .flat_map(|(_, rs)| rs.iter())
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .copied()
    }

    /// Serves `resources` (one per served version) for the CRD `name`, replacing what
    /// it served before; returns whether anything changed.
    pub fn register(&self, name: &str, resources: Vec<Resource>) -> bool {
        let mut custom = self.custom.write();
        if let Some((_, old)) = custom.iter().find(|(n, _)| n == name)
            && old.len() == resources.len()
            && old.iter().zip(&resources).all(|(a, b)| same(a, b))
        {
            return false;
        }
        let leaked: Vec<&'static Resource> = resources
            .into_iter()
            .map(|r| &*Box::leak(Box::new(r)))
            .collect();
        match custom.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = leaked,
            None => custom.push((name.to_owned(), leaked)),
        }
        true
    }

    /// Stops serving the resources of the CRD `name`; returns them.
    pub fn unregister(&self, name: &str) -> Vec<&'static Resource> {
        let mut custom = self.custom.write();
        match custom.iter().position(|(n, _)| n == name) {
            Some(i) => custom.remove(i).1,
            None => Vec::new(),
        }
    }

    /// The custom resources of the CRD `name`.
    pub fn custom_resources(&self, name: &str) -> Vec<&'static Resource> {
        self.custom
            .read()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, rs)| rs.clone())
            .unwrap_or_default()
    }

    /// Every resource served now: built in, then custom.
    pub fn served(&'static self) -> Vec<&'static Resource> {
        let mut out: Vec<&'static Resource> = self.resources.iter().collect();
        out.extend(
            self.custom
                .read()
                .iter()
                .flat_map(|(_, rs)| rs.iter().copied()),
        );
        out
    }

    /// Every resource, in table order.
    pub fn all(&self) -> &[Resource] {
        &self.resources
    }

    /// The resource that stores objects of `group`/`kind` at its storage version.
    pub fn storage_resource(&self, group: &str, plural: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural && !r.converts())
    }

    /// Groups and their versions, core first, then groups in upstream's priority
    /// order; versions preferred first.
    pub fn groups(&'static self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in self.served() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, vs)) => {
                    if !vs.contains(&r.version) {
                        vs.push(r.version);
                    }
                }
                None => out.push((r.group, vec![r.version])),
            }
        }
        out.sort_by_key(|(g, _)| group_priority(g));
        out
    }

    /// The resources of one group-version, in table order.
    pub fn group_version(&'static self, group: &str, version: &str) -> Vec<&'static Resource> {
        self.served()
            .into_iter()
            .filter(|r| r.group == group && r.version == version)
            .collect()
    }
}

/// Whether two registrations serve the same thing.
fn same(a: &Resource, b: &Resource) -> bool {
    a.group == b.group
        && a.version == b.version
        && a.kind == b.kind
        && a.plural == b.plural
        && a.singular == b.singular
        && a.namespaced == b.namespaced
        && a.short_names == b.short_names
        && a.categories == b.categories
        && a.storage_gv == b.storage_gv
        && a.subresources
            .iter()
            .map(|s| s.name)
            .eq(b.subresources.iter().map(|s| s.name))
        && match (a.custom, b.custom) {
            (Some(x), Some(y)) => x == y,
            (None, None) => true,
            _ => false,
        }
}

/// Upstream's group order in discovery (`kube-apiserver`'s APIService priorities).
fn group_priority(group: &str) -> usize {
    const ORDER: &[&str] = &[
        "",
        "apiregistration.k8s.io",
        "apps",
        "events.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "networking.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "scheduling.k8s.io",
        "coordination.k8s.io",
        "node.k8s.io",
        "discovery.k8s.io",
        "flowcontrol.apiserver.k8s.io",
    ];
    ORDER
        .iter()
        .position(|g| *g == group)
        .unwrap_or(ORDER.len())
}

/// The process-wide catalog.
pub fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(Catalog::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_first_and_autoscaling_prefers_v2() {
        let g = catalog().groups();
        assert_eq!(g[0], ("", vec!["v1"]));
        let auto = g.iter().find(|(n, _)| *n == "autoscaling").unwrap();
        assert_eq!(auto.1, vec!["v2", "v1"]);
    }

    #[test]
    fn storage_exceptions() {
        let c = catalog();
        assert_eq!(
            c.get("", "v1", "services").unwrap().storage,
            "services/specs"
        );
        assert_eq!(c.get("", "v1", "nodes").unwrap().storage, "minions");
        assert!(c.get("events.k8s.io", "v1", "events").unwrap().converts());
        assert!(
            c.get("apps", "v1", "deployments")
                .unwrap()
                .subresource("scale")
                .is_some()
        );
    }
}
