//! The volume plugins, as upstream's `volumebinding`, `volumerestrictions`,
//! `volumezone` and `nodevolumelimits`, and what they share: the [`Storage`]
//! they read PersistentVolumeClaims, PersistentVolumes, StorageClasses and
//! CSI objects through (the shared informers in the daemon, maps in the unit
//! tests), and upstream's storage helpers (claim classes, PV node affinity,
//! the claim names of a pod's volumes).
//!
//! In-tree volume types are not translated to their CSI drivers (upstream's CSI
//! migration): a PV of an in-tree type is not counted against a CSI driver's
//! attach limit, and its node affinity is used as written.

pub mod binding;
pub mod limits;
pub mod restrictions;
pub mod zone;

use std::collections::BTreeMap;
use std::sync::Arc;

use client_base::informer::{Informer, SharedInformerFactory};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Volume};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, CSIStorageCapacity, StorageClass};

use crate::framework::Status;

/// `volume.beta.kubernetes.io/storage-class`, which wins over `storageClassName`.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The node the scheduler chose for a claim's dynamic provisioning.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set by the PV controller when a claim's binding is complete.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a PV bound by a controller (here: the scheduler) rather than a user.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The provisioner of classes that cannot provision (local volumes).
pub const NOT_SUPPORTED_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// The storage objects the volume plugins read.
pub trait Storage: Send + Sync {
    /// A claim.
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    /// A volume.
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    /// Every volume.
    fn pvs(&self) -> Vec<Arc<PersistentVolume>>;
    /// A storage class.
    fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>>;
    /// A node's CSINode.
    fn csi_node(&self, name: &str) -> Option<Arc<CSINode>>;
    /// A CSI driver.
    fn csi_driver(&self, name: &str) -> Option<Arc<CSIDriver>>;
    /// Every CSIStorageCapacity.
    fn capacities(&self) -> Vec<Arc<CSIStorageCapacity>>;
    /// A node.
    fn node(&self, name: &str) -> Option<Arc<Node>>;
    /// Whether a pod still exists.
    fn pod_exists(&self, namespace: &str, name: &str) -> bool;
}

/// [`Storage`] over the shared informers.
pub struct InformerStorage {
    pvcs: Arc<Informer<PersistentVolumeClaim>>,
    pvs: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    csi_nodes: Arc<Informer<CSINode>>,
    csi_drivers: Arc<Informer<CSIDriver>>,
    capacities: Arc<Informer<CSIStorageCapacity>>,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
}

impl InformerStorage {
    /// Registers the informers it reads with `factory` (one per process).
    pub fn new(factory: &SharedInformerFactory) -> Self {
        InformerStorage {
            pvcs: factory.informer(),
            pvs: factory.informer(),
            classes: factory.informer(),
            csi_nodes: factory.informer(),
            csi_drivers: factory.informer(),
            capacities: factory.informer(),
            nodes: factory.informer(),
            // The scheduler's pod informer (pods that have not ended).
            pods: factory.informer_with(crate::pods_watch()),
        }
    }
}

impl Storage for InformerStorage {
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&format!("{namespace}/{name}"))
    }
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(name)
    }
    fn pvs(&self) -> Vec<Arc<PersistentVolume>> {
        self.pvs.list()
    }
    fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(name)
    }
    fn csi_node(&self, name: &str) -> Option<Arc<CSINode>> {
        self.csi_nodes.get(name)
    }
    fn csi_driver(&self, name: &str) -> Option<Arc<CSIDriver>> {
        self.csi_drivers.get(name)
    }
    fn capacities(&self) -> Vec<Arc<CSIStorageCapacity>> {
        self.capacities.list()
    }
    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(name)
    }
    fn pod_exists(&self, namespace: &str, name: &str) -> bool {
        self.pods.get(&format!("{namespace}/{name}")).is_some()
    }
}

