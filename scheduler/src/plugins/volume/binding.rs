//! VolumeBinding, as upstream's `plugins/volumebinding` and its `SchedulerVolumeBinder`.
//!
//! ```text
//! PreFilter: the pod's claims ─▶ bound | unbound WaitForFirstConsumer | unbound
//!            Immediate (unresolvable until the PV controller binds them)
//! Filter:    per node: bound claims' PVs must admit the node (node affinity);
//!            unbound ones get the smallest matching Available PV, or else
//!            dynamic provisioning (a provisioner, allowedTopologies, CSI
//!            capacity) ─▶ the node's PodVolumes, kept in the cycle state
//! Reserve:   the chosen node's PodVolumes are assumed in the [`AssumeCache`]
//!            (PV.claimRef set, PVC annotated with the selected node), so the next
//!            pod does not pick the same PV
//! PreBind:   the PV and PVC updates are written to the API, then the binding
//!            cycle waits (up to bindTimeoutSeconds) for the PV controller or the
//!            external provisioner to finish the binding
//! Unreserve: the assumed objects are dropped
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, TopologySelectorTerm,
};
use k8s_openapi::api::storage::v1::{CSIStorageCapacity, StorageClass};
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use serde::Deserialize;

use super::{
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE, NOT_SUPPORTED_PROVISIONER,
    Storage, annotation, claim_class, claim_name, claim_volume, node_affinity_matches, node_labels,
    not_found, pv_class, volume_is_for_pod, volumes,
};
use crate::framework::types::{NodeInfo, PodInfo, quantity_value};
use crate::framework::{
    ClusterEvent, Code, CycleState, FilterPlugin, NodeScore, Plugin, PreBindPlugin,
    PreFilterPlugin, PreFilterResult, PreScorePlugin, ReservePlugin, ScorePlugin, Status,
};

/// The plugin's name.
pub const NAME: &str = "VolumeBinding";
/// No PV to bind and no way to provision one on the node.
pub const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// A bound PV's node affinity excludes the node.
pub const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// CSI storage capacity does not reach the node.
pub const NOT_ENOUGH_SPACE: &str = "node(s) did not have enough free storage";
/// A bound claim's PV does not exist.
pub const PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
const STATE_KEY: &str = "PreFilterVolumeBinding";

/// `VolumeBindingArgs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Args {
    /// How long PreBind waits for the binding to complete (default 600).
    #[serde(default = "six_hundred")]
    pub bind_timeout_seconds: i64,
    /// Scoring by capacity (needs the StorageCapacityScoring feature, off).
    #[serde(default)]
    pub shape: Option<serde_json::Value>,
}

fn six_hundred() -> i64 {
    600
}

impl Default for Args {
    fn default() -> Self {
        Args {
            bind_timeout_seconds: 600,
            shape: None,
        }
    }
}

impl Args {
    /// Upstream's `ValidateVolumeBindingArgs`, with StorageCapacityScoring off.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if self.bind_timeout_seconds < 0 {
            errs.push(format!(
                "bindTimeoutSeconds: Invalid value: {}: invalid BindTimeoutSeconds, should not be a negative value",
                self.bind_timeout_seconds
            ));
        }
        if let Some(shape) = &self.shape {
            errs.push(format!(
                "shape: Invalid value: {shape}: unsupported when StorageCapacityScoring feature is disabled"
            ));
        }
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(format!("[{}]", errs.join(", "))),
        }
    }
}

/// Where PreBind writes: the API, or a fake in tests.
pub trait Writer: Send + Sync {
    /// Replaces a PV; the stored object.
    fn update_pv(&self, pv: PersistentVolume) -> BoxFuture<'_, Result<PersistentVolume, String>>;
    /// Replaces a claim; the stored object.
    fn update_pvc(
        &self,
        pvc: PersistentVolumeClaim,
    ) -> BoxFuture<'_, Result<PersistentVolumeClaim, String>>;
}

/// [`Writer`] through the scheduler's client.
pub struct ApiWriter {
    /// The client.
    pub client: kube::Client,
}

