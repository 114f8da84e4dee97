//! VolumeZone, as upstream's `plugins/volumezone`: a pod whose bound volumes
//! carry zone or region labels runs only on nodes in those zones and regions.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, Pod};

use super::{
    Storage, claim_class, claim_name, claim_volume, node_labels, not_found_status, volumes,
};
use crate::framework::types::{NodeInfo, PodInfo};
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, Status,
};

/// The plugin's name.
pub const NAME: &str = "VolumeZone";
/// The node is outside a volume's zones.
pub const CONFLICT: &str = "node(s) had no available volume zone";
const STATE_KEY: &str = "PreFilterVolumeZone";

const BETA_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
const BETA_REGION: &str = "failure-domain.beta.kubernetes.io/region";
const ZONE: &str = "topology.kubernetes.io/zone";
const REGION: &str = "topology.kubernetes.io/region";
/// The labels compared, in upstream's order.
const TOPOLOGY_LABELS: [&str; 4] = [BETA_ZONE, BETA_REGION, ZONE, REGION];

/// One topology label of a volume, with the values it admits.
#[derive(Clone, Debug, PartialEq)]
struct PvTopology {
    key: &'static str,
    values: HashSet<String>,
}

/// The plugin.
pub struct VolumeZone {
    storage: Arc<dyn Storage>,
}

/// Upstream's `LabelZonesToSet`: `a__b` admits a and b.
fn zones(value: &str) -> Option<HashSet<String>> {
    let set: HashSet<String> = value.split("__").map(str::to_owned).collect();
    (!set.iter().any(String::is_empty)).then_some(set)
}

fn to_ga(key: &str) -> &str {
    match key {
        BETA_ZONE => ZONE,
        BETA_REGION => REGION,
        k => k,
    }
}

impl VolumeZone {
    /// Over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        VolumeZone { storage }
    }

    fn topologies(pv: &PersistentVolume) -> Vec<PvTopology> {
        let labels = pv.metadata.labels.clone().unwrap_or_default();
        TOPOLOGY_LABELS
            .iter()
            .filter_map(|k| {
                let v = labels.get(*k)?;
                Some(PvTopology {
                    key: k,
                    values: zones(v)?,
                })
            })
            .collect()
    }

    /// Upstream's `getPVbyPod`.
    fn pv_topologies(&self, pod: &Pod) -> Result<Vec<PvTopology>, Status> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = Vec::new();
        for v in volumes(pod) {
            let Some((name, _)) = claim_name(pod, v) else {
                continue;
            };
            if name.is_empty() {
                return Err(Status::unresolvable("PersistentVolumeClaim had no name"));
            }
            let pvc = self
                .storage
                .pvc(ns, &name)
                .ok_or_else(|| not_found_status("persistentvolumeclaim", &name))?;
            let pv_name = claim_volume(&pvc);
            if pv_name.is_empty() {
                let class = claim_class(&pvc);
                if class.is_empty() {
                    return Err(Status::unresolvable(
                        "PersistentVolumeClaim had no pv name and storageClass name",
                    ));
                }
                let sc = self
                    .storage
                    .storage_class(class)
                    .ok_or_else(|| not_found_status("storageclass.storage.k8s.io", class))?;
                match sc.volume_binding_mode.as_deref() {
                    None => {
                        return Err(Status::unresolvable(format!(
                            "VolumeBindingMode not set for StorageClass {class:?}"
                        )));
                    }
                    // Not bound yet: VolumeBinding picks a volume for the node.
                    Some("WaitForFirstConsumer") => continue,
                    Some(_) => return Err(Status::unresolvable("PersistentVolume had no name")),
                }
            }
            let pv = self
                .storage
                .pv(pv_name)
                .ok_or_else(|| not_found_status("persistentvolume", pv_name))?;
            out.extend(Self::topologies(&pv));
        }
        Ok(out)
    }
}

impl Plugin for VolumeZone {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        // Upstream: StorageClass Add, Node Add|UpdateNodeLabel|UpdateNodeTaint,
        // PVC Add|Update, PV Add|Update.
        &[
            ClusterEvent::StorageClassAdd,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeLabelChange,
            ClusterEvent::NodeTaintChange,
            ClusterEvent::PvcAdd,
            ClusterEvent::PvcUpdate,
            ClusterEvent::PvAdd,
            ClusterEvent::PvUpdate,
        ]
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for VolumeZone {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        let t = match self.pv_topologies(&pod.pod) {
            Ok(t) => t,
            Err(s) => return (None, s),
        };
        if t.is_empty() {
            return (None, Status::skip());
        }
        state.write(STATE_KEY, t);
        (None, Status::success())
    }
}

