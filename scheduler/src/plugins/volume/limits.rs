//! NodeVolumeLimits, as upstream's `plugins/nodevolumelimits` (CSI): the CSI
//! volumes a node may attach, per driver, from its CSINode
//! (`spec.drivers[].allocatable.count`) or its `attachable-volumes-*`
//! allocatable, counted over the pods on the node and the new pod, each volume
//! once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::CSINode;
use sha1::{Digest, Sha1};

use super::{Storage, claim_class, claim_name, claim_volume, volume_is_for_pod, volumes};
use crate::framework::types::{NodeInfo, PodInfo, quantity_value};
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, Status,
};

/// The plugin's name.
pub const NAME: &str = "NodeVolumeLimits";
/// Too many volumes of a driver.
pub const MAX_VOLUME_COUNT_EXCEEDED: &str = "node(s) exceed max volume count";
const CSI_PREFIX: &str = "attachable-volumes-csi-";

/// Upstream's `GetCSIAttachLimitKey`: the resource name of a driver's limit,
/// shortened with a hash past 63 characters.
pub fn attach_limit_key(driver: &str) -> String {
    if CSI_PREFIX.len() + driver.len() >= 63 {
        let head: String = driver.chars().take(23).collect();
        let hashed: String = Sha1::digest(driver.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        return format!("{CSI_PREFIX}{head}{}", &hashed[..16]);
    }
    format!("{CSI_PREFIX}{driver}")
}

/// The plugin.
pub struct NodeVolumeLimits {
    storage: Arc<dyn Storage>,
    /// Prefixes the handles of not-yet-provisioned volumes, as upstream's random
    /// `randomVolumeIDPrefix`, so they never equal a real handle.
    prefix: String,
}

impl NodeVolumeLimits {
    /// Over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        NodeVolumeLimits {
            storage,
            prefix: format!("{:032x}", rand::random::<u128>()),
        }
    }

    /// Upstream's `filterAttachableVolumes`: the pod's CSI volumes
    /// (`driver/handle` to limit key) into `out`.
    fn attachable(
        &self,
        pod: &Pod,
        new_pod: bool,
        out: &mut HashMap<String, String>,
    ) -> Result<(), (bool, String)> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        for v in volumes(pod) {
            let Some((name, ephemeral)) = claim_name(pod, v) else {
                continue;
            };
            if name.is_empty() {
                return Err((false, "PersistentVolumeClaim had no name".into()));
            }
            let Some(pvc) = self.storage.pvc(ns, &name) else {
                if new_pod {
                    // Not found: unresolvable until the claim is created.
                    return Err((
                        true,
                        format!(
                            "looking up PVC {ns}/{name}: persistentvolumeclaim \"{name}\" not found"
                        ),
                    ));
                }
                continue;
            };
            if ephemeral {
                volume_is_for_pod(pod, &pvc).map_err(|e| (false, e))?;
            }
            let Some((driver, handle)) = self.driver_info(&pvc) else {
                continue;
            };
            out.insert(format!("{driver}/{handle}"), attach_limit_key(&driver));
        }
        Ok(())
    }

    /// Upstream's `getCSIDriverInfo`: from the bound PV, else from the class.
    fn driver_info(&self, pvc: &PersistentVolumeClaim) -> Option<(String, String)> {
        let pv_name = claim_volume(pvc);
        if !pv_name.is_empty()
            && let Some(pv) = self.storage.pv(pv_name)
        {
            // An in-tree volume (no CSI translation here) is not counted.
            let csi = pv.spec.as_ref()?.csi.as_ref()?;
            return Some((csi.driver.clone(), csi.volume_handle.clone()));
        }
        let class = claim_class(pvc);
        if class.is_empty() {
            return None;
        }
        let sc = self.storage.storage_class(class)?;
        let handle = format!(
            "{}-{}/{}",
            self.prefix,
            pvc.metadata.namespace.as_deref().unwrap_or_default(),
            pvc.metadata.name.as_deref().unwrap_or_default()
        );
        Some((sc.provisioner.clone(), handle))
    }
}