impl Writer for ApiWriter {
    fn update_pv(&self, pv: PersistentVolume) -> BoxFuture<'_, Result<PersistentVolume, String>> {
        Box::pin(async move {
            let name = pv.metadata.name.clone().unwrap_or_default();
            Api::<PersistentVolume>::all(self.client.clone())
                .replace(&name, &PostParams::default(), &pv)
                .await
                .map_err(|e| client_base::errors::message(&e))
        })
    }
    fn update_pvc(
        &self,
        pvc: PersistentVolumeClaim,
    ) -> BoxFuture<'_, Result<PersistentVolumeClaim, String>> {
        Box::pin(async move {
            let ns = pvc.metadata.namespace.clone().unwrap_or_default();
            let name = pvc.metadata.name.clone().unwrap_or_default();
            Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &ns)
                .replace(&name, &PostParams::default(), &pvc)
                .await
                .map_err(|e| client_base::errors::message(&e))
        })
    }
}

fn rv(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pvc_key(pvc: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        pvc.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Upstream's assume cache for PVs and claims: the informers' objects, with
/// in-memory versions laid over them from Reserve until the informer delivers a
/// newer object (or Unreserve restores them).
pub struct AssumeCache {
    storage: Arc<dyn Storage>,
    pvs: Mutex<HashMap<String, Arc<PersistentVolume>>>,
    pvcs: Mutex<HashMap<String, Arc<PersistentVolumeClaim>>>,
}

impl AssumeCache {
    /// Over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        AssumeCache {
            storage,
            pvs: Mutex::default(),
            pvcs: Mutex::default(),
        }
    }

    fn latest<K: kube::Resource>(
        api: Option<Arc<K>>,
        assumed: &mut HashMap<String, Arc<K>>,
        key: &str,
    ) -> Option<Arc<K>> {
        let Some(a) = assumed.get(key) else {
            return api;
        };
        match api {
            Some(api) if rv(api.meta()) > rv(a.meta()) => {
                assumed.remove(key);
                Some(api)
            }
            Some(_) => Some(a.clone()),
            None => {
                assumed.remove(key);
                None
            }
        }
    }

    /// The PV `name`, assumed or from the informer.
    pub fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        Self::latest(self.storage.pv(name), &mut self.pvs.lock(), name)
    }

    /// Every PV of `class`.
    pub fn pvs_of_class(&self, class: &str) -> Vec<Arc<PersistentVolume>> {
        let mut assumed = self.pvs.lock();
        self.storage
            .pvs()
            .into_iter()
            .filter_map(|pv| {
                let name = pv.metadata.name.clone().unwrap_or_default();
                Self::latest(Some(pv), &mut assumed, &name)
            })
            .filter(|pv| pv_class(pv) == class)
            .collect()
    }

    /// The claim `namespace/name`.
    pub fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        let key = format!("{namespace}/{name}");
        Self::latest(
            self.storage.pvc(namespace, name),
            &mut self.pvcs.lock(),
            &key,
        )
    }

    fn assume_pv(&self, pv: Arc<PersistentVolume>) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.pvs.lock().insert(name, pv);
    }
    fn assume_pvc(&self, pvc: Arc<PersistentVolumeClaim>) {
        self.pvcs.lock().insert(pvc_key(&pvc), pvc);
    }
    fn restore_pv(&self, name: &str) {
        self.pvs.lock().remove(name);
    }
    fn restore_pvc(&self, key: &str) {
        self.pvcs.lock().remove(key);
    }
}

/// A pod's claims, sorted as upstream's `PodVolumeClaims`.
#[derive(Default)]
struct PodVolumeClaims {
    bound: Vec<Arc<PersistentVolumeClaim>>,
    unbound_delay: Vec<Arc<PersistentVolumeClaim>>,
    unbound_immediate: Vec<Arc<PersistentVolumeClaim>>,
    /// The PVs of each class of the delayed claims.
    unbound_volumes_delay: HashMap<String, Vec<Arc<PersistentVolume>>>,
}

/// Claims.
type Claims = Vec<Arc<PersistentVolumeClaim>>;

/// A PV to bind to a claim.
pub type Binding = (Arc<PersistentVolume>, Arc<PersistentVolumeClaim>);