/// The claim's storage class, as upstream's `GetPersistentVolumeClaimClass`: the
/// beta annotation first, then `spec.storageClassName`, else `""`.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    if let Some(c) = pvc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
    {
        return c;
    }
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The volume's storage class, as upstream's `GetPersistentVolumeClass`.
pub fn pv_class(pv: &PersistentVolume) -> &str {
    if let Some(c) = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_BETA_STORAGE_CLASS))
    {
        return c;
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// `spec.volumeName` of a claim (`""` when unbound).
pub fn claim_volume(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

/// An annotation of an object.
pub fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// A volume of a pod that is a claim: its claim's name, and whether it is a
/// generic ephemeral volume (whose claim is `<pod>-<volume>`).
pub fn claim_name(pod: &Pod, vol: &Volume) -> Option<(String, bool)> {
    if let Some(c) = &vol.persistent_volume_claim {
        return Some((c.claim_name.clone(), false));
    }
    if vol.ephemeral.is_some() {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        return Some((format!("{pod_name}-{}", vol.name), true));
    }
    None
}

/// The pod's volumes.
pub fn volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
}

/// Whether the pod has a claim (a PVC or generic ephemeral volume).
pub fn has_claims(pod: &Pod) -> bool {
    volumes(pod)
        .iter()
        .any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
}

/// Upstream's `ephemeral.VolumeIsForPod`: the claim of an ephemeral volume must
/// be controlled by the pod.
pub fn volume_is_for_pod(pod: &Pod, pvc: &PersistentVolumeClaim) -> Result<(), String> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let owned = pvc
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid);
    if owned {
        return Ok(());
    }
    Err(format!(
        "PVC {}/{} was not created for pod {}/{} (pod is not owner)",
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        pvc.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    ))
}

/// The apiserver's NotFound message for `resource` (`persistentvolumeclaim`,
/// `storageclass.storage.k8s.io`) named `name`.
pub fn not_found(resource: &str, name: &str) -> String {
    format!("{resource} \"{name}\" not found")
}

/// A NotFound as a status: unresolvable until the object appears (upstream's
/// `getErrorAsStatus`).
pub fn not_found_status(resource: &str, name: &str) -> Status {
    Status::unresolvable(not_found(resource, name))
}

/// Whether a PV's required node affinity admits a node with `labels`, as
/// upstream's `CheckNodeAffinity` (labels only: `matchFields` never match).
pub fn node_affinity_matches(pv: &PersistentVolume, labels: &BTreeMap<String, String>) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let mut node = Node::default();
    node.metadata.labels = Some(labels.clone());
    node.metadata.name = Some(String::new());
    client_base::selectors::node_selector_matches(required, &node)
}

/// The labels of a node.
pub fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    client_base::selectors::node_labels(node)
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory [`Storage`] for the plugins' unit tests.

    use std::collections::HashMap;

    use super::*;

    /// Objects by key.
    #[derive(Default)]
    pub(crate) struct MemStorage {
        pub(crate) pvcs: HashMap<String, Arc<PersistentVolumeClaim>>,
        pub(crate) pvs: HashMap<String, Arc<PersistentVolume>>,
        pub(crate) classes: HashMap<String, Arc<StorageClass>>,
        pub(crate) csi_nodes: HashMap<String, Arc<CSINode>>,
        pub(crate) csi_drivers: HashMap<String, Arc<CSIDriver>>,
        pub(crate) capacities: Vec<Arc<CSIStorageCapacity>>,
        pub(crate) nodes: HashMap<String, Arc<Node>>,
        pub(crate) pods: Vec<String>,
    }

    impl MemStorage {
        pub(crate) fn pvc(mut self, pvc: PersistentVolumeClaim) -> Self {
            let key = format!(
                "{}/{}",
                pvc.metadata.namespace.as_deref().unwrap_or("default"),
                pvc.metadata.name.as_deref().unwrap_or_default()
            );
            self.pvcs.insert(key, Arc::new(pvc));
            self
        }
        pub(crate) fn pv(mut self, pv: PersistentVolume) -> Self {
            self.pvs
                .insert(pv.metadata.name.clone().unwrap_or_default(), Arc::new(pv));
            self
        }
        pub(crate) fn class(mut self, c: StorageClass) -> Self {
            self.classes
                .insert(c.metadata.name.clone().unwrap_or_default(), Arc::new(c));
            self
        }
        pub(crate) fn csi_node(mut self, c: CSINode) -> Self {
            self.csi_nodes
                .insert(c.metadata.name.clone().unwrap_or_default(), Arc::new(c));
            self
        }
    }

    impl Storage for MemStorage {
        fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
            self.pvcs.get(&format!("{namespace}/{name}")).cloned()
        }
        fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
            self.pvs.get(name).cloned()
        }
        fn pvs(&self) -> Vec<Arc<PersistentVolume>> {
            let mut v: Vec<_> = self.pvs.values().cloned().collect();
            v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            v
        }
        fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
            self.classes.get(name).cloned()
        }
        fn csi_node(&self, name: &str) -> Option<Arc<CSINode>> {
            self.csi_nodes.get(name).cloned()
        }
        fn csi_driver(&self, name: &str) -> Option<Arc<CSIDriver>> {
            self.csi_drivers.get(name).cloned()
        }
        fn capacities(&self) -> Vec<Arc<CSIStorageCapacity>> {
            self.capacities.clone()
        }
        fn node(&self, name: &str) -> Option<Arc<Node>> {
            self.nodes.get(name).cloned()
        }
        fn pod_exists(&self, namespace: &str, name: &str) -> bool {
            self.pods.contains(&format!("{namespace}/{name}"))
        }
    }
}