/// Upstream's `getVolumeLimits`: the node's `attachable-volumes-*` allocatable,
/// overridden by its CSINode's driver counts.
fn volume_limits(node: &NodeInfo, csi_node: Option<&CSINode>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = node
        .node
        .as_ref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.allocatable.as_ref())
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("attachable-volumes-"))
        .map(|(k, q)| (k.clone(), quantity_value(q)))
        .collect();
    for d in csi_node
        .map(|c| c.spec.drivers.as_slice())
        .unwrap_or_default()
    {
        if let Some(count) = d.allocatable.as_ref().and_then(|a| a.count) {
            out.insert(attach_limit_key(&d.name), i64::from(count));
        }
    }
    out
}

impl Plugin for NodeVolumeLimits {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        // Upstream: CSINode Add|Update, Pod Delete, PVC Add, PV Add? (VolumeAttachment
        // Delete is not watched here).
        &[
            ClusterEvent::CsiNodeAdd,
            ClusterEvent::CsiNodeUpdate,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::PvcAdd,
            ClusterEvent::NodeAdd,
        ]
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for NodeVolumeLimits {
    fn pre_filter(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        if super::has_claims(&pod.pod) {
            (None, Status::success())
        } else {
            (None, Status::skip())
        }
    }
}

impl FilterPlugin for NodeVolumeLimits {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if volumes(&pod.pod).is_empty() {
            return Status::success();
        }
        let csi_node = self.storage.csi_node(node.name());
        let mut new = HashMap::new();
        if let Err((missing, msg)) = self.attachable(&pod.pod, true, &mut new) {
            return if missing {
                Status::unresolvable(msg)
            } else {
                Status::error(msg)
            };
        }
        if new.is_empty() {
            return Status::success();
        }
        let limits = volume_limits(node, csi_node.as_deref());
        if limits.is_empty() {
            return Status::success();
        }
        let mut attached = HashMap::new();
        for p in &node.pods {
            if let Err((_, msg)) = self.attachable(&p.pod, false, &mut attached) {
                return Status::error(msg);
            }
        }
        let mut attached_count: HashMap<&str, i64> = HashMap::new();
        for (unique, key) in &attached {
            // A volume the node has already is not attached again.
            new.remove(unique);
            *attached_count.entry(key).or_default() += 1;
        }
        let mut new_count: HashMap<&str, i64> = HashMap::new();
        for key in new.values() {
            *new_count.entry(key).or_default() += 1;
        }
        for (key, count) in new_count {
            if let Some(max) = limits.get(key)
                && attached_count.get(key).copied().unwrap_or(0) + count > *max
            {
                return Status::unschedulable(MAX_VOLUME_COUNT_EXCEEDED);
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::CSIPersistentVolumeSource;
    use k8s_openapi::api::storage::v1::{CSINodeDriver, CSINodeSpec, VolumeNodeResources};

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testutil::{node, snapshot, state};
    use crate::plugins::volume::build::{bound_pvc, claim_volume as vol, class, pod_with, pv, pvc};
    use crate::plugins::volume::fake::MemStorage;

    const EBS: &str = "ebs.csi.aws.com";
    const GCE: &str = "pd.csi.storage.gke.io";

    fn csi_pv(
        name: &str,
        driver: &str,
        handle: &str,
    ) -> k8s_openapi::api::core::v1::PersistentVolume {
        let mut v = pv(name, "", "1Gi");
        v.spec.as_mut().unwrap().csi = Some(CSIPersistentVolumeSource {
            driver: driver.into(),
            volume_handle: handle.into(),
            ..Default::default()
        });
        v
    }

    fn csi_node(limits: &[(&str, i32)]) -> CSINode {
        let mut c = CSINode::default();
        c.metadata.name = Some("n".into());
        c.spec = CSINodeSpec {
            drivers: limits
                .iter()
                .map(|(d, n)| CSINodeDriver {
                    name: (*d).into(),
                    node_id: "n".into(),
                    allocatable: Some(VolumeNodeResources { count: Some(*n) }),
                    ..Default::default()
                })
                .collect(),
        };
        c
    }

    /// Claims `csi-<i>` bound to PVs `pv-<i>` of `driver` with handles `h-<i>`.
    fn storage(limits: &[(&str, i32)]) -> MemStorage {
        let mut s = MemStorage::default()
            .csi_node(csi_node(limits))
            .class(class("csi-sc", "WaitForFirstConsumer", EBS));
        for i in 0..4 {
            s = s
                .pv(csi_pv(&format!("pv-{i}"), EBS, &format!("h-{i}")))
                .pvc(bound_pvc(&format!("csi-{i}"), "", &format!("pv-{i}")));
        }
        s.pv(csi_pv("gce-0", GCE, "g-0"))
            .pvc(bound_pvc("gce-claim", "", "gce-0"))
            .pvc(pvc("unbound", "csi-sc", "1Gi"))
    }

    fn placed(name: &str, claims: &[&str]) -> Arc<Pod> {
        let mut p = (*pod_with(name, claims.iter().map(|c| vol(c)).collect())).clone();
        p.spec.as_mut().unwrap().node_name = Some("n".into());
        Arc::new(p)
    }

    fn filter(limits: &[(&str, i32)], new: &[&str], existing: &[&[&str]]) -> Status {
        let pl = NodeVolumeLimits::new(Arc::new(storage(limits)));
        let pods: Vec<_> = existing
            .iter()
            .enumerate()
            .map(|(i, c)| placed(&format!("e{i}"), c))
            .collect();
        let infos = snapshot(&[node("n").obj()], &pods);
        let mut cs = state(&infos);
        let pi = PodInfo::new(pod_with("p", new.iter().map(|c| vol(c)).collect()));
        let (_, s) = pl.pre_filter(&mut cs, &pi, &infos);
        if s.code == Code::Skip {
            return Status::success();
        }
        pl.filter(&cs, &pi, &infos[0])
    }

    #[test]
    fn csi_limits_as_upstream() {
        let exceeded = Status::unschedulable(MAX_VOLUME_COUNT_EXCEEDED);
        let ok = Status::success();
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&[(&str, i32)], &[&str], &[&[&str]], Status)> = vec![
            // Fits: 2 attached + 1 new within 4.
            (&[(EBS, 4)], &["csi-2"], &[&["csi-0", "csi-1"]], ok.clone()),
            // Exceeds: 2 attached + 1 new over 2.
            (
                &[(EBS, 2)],
                &["csi-2"],
                &[&["csi-0", "csi-1"]],
                exceeded.clone(),
            ),
            // The same volume already attached is not counted twice.
            (&[(EBS, 2)], &["csi-0"], &[&["csi-0", "csi-1"]], ok.clone()),
            // Other drivers have their own limit.
            (
                &[(EBS, 2), (GCE, 1)],
                &["gce-claim"],
                &[&["csi-0", "csi-1"]],
                ok.clone(),
            ),
            (&[(GCE, 0)], &["gce-claim"], &[], exceeded.clone()),
            // No limit for the driver: anything goes.
            (
                &[(GCE, 1)],
                &["csi-2", "csi-3"],
                &[&["csi-0", "csi-1"]],
                ok.clone(),
            ),
            // An unbound claim counts against its class's provisioner.
            (
                &[(EBS, 2)],
                &["unbound"],
                &[&["csi-0", "csi-1"]],
                exceeded.clone(),
            ),
            (
                &[(EBS, 3)],
                &["unbound"],
                &[&["csi-0", "csi-1"]],
                ok.clone(),
            ),
            // Existing pods' missing claims are not counted.
            (
                &[(EBS, 2)],
                &["csi-2"],
                &[&["csi-0", "missing"]],
                ok.clone(),
            ),
        ];
        for (i, (limits, new, existing, want)) in cases.into_iter().enumerate() {
            assert_eq!(filter(limits, new, existing), want, "case {i}");
        }
    }

    #[test]
    fn a_missing_claim_is_unresolvable() {
        assert_eq!(
            filter(&[(EBS, 2)], &["missing"], &[]),
            Status::unresolvable(
                "looking up PVC default/missing: persistentvolumeclaim \"missing\" not found"
            )
        );
    }

    #[test]
    fn long_driver_names_are_hashed_as_upstream() {
        assert_eq!(
            attach_limit_key(EBS),
            "attachable-volumes-csi-ebs.csi.aws.com"
        );
        let long = "a-very-long-csi-driver-name.storage.example.com";
        let key = attach_limit_key(long);
        assert_eq!(key.len(), CSI_PREFIX.len() + 23 + 16);
        assert!(key.starts_with("attachable-volumes-csi-a-very-long-csi-driv"));
    }
}