/// What binding a pod's claims on one node takes.
#[derive(Clone, Default, Debug)]
pub struct PodVolumes {
    /// PVs to bind to claims.
    pub static_bindings: Vec<Binding>,
    /// Claims to provision on the node.
    pub dynamic_provisions: Vec<Arc<PersistentVolumeClaim>>,
}

#[derive(Default)]
struct Inner {
    by_node: HashMap<String, PodVolumes>,
    all_bound: bool,
}

#[derive(Default)]
struct StateData {
    claims: PodVolumeClaims,
    inner: Mutex<Inner>,
}

/// The plugin.
pub struct VolumeBinding {
    storage: Arc<dyn Storage>,
    cache: AssumeCache,
    writer: Arc<dyn Writer>,
    timeout: Duration,
    poll: Duration,
}

impl VolumeBinding {
    /// Built from its args.
    pub fn new(
        args: Args,
        storage: Arc<dyn Storage>,
        writer: Arc<dyn Writer>,
    ) -> Result<Self, String> {
        args.validate()?;
        Ok(VolumeBinding {
            cache: AssumeCache::new(storage.clone()),
            storage,
            writer,
            timeout: Duration::from_secs(args.bind_timeout_seconds as u64),
            poll: Duration::from_secs(1),
        })
    }

    /// Upstream's `podHasPVCs`: whether the pod has claims, or why it cannot be
    /// scheduled until its claims change.
    fn pod_has_pvcs(&self, pod: &Pod) -> Result<bool, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut has = false;
        for vol in volumes(pod) {
            let Some((name, ephemeral)) = claim_name(pod, vol) else {
                continue;
            };
            has = true;
            let Some(pvc) = self.storage.pvc(ns, &name) else {
                if ephemeral {
                    return Err(format!(
                        "waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}"
                    ));
                }
                return Err(not_found("persistentvolumeclaim", &name));
            };
            if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
                return Err(format!(
                    "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {:?}",
                    claim_volume(&pvc)
                ));
            }
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
            }
            if ephemeral {
                volume_is_for_pod(pod, &pvc)?;
            }
        }
        Ok(has)
    }

    fn fully_bound(pvc: &PersistentVolumeClaim) -> bool {
        !claim_volume(pvc).is_empty() && annotation(&pvc.metadata, ANN_BIND_COMPLETED).is_some()
    }

    /// Upstream's `IsDelayBindingMode`.
    fn delay_binding(&self, pvc: &PersistentVolumeClaim) -> Result<bool, String> {
        let class = claim_class(pvc);
        if class.is_empty() {
            return Ok(false);
        }
        let Some(sc) = self.storage.storage_class(class) else {
            return Ok(false);
        };
        match sc.volume_binding_mode.as_deref() {
            None => Err(format!(
                "VolumeBindingMode not set for StorageClass {class:?}"
            )),
            Some(mode) => Ok(mode == "WaitForFirstConsumer"),
        }
    }

    /// Upstream's `GetPodVolumeClaims`.
    fn pod_volume_claims(&self, pod: &Pod) -> Result<PodVolumeClaims, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut c = PodVolumeClaims::default();
        for vol in volumes(pod) {
            let Some((name, _)) = claim_name(pod, vol) else {
                continue;
            };
            let pvc = self.cache.pvc(ns, &name).ok_or_else(|| {
                format!(
                    "error getting PVC \"{ns}/{name}\": {}",
                    not_found("persistentvolumeclaim", &name)
                )
            })?;
            if Self::fully_bound(&pvc) {
                c.bound.push(pvc);
            } else if self.delay_binding(&pvc)? && claim_volume(&pvc).is_empty() {
                c.unbound_delay.push(pvc);
            } else {
                c.unbound_immediate.push(pvc);
            }
        }
        for pvc in &c.unbound_delay {
            let class = claim_class(pvc).to_owned();
            if let std::collections::hash_map::Entry::Vacant(e) =
                c.unbound_volumes_delay.entry(class)
            {
                let pvs = self.cache.pvs_of_class(e.key());
                e.insert(pvs);
            }
        }
        Ok(c)
    }

    /// Upstream's `FindPodVolumes`: what the pod's claims need on `node`, or the
    /// reasons it cannot have them there.
    fn find_pod_volumes(
        &self,
        claims: &PodVolumeClaims,
        node: &Node,
    ) -> Result<(PodVolumes, Vec<&'static str>), String> {
        let mut out = PodVolumes::default();
        let (mut unbound_ok, mut bound_ok, mut storage_ok, mut pvs_found) =
            (true, true, true, true);
        let reasons = |bound_ok: bool, unbound_ok: bool, storage_ok: bool, pvs_found: bool| {
            let mut r = Vec::new();
            if !bound_ok {
                r.push(NODE_CONFLICT);
            }
            if !unbound_ok {
                r.push(BIND_CONFLICT);
            }
            if !storage_ok {
                r.push(NOT_ENOUGH_SPACE);
            }
            if !pvs_found {
                r.push(PV_NOT_EXIST);
            }
            r
        };
        if !claims.bound.is_empty() {
            (bound_ok, pvs_found) = self.check_bound_claims(&claims.bound, node);
        }
        if !claims.unbound_delay.is_empty() {
            let node_name = node.metadata.name.as_deref().unwrap_or_default();
            let mut to_match = Vec::new();
            let mut to_provision = Vec::new();
            for c in &claims.unbound_delay {
                match annotation(&c.metadata, ANN_SELECTED_NODE) {
                    Some(selected) if selected != node_name => {
                        // Fast path: provisioning was already asked for elsewhere.
                        let r = reasons(bound_ok, false, storage_ok, pvs_found);
                        return Ok((PodVolumes::default(), r));
                    }
                    Some(_) => to_provision.push(c.clone()),
                    None => to_match.push(c.clone()),
                }
            }
            let mut bindings = Vec::new();
            if !to_match.is_empty() {
                let (ok, b, unbound) =
                    Self::find_matching_volumes(to_match, &claims.unbound_volumes_delay, node)?;
                unbound_ok = ok;
                bindings = b;
                to_provision.extend(unbound);
            }
            let mut provisions = Vec::new();
            if !to_provision.is_empty() {
                let (ok, sufficient, p) = self.check_volume_provisions(&to_provision, node)?;
                unbound_ok = ok;
                storage_ok = sufficient;
                provisions = p;
            }
            out.static_bindings = bindings;
            out.dynamic_provisions = provisions;
        }
        Ok((out, reasons(bound_ok, unbound_ok, storage_ok, pvs_found)))
    }

    /// Whether the bound claims' PVs admit `node`, and whether they all exist.
    fn check_bound_claims(
        &self,
        claims: &[Arc<PersistentVolumeClaim>],
        node: &Node,
    ) -> (bool, bool) {
        for pvc in claims {
            let Some(pv) = self.cache.pv(claim_volume(pvc)) else {
                return (true, false);
            };
            if !node_affinity_matches(&pv, node_labels(node)) {
                return (false, true);
            }
        }
        (true, true)
    }

    /// Upstream's `findMatchingVolumes`: the smallest fitting PV for each claim,
    /// smallest claims first; claims without one are returned to be provisioned.
    fn find_matching_volumes(
        mut claims: Vec<Arc<PersistentVolumeClaim>>,
        pvs: &HashMap<String, Vec<Arc<PersistentVolume>>>,
        node: &Node,
    ) -> Result<(bool, Vec<Binding>, Claims), String> {
        claims.sort_by_key(|c| claim_request(c));
        let mut chosen = HashSet::new();
        let mut found = true;
        let mut bindings = Vec::new();
        let mut unbound = Vec::new();
        for pvc in claims {
            let candidates = pvs
                .get(claim_class(&pvc))
                .map(Vec::as_slice)
                .unwrap_or_default();
            match find_matching_volume(&pvc, candidates, Some(node), &chosen)? {
                None => {
                    unbound.push(pvc);
                    found = false;
                }
                Some(pv) => {
                    chosen.insert(pv.metadata.name.clone().unwrap_or_default());
                    bindings.push((pv, pvc));
                }
            }
        }
        Ok((found, bindings, unbound))
    }

    /// Upstream's `checkVolumeProvisions`: (satisfied, enough storage, claims to
    /// provision).
    fn check_volume_provisions(
        &self,
        claims: &[Arc<PersistentVolumeClaim>],
        node: &Node,
    ) -> Result<(bool, bool, Vec<Arc<PersistentVolumeClaim>>), String> {
        let mut out = Vec::new();
        for claim in claims {
            let class = claim_class(claim);
            if class.is_empty() {
                return Err(format!("no class for claim {:?}", pvc_key(claim)));
            }
            let Some(sc) = self.storage.storage_class(class) else {
                return Err(format!("failed to find storage class {class:?}"));
            };
            if sc.provisioner.is_empty() || sc.provisioner == NOT_SUPPORTED_PROVISIONER {
                return Ok((false, true, Vec::new()));
            }
            if !topology_matches(sc.allowed_topologies.as_deref(), node_labels(node)) {
                return Ok((false, true, Vec::new()));
            }
            if !self.has_enough_capacity(claim, &sc, node) {
                return Ok((true, false, Vec::new()));
            }
            out.push(claim.clone());
        }
        Ok((true, true, out))
    }

    /// Upstream's `hasEnoughCapacity`: only for CSI drivers that publish
    /// CSIStorageCapacity objects.
    fn has_enough_capacity(
        &self,
        claim: &PersistentVolumeClaim,
        sc: &StorageClass,
        node: &Node,
    ) -> bool {
        let Some(size) = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
        else {
            return true;
        };
        let Some(driver) = self.storage.csi_driver(&sc.provisioner) else {
            return true;
        };
        if driver.spec.storage_capacity != Some(true) {
            return true;
        }
        let size = quantity_value(size);
        let class = sc.metadata.name.as_deref().unwrap_or_default();
        self.storage.capacities().iter().any(|c| {
            c.storage_class_name == class
                && capacity_sufficient(c, size)
                && node_has_access(node, c)
        })
    }

    /// Upstream's `arePodVolumesBound`.
    fn pod_volumes_bound(&self, pod: &Pod) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        volumes(pod).iter().all(|v| match claim_name(pod, v) {
            None => true,
            Some((name, _)) => self
                .cache
                .pvc(ns, &name)
                .is_some_and(|c| Self::fully_bound(&c)),
        })
    }

    /// Upstream's `AssumePodVolumes`: whether everything is bound already, and
    /// the assumed objects.
    fn assume(&self, pod: &Pod, node: &str, volumes: PodVolumes) -> (bool, PodVolumes) {
        if self.pod_volumes_bound(pod) {
            return (true, volumes);
        }
        let mut out = PodVolumes::default();
        for (pv, pvc) in volumes.static_bindings {
            let (new_pv, dirty) = bind_volume_to_claim(&pv, &pvc);
            let new_pv = Arc::new(new_pv);
            if dirty {
                self.cache.assume_pv(new_pv.clone());
            }
            out.static_bindings.push((new_pv, pvc));
        }
        for claim in volumes.dynamic_provisions {
            let mut c = (*claim).clone();
            c.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(ANN_SELECTED_NODE.into(), node.into());
            let c = Arc::new(c);
            self.cache.assume_pvc(c.clone());
            out.dynamic_provisions.push(c);
        }
        (false, out)
    }

    /// Upstream's `BindPodVolumes`: the API writes, then waiting for the binding.
    async fn bind_pod_volumes(
        &self,
        pod: &Pod,
        node: &str,
        volumes: PodVolumes,
    ) -> Result<(), String> {
        let mut bindings = Vec::new();
        for (pv, pvc) in volumes.static_bindings {
            let stored = self.writer.update_pv((*pv).clone()).await?;
            bindings.push((Arc::new(stored), pvc));
        }
        let mut provisions = Vec::new();
        for claim in volumes.dynamic_provisions {
            let stored = self.writer.update_pvc((*claim).clone()).await?;
            provisions.push(Arc::new(stored));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.check_bindings(pod, node, &bindings, &provisions) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(format!("binding volumes: {e}")),
            }
            if Instant::now() >= deadline {
                return Err("binding volumes: context deadline exceeded".into());
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Upstream's `checkBindings`: done, not yet, or failed for good.
    fn check_bindings(
        &self,
        pod: &Pod,
        node_name: &str,
        bindings: &[Binding],
        provisions: &[Arc<PersistentVolumeClaim>],
    ) -> Result<bool, String> {
        let node = self.storage.node(node_name).ok_or_else(|| {
            format!("failed to get node {node_name:?}: node {node_name:?} not found")
        })?;
        let labels = node_labels(&node);
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if !self.storage.pod_exists(ns, name) {
            return Err(format!(
                "pod does not exist any more: pod {name:?} not found"
            ));
        }
        let affinity_err = |pv: &str| {
            format!(
                "pv {pv:?} node affinity doesn't match node {node_name:?}: no matching NodeSelectorTerms"
            )
        };
        for (pv, pvc) in bindings {
            let pv_name = pv.metadata.name.as_deref().unwrap_or_default();
            let api_pv = self.storage.pv(pv_name).ok_or_else(|| {
                format!("failed to check binding: could not find v1.PersistentVolume {pv_name:?}")
            })?;
            let key = pvc_key(pvc);
            let pvc_name = pvc.metadata.name.as_deref().unwrap_or_default();
            let api_pvc = self.storage.pvc(ns, pvc_name).ok_or_else(|| {
                format!("failed to check binding: could not find v1.PersistentVolumeClaim {key:?}")
            })?;
            if rv(&pv.metadata) > rv(&api_pv.metadata) {
                return Ok(false);
            }
            if !node_affinity_matches(&api_pv, labels) {
                return Err(affinity_err(pv_name));
            }
            let uid = api_pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.uid.as_deref())
                .unwrap_or_default();
            if uid.is_empty() {
                return Err(format!("ClaimRef got reset for pv {pv_name:?}"));
            }
            if !Self::fully_bound(&api_pvc) {
                return Ok(false);
            }
        }
        for claim in provisions {
            let key = pvc_key(claim);
            let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
            let api = self.storage.pvc(ns, claim_name).ok_or_else(|| {
                format!("failed to check provisioning pvc: could not find v1.PersistentVolumeClaim {key:?}")
            })?;
            if rv(&claim.metadata) > rv(&api.metadata) {
                return Ok(false);
            }
            let Some(annotations) = &api.metadata.annotations else {
                return Err(format!(
                    "selectedNode annotation reset for PVC {claim_name:?}"
                ));
            };
            if annotations.get(ANN_SELECTED_NODE).map(String::as_str) != Some(node_name) {
                return Err(format!("provisioning failed for PVC {claim_name:?}"));
            }
            let volume = claim_volume(&api);
            if !volume.is_empty() {
                let Some(pv) = self.storage.pv(volume) else {
                    return Ok(false);
                };
                if !node_affinity_matches(&pv, labels) {
                    return Err(affinity_err(volume));
                }
            }
            if !Self::fully_bound(&api) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn claim_request(pvc: &PersistentVolumeClaim) -> i64 {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(quantity_value)
        .unwrap_or(0)
}

fn access_modes(modes: Option<&Vec<String>>) -> &[String] {
    modes.map(Vec::as_slice).unwrap_or_default()
}

/// Whether `pv`'s claimRef names `claim` (any UID when the ref has none).
pub fn bound_to_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name != claim.metadata.name || r.namespace != claim.metadata.namespace {
        return false;
    }
    let uid = r.uid.as_deref().unwrap_or_default();
    uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref()
}

/// Upstream's `FindMatchingVolume` on the scheduler's path (a node given): a PV
/// pre-bound to the claim, else the smallest Available one that fits.
pub fn find_matching_volume(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    node: Option<&Node>,
    excluded: &HashSet<String>,
) -> Result<Option<Arc<PersistentVolume>>, String> {
    let spec = claim.spec.clone().unwrap_or_default();
    let requested = claim_request(claim);
    let class = claim_class(claim);
    let claim_mode = spec.volume_mode.as_deref().unwrap_or("Filesystem");
    let mut smallest: Option<(i64, &Arc<PersistentVolume>)> = None;
    for pv in volumes {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        if excluded.contains(name) {
            continue;
        }
        let pv_spec = pv.spec.clone().unwrap_or_default();
        if pv_spec.claim_ref.is_some() && !bound_to_claim(pv, claim) {
            continue;
        }
        let size = pv_spec
            .capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .map(quantity_value)
            .unwrap_or(0);
        if size < requested {
            continue;
        }
        if pv_spec.volume_mode.as_deref().unwrap_or("Filesystem") != claim_mode {
            continue;
        }
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_ok = node.is_none_or(|n| node_affinity_matches(pv, node_labels(n)));
        if bound_to_claim(pv, claim) {
            return Ok(affinity_ok.then(|| pv.clone()));
        }
        if node.is_none() {
            continue;
        }
        if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Available") {
            continue;
        }
        if let Some(sel) = &spec.selector {
            if client_base::selectors::label_selector(sel).is_none() {
                return Err(format!(
                    "error creating internal label selector for claim: {}: invalid selector",
                    pvc_key(claim)
                ));
            }
            let labels = pv.metadata.labels.clone().unwrap_or_default();
            if !client_base::selectors::matches(sel, &labels) {
                continue;
            }
        }
        if pv_class(pv) != class || !affinity_ok {
            continue;
        }
        let pv_modes = access_modes(pv_spec.access_modes.as_ref());
        if !access_modes(spec.access_modes.as_ref())
            .iter()
            .all(|m| pv_modes.contains(m))
        {
            continue;
        }
        if smallest.is_none_or(|(s, _)| s > size) {
            smallest = Some((size, pv));
        }
    }
    Ok(smallest.map(|(_, pv)| pv.clone()))
}

/// Upstream's `GetBindVolumeToClaim`: the PV with its claimRef set to `claim`
/// and the bound-by-controller annotation, and whether anything changed.
pub fn bind_volume_to_claim(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> (PersistentVolume, bool) {
    let by_controller = !bound_to_claim(pv, claim);
    let mut out = pv.clone();
    let mut dirty = false;
    let r = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let same = r.is_some_and(|r| {
        r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && r.uid == claim.metadata.uid
    });
    if !same {
        out.spec.get_or_insert_with(Default::default).claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: claim.metadata.namespace.clone(),
            name: claim.metadata.name.clone(),
            uid: claim.metadata.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            ..Default::default()
        });
        dirty = true;
    }
    if by_controller && annotation(&out.metadata, ANN_BOUND_BY_CONTROLLER).is_none() {
        out.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        dirty = true;
    }
    (out, dirty)
}