#[cfg(test)]
pub(crate) mod build {
    //! Builders for claims, volumes and classes, as upstream's test helpers.

    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
        PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec,
        PersistentVolumeStatus, VolumeNodeAffinity, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    /// A claim `name` in `default` of `class`, for `size` (`""`: no request).
    pub(crate) fn pvc(name: &str, class: &str, size: &str) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("default".into());
        c.metadata.uid = Some(format!("uid-{name}"));
        c.metadata.resource_version = Some("1".into());
        c.spec = Some(PersistentVolumeClaimSpec {
            storage_class_name: (!class.is_empty()).then(|| class.into()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: (!size.is_empty()).then(|| VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    /// `pvc` bound to `pv` (fully: with the bind-completed annotation).
    pub(crate) fn bound_pvc(name: &str, class: &str, pv: &str) -> PersistentVolumeClaim {
        let mut c = pvc(name, class, "1Gi");
        c.spec.as_mut().unwrap().volume_name = Some(pv.into());
        c.metadata.annotations = Some(BTreeMap::from([(ANN_BIND_COMPLETED.into(), "yes".into())]));
        c
    }

    /// A volume `name` of `class` and `size`, Available.
    pub(crate) fn pv(name: &str, class: &str, size: &str) -> PersistentVolume {
        let mut v = PersistentVolume::default();
        v.metadata.name = Some(name.into());
        v.metadata.resource_version = Some("1".into());
        v.spec = Some(PersistentVolumeSpec {
            storage_class_name: (!class.is_empty()).then(|| class.into()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            capacity: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
            ..Default::default()
        });
        v.status = Some(PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..Default::default()
        });
        v
    }

    /// `pv` with node affinity `key In values`.
    pub(crate) fn with_affinity(
        mut v: PersistentVolume,
        key: &str,
        values: &[&str],
    ) -> PersistentVolume {
        v.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: key.into(),
                        operator: "In".into(),
                        values: Some(values.iter().map(|s| (*s).to_owned()).collect()),
                    }]),
                    ..Default::default()
                }],
            }),
        });
        v
    }

    /// `pv` bound to claim `default/claim`.
    pub(crate) fn with_claim(mut v: PersistentVolume, claim: &str) -> PersistentVolume {
        v.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            namespace: Some("default".into()),
            name: Some(claim.into()),
            uid: Some(format!("uid-{claim}")),
            ..Default::default()
        });
        v.status.as_mut().unwrap().phase = Some("Bound".into());
        v
    }

    /// A class with `mode` (`Immediate` or `WaitForFirstConsumer`) and `provisioner`.
    pub(crate) fn class(name: &str, mode: &str, provisioner: &str) -> StorageClass {
        StorageClass {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            provisioner: provisioner.into(),
            volume_binding_mode: Some(mode.into()),
            ..Default::default()
        }
    }

    /// A pod volume for claim `claim`.
    pub(crate) fn claim_volume(claim: &str) -> Volume {
        Volume {
            name: format!("vol-{claim}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: None,
            }),
            ..Default::default()
        }
    }

    /// A pod named `name` with the given volumes.
    pub(crate) fn pod_with(name: &str, vols: Vec<Volume>) -> Arc<Pod> {
        let mut p = crate::plugins::testutil::pod(name).obj().as_ref().clone();
        p.spec.as_mut().unwrap().volumes = Some(vols);
        Arc::new(p)
    }
}