impl FilterPlugin for VolumeZone {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if volumes(&pod.pod).is_empty() {
            return Status::success();
        }
        let Some(n) = node.node.as_deref() else {
            return Status::error("node not found");
        };
        let labels = node_labels(n);
        // A node without zone labels (a single-zone cluster) takes any volume.
        if !TOPOLOGY_LABELS.iter().any(|k| labels.contains_key(*k)) {
            return Status::success();
        }
        let computed;
        let topologies = match state.read::<Vec<PvTopology>>(STATE_KEY) {
            Some(t) => t,
            None => {
                computed = match self.pv_topologies(&pod.pod) {
                    Ok(t) => t,
                    Err(s) => return s,
                };
                &computed
            }
        };
        for t in topologies {
            let v = labels.get(t.key).or_else(|| labels.get(to_ga(t.key)));
            if !v.is_some_and(|v| t.values.contains(v)) {
                return Status::unresolvable(CONFLICT);
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testutil::{node, snapshot, state};
    use crate::plugins::volume::build::{bound_pvc, claim_volume as vol, class, pod_with, pv, pvc};
    use crate::plugins::volume::fake::MemStorage;

    fn labelled(name: &str, labels: &[(&str, &str)]) -> PersistentVolume {
        let mut v = pv(name, "", "1Gi");
        v.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
        v
    }

    fn storage() -> MemStorage {
        let mut unset = class("unset", "Immediate", "x");
        unset.volume_binding_mode = None;
        MemStorage::default()
            .pv(labelled("Vol_1", &[(BETA_ZONE, "us-west1-a")]))
            .pvc(bound_pvc("PVC_1", "", "Vol_1"))
            .pv(labelled(
                "Vol_2",
                &[(BETA_REGION, "us-west1-b"), ("uselessLabel", "none")],
            ))
            .pvc(bound_pvc("PVC_2", "", "Vol_2"))
            .pv(labelled("Vol_3", &[(BETA_REGION, "us-west1-c")]))
            .pvc(bound_pvc("PVC_3", "", "Vol_3"))
            .pv(labelled("Vol_Stable_1", &[(ZONE, "us-west1-a")]))
            .pvc(bound_pvc("PVC_Stable_1", "", "Vol_Stable_1"))
            .pv(labelled("Vol_multi", &[(ZONE, "us-west1-a__us-west1-b")]))
            .pvc(bound_pvc("PVC_multi", "", "Vol_multi"))
            .pvc(bound_pvc("PVC_4", "", "Vol_not_exist"))
            .class(class("Class_Wait", "WaitForFirstConsumer", "x"))
            .class(class("Class_Immediate", "Immediate", "x"))
            .class(unset)
            .pvc(pvc("PVC_Wait", "Class_Wait", "1Gi"))
            .pvc(pvc("PVC_Immediate", "Class_Immediate", "1Gi"))
            .pvc(pvc("PVC_Unset", "unset", "1Gi"))
            .pvc(pvc("PVC_NoClass", "", "1Gi"))
            .pvc(pvc("PVC_MissingClass", "Class_Missing", "1Gi"))
    }

    fn filter(claims: &[&str], labels: &[(&str, &str)]) -> Status {
        let pl = VolumeZone::new(Arc::new(storage()));
        let mut n = node("host1");
        for (k, v) in labels {
            n = n.label(k, v);
        }
        let infos = snapshot(&[n.obj()], &[]);
        let mut cs = state(&infos);
        let pi = PodInfo::new(pod_with("p", claims.iter().map(|c| vol(c)).collect()));
        let (_, s) = pl.pre_filter(&mut cs, &pi, &infos);
        if s.code == Code::Skip {
            return Status::success();
        }
        if !s.is_success() {
            return s;
        }
        pl.filter(&cs, &pi, &infos[0])
    }

    #[test]
    fn zones_and_regions_as_upstream() {
        let conflict = Status::unresolvable(CONFLICT);
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&[&str], &[(&str, &str)], Status)> = vec![
            (&[], &[(BETA_ZONE, "us-west1-a")], Status::success()),
            (&["PVC_1"], &[], Status::success()),
            (&["PVC_1"], &[(BETA_ZONE, "us-west1-a")], Status::success()),
            (&["PVC_1"], &[(BETA_ZONE, "us-west1-b")], conflict.clone()),
            (&["PVC_1"], &[("uselessLabel", "none")], Status::success()),
            (
                &["PVC_2"],
                &[(BETA_REGION, "us-west1-b")],
                Status::success(),
            ),
            (
                &["PVC_2"],
                &[(BETA_REGION, "no_us-west1-b")],
                conflict.clone(),
            ),
            (
                &["PVC_1", "PVC_3"],
                &[(BETA_ZONE, "us-west1-a"), (BETA_REGION, "us-west1-c")],
                Status::success(),
            ),
            (
                &["PVC_Stable_1"],
                &[(ZONE, "us-west1-a")],
                Status::success(),
            ),
            (&["PVC_Stable_1"], &[(ZONE, "us-west1-b")], conflict.clone()),
            // A beta label on the volume matches the GA label on the node.
            (&["PVC_1"], &[(ZONE, "us-west1-a")], Status::success()),
            (&["PVC_1"], &[(ZONE, "us-west1-b")], conflict.clone()),
            (&["PVC_multi"], &[(ZONE, "us-west1-b")], Status::success()),
            (&["PVC_multi"], &[(ZONE, "us-west1-c")], conflict.clone()),
            (&["PVC_Wait"], &[(ZONE, "us-west1-a")], Status::success()),
        ];
        for (claims, labels, want) in cases {
            assert_eq!(filter(claims, labels), want, "{claims:?} on {labels:?}");
        }
    }

    #[test]
    fn missing_objects_are_unresolvable() {
        let z = &[(ZONE, "us-west1-a")];
        for (claim, want) in [
            ("PVC_404", "persistentvolumeclaim \"PVC_404\" not found"),
            ("PVC_4", "persistentvolume \"Vol_not_exist\" not found"),
            ("PVC_Immediate", "PersistentVolume had no name"),
            (
                "PVC_Unset",
                "VolumeBindingMode not set for StorageClass \"unset\"",
            ),
            (
                "PVC_NoClass",
                "PersistentVolumeClaim had no pv name and storageClass name",
            ),
            (
                "PVC_MissingClass",
                "storageclass.storage.k8s.io \"Class_Missing\" not found",
            ),
        ] {
            assert_eq!(filter(&[claim], z), Status::unresolvable(want), "{claim}");
        }
    }
}