/// Upstream's `MatchTopologySelectorTerms`: no terms admit every node; an empty
/// term admits none.
pub fn topology_matches(
    terms: Option<&[TopologySelectorTerm]>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let terms = terms.unwrap_or_default();
    if terms.is_empty() {
        return true;
    }
    terms.iter().any(|t| {
        let exprs = t.match_label_expressions.as_deref().unwrap_or_default();
        !exprs.is_empty()
            && exprs
                .iter()
                .all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
    })
}

fn capacity_sufficient(c: &CSIStorageCapacity, size: i64) -> bool {
    c.maximum_volume_size
        .as_ref()
        .or(c.capacity.as_ref())
        .is_some_and(|q| quantity_value(q) >= size)
}

fn node_has_access(node: &Node, c: &CSIStorageCapacity) -> bool {
    c.node_topology
        .as_ref()
        .is_some_and(|sel| client_base::selectors::matches(sel, node_labels(node)))
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::PvcAdd,
            ClusterEvent::PvcUpdate,
            ClusterEvent::PvAdd,
            ClusterEvent::PvUpdate,
            ClusterEvent::StorageClassAdd,
            ClusterEvent::StorageClassUpdate,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeLabelChange,
            ClusterEvent::NodeTaintChange,
            ClusterEvent::CsiNodeAdd,
            ClusterEvent::CsiNodeUpdate,
            ClusterEvent::CsiDriverUpdate,
            ClusterEvent::CsiStorageCapacityChange,
        ]
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        Some(self)
    }
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        match self.pod_has_pvcs(&pod.pod) {
            Err(msg) => return (None, Status::unresolvable(msg)),
            Ok(false) => {
                state.write(STATE_KEY, StateData::default());
                return (None, Status::skip());
            }
            Ok(true) => {}
        }
        let claims = match self.pod_volume_claims(&pod.pod) {
            Ok(c) => c,
            Err(e) => return (None, Status::error(e)),
        };
        if !claims.unbound_immediate.is_empty() {
            return (
                None,
                Status::unresolvable("pod has unbound immediate PersistentVolumeClaims"),
            );
        }
        state.write(
            STATE_KEY,
            StateData {
                claims,
                inner: Mutex::default(),
            },
        );
        (None, Status::success())
    }
}

fn state_data(state: &CycleState) -> Result<&StateData, Status> {
    state.read::<StateData>(STATE_KEY).ok_or_else(|| {
        Status::error(format!(
            "error reading {STATE_KEY:?} from cycleState: not found"
        ))
    })
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = node.node.as_deref() else {
            return Status::error("node not found");
        };
        let data = match state_data(state) {
            Ok(d) => d,
            Err(s) => return s,
        };
        let (volumes, reasons) = match self.find_pod_volumes(&data.claims, n) {
            Ok(r) => r,
            Err(e) => return Status::error(e),
        };
        if !reasons.is_empty() {
            return Status::new(Code::UnschedulableAndUnresolvable, reasons);
        }
        let name = n.metadata.name.clone().unwrap_or_default();
        data.inner.lock().by_node.insert(name, volumes);
        Status::success()
    }
}

impl PreScorePlugin for VolumeBinding {
    fn pre_score(&self, _: &mut CycleState, _: &PodInfo, _: &[Arc<NodeInfo>]) -> Status {
        // Scoring by capacity needs the StorageCapacityScoring feature (off).
        Status::skip()
    }
}

impl ScorePlugin for VolumeBinding {
    fn score(&self, _: &CycleState, _: &PodInfo, _: &NodeInfo) -> (i64, Status) {
        (0, Status::success())
    }
    fn normalize(&self, _: &CycleState, _: &PodInfo, _: &mut [NodeScore]) -> Status {
        Status::success()
    }
}

impl ReservePlugin for VolumeBinding {
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        let data = match state_data(state) {
            Ok(d) => d,
            Err(s) => return s,
        };
        let mut inner = data.inner.lock();
        match inner.by_node.remove(node) {
            Some(volumes) => {
                let (all_bound, assumed) = self.assume(&pod.pod, node, volumes);
                inner.all_bound = all_bound;
                inner.by_node.insert(node.to_owned(), assumed);
            }
            None => inner.all_bound = true,
        }
        Status::success()
    }
    fn unreserve(&self, state: &mut CycleState, _pod: &PodInfo, node: &str) {
        let Ok(data) = state_data(state) else {
            return;
        };
        let inner = data.inner.lock();
        let Some(volumes) = inner.by_node.get(node) else {
            return;
        };
        for (pv, _) in &volumes.static_bindings {
            self.cache
                .restore_pv(pv.metadata.name.as_deref().unwrap_or_default());
        }
        for pvc in &volumes.dynamic_provisions {
            self.cache.restore_pvc(&pvc_key(pvc));
        }
    }
}

impl PreBindPlugin for VolumeBinding {
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let data = match state_data(state) {
                Ok(d) => d,
                Err(s) => return s,
            };
            let (all_bound, volumes) = {
                let inner = data.inner.lock();
                (inner.all_bound, inner.by_node.get(node).cloned())
            };
            if all_bound {
                return Status::success();
            }
            let Some(volumes) = volumes else {
                return Status::error(format!("no pod volumes found for node {node:?}"));
            };
            match self.bind_pod_volumes(&pod.pod, node, volumes).await {
                Ok(()) => Status::success(),
                Err(e) => Status::error(e),
            }
        })
    }
}

#[cfg(test)]
mod tests;
