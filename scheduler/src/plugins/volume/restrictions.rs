//! VolumeRestrictions, as upstream's `plugins/volumerestrictions`: in-tree disks
//! that only one writer may mount (GCE PD, AWS EBS, iSCSI, RBD) and claims with
//! the `ReadWriteOncePod` access mode.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Volume};

use super::{Storage, claim_name, not_found, volumes};
use crate::framework::types::{NodeInfo, PodInfo};
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, Status,
};

/// The plugin's name.
pub const NAME: &str = "VolumeRestrictions";
/// A disk on the node is mounted read-write by another pod.
pub const DISK_CONFLICT: &str = "node(s) had no available disk";
/// A `ReadWriteOncePod` claim is in use.
pub const RWOP_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";
const STATE_KEY: &str = "PreFilterVolumeRestrictions";

/// The pod's `ReadWriteOncePod` claims, and how many of them other pods use.
#[derive(Clone, Default)]
struct PreFilterState {
    rwop: HashSet<String>,
    conflicting: i64,
}

/// The plugin.
pub struct VolumeRestrictions {
    storage: Arc<dyn Storage>,
}

impl VolumeRestrictions {
    /// Over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        VolumeRestrictions { storage }
    }

    /// The keys (`ns/name`) of the pod's claims with `ReadWriteOncePod`.
    fn rwop_claims(&self, pod: &Pod) -> Result<HashSet<String>, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = HashSet::new();
        for v in volumes(pod) {
            let Some(c) = &v.persistent_volume_claim else {
                continue;
            };
            let Some(pvc) = self.storage.pvc(ns, &c.claim_name) else {
                return Err(not_found("persistentvolumeclaim", &c.claim_name));
            };
            let rwop = pvc
                .spec
                .as_ref()
                .and_then(|s| s.access_modes.as_ref())
                .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"));
            if rwop {
                out.insert(format!("{ns}/{}", c.claim_name));
            }
        }
        Ok(out)
    }
}

/// The claim keys a pod uses.
fn claim_keys(pod: &Pod) -> impl Iterator<Item = String> + '_ {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    volumes(pod)
        .iter()
        .filter_map(move |v| claim_name(pod, v).map(|(n, _)| format!("{ns}/{n}")))
}

fn needs_check(v: &Volume) -> bool {
    v.gce_persistent_disk.is_some()
        || v.aws_elastic_block_store.is_some()
        || v.rbd.is_some()
        || v.iscsi.is_some()
}

/// Upstream's `isVolumeConflict`: whether `v` conflicts with a volume of `pod`.
fn conflicts(v: &Volume, pod: &Pod) -> bool {
    volumes(pod).iter().any(|e| {
        if let (Some(d), Some(ed)) = (&v.gce_persistent_disk, &e.gce_persistent_disk)
            && d.pd_name == ed.pd_name
            && !(d.read_only == Some(true) && ed.read_only == Some(true))
        {
            return true;
        }
        if let (Some(d), Some(ed)) = (&v.aws_elastic_block_store, &e.aws_elastic_block_store)
            && d.volume_id == ed.volume_id
        {
            return true;
        }
        if let (Some(d), Some(ed)) = (&v.iscsi, &e.iscsi)
            && d.iqn == ed.iqn
            && !(d.read_only == Some(true) && ed.read_only == Some(true))
        {
            return true;
        }
        if let (Some(d), Some(ed)) = (&v.rbd, &e.rbd) {
            let pool = |p: &Option<String>| p.clone().unwrap_or_else(|| "rbd".into());
            let overlap = d.monitors.iter().any(|m| ed.monitors.contains(m));
            if overlap
                && pool(&d.pool) == pool(&ed.pool)
                && d.image == ed.image
                && !(d.read_only == Some(true) && ed.read_only == Some(true))
            {
                return true;
            }
        }
        false
    })
}

impl Plugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events(&self) -> &'static [ClusterEvent] {
        // Upstream: Pod Delete, Node Add, PVC Add|Update.
        &[
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::NodeAdd,
            ClusterEvent::PvcAdd,
            ClusterEvent::PvcUpdate,
        ]
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl PreFilterPlugin for VolumeRestrictions {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        let check = volumes(&pod.pod).iter().any(needs_check);
        let rwop = match self.rwop_claims(&pod.pod) {
            Ok(r) => r,
            Err(msg) => return (None, Status::unresolvable(msg)),
        };
        // How many of the pod's RWOP claims a scheduled pod already uses.
        let mut conflicting = 0;
        if !rwop.is_empty() {
            let used: HashSet<String> = nodes
                .iter()
                .flat_map(|n| n.pods.iter())
                .flat_map(|p| claim_keys(&p.pod).collect::<Vec<_>>())
                .collect();
            conflicting = rwop.iter().filter(|k| used.contains(*k)).count() as i64;
        }
        if !check && conflicting == 0 {
            return (None, Status::skip());
        }
        state.write(STATE_KEY, PreFilterState { rwop, conflicting });
        (None, Status::success())
    }
    fn add_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        victim: &PodInfo,
        _: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(STATE_KEY) {
            let n = claim_keys(&victim.pod)
                .filter(|k| s.rwop.contains(k))
                .count() as i64;
            s.conflicting += n;
        }
        Status::success()
    }
    fn remove_pod(
        &self,
        state: &mut CycleState,
        _: &PodInfo,
        victim: &PodInfo,
        _: &NodeInfo,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>(STATE_KEY) {
            let n = claim_keys(&victim.pod)
                .filter(|k| s.rwop.contains(k))
                .count() as i64;
            s.conflicting -= n;
        }
        Status::success()
    }
}

impl FilterPlugin for VolumeRestrictions {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for v in volumes(&pod.pod).iter().filter(|v| needs_check(v)) {
            if node.pods.iter().any(|e| conflicts(v, &e.pod)) {
                return Status::unschedulable(DISK_CONFLICT);
            }
        }
        let Some(s) = state.read::<PreFilterState>(STATE_KEY) else {
            return Status::error(format!(
                "error reading {STATE_KEY:?} from cycleState: not found"
            ));
        };
        if s.conflicting > 0 {
            return Status::unschedulable(RWOP_CONFLICT);
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        AWSElasticBlockStoreVolumeSource, GCEPersistentDiskVolumeSource, ISCSIVolumeSource,
        RBDVolumeSource,
    };

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testutil::{node, snapshot, state};
    use crate::plugins::volume::build::{claim_volume, pod_with, pvc};
    use crate::plugins::volume::fake::MemStorage;

    fn gce(name: &str, ro: bool) -> Volume {
        Volume {
            name: "v".into(),
            gce_persistent_disk: Some(GCEPersistentDiskVolumeSource {
                pd_name: name.into(),
                read_only: Some(ro),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn ebs(id: &str) -> Volume {
        Volume {
            name: "v".into(),
            aws_elastic_block_store: Some(AWSElasticBlockStoreVolumeSource {
                volume_id: id.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn iscsi(iqn: &str, ro: bool) -> Volume {
        Volume {
            name: "v".into(),
            iscsi: Some(ISCSIVolumeSource {
                iqn: iqn.into(),
                read_only: Some(ro),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn rbd(mons: &[&str], image: &str) -> Volume {
        Volume {
            name: "v".into(),
            rbd: Some(RBDVolumeSource {
                monitors: mons.iter().map(|s| (*s).to_owned()).collect(),
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The Filter status of `pod` on a node running `existing`.
    fn filter(pl: &VolumeRestrictions, pod: Arc<Pod>, existing: Vec<Arc<Pod>>) -> Status {
        let infos = snapshot(&[node("n").obj()], &existing);
        let mut cs = state(&infos);
        let pi = PodInfo::new(pod);
        let (_, s) = pl.pre_filter(&mut cs, &pi, &infos);
        if s.code == Code::Skip {
            return Status::success();
        }
        if !s.is_success() {
            return s;
        }
        pl.filter(&cs, &pi, &infos[0])
    }

    fn placed(name: &str, vols: Vec<Volume>) -> Arc<Pod> {
        let mut p = (*pod_with(name, vols)).clone();
        p.spec.as_mut().unwrap().node_name = Some("n".into());
        Arc::new(p)
    }

    #[test]
    fn disk_conflicts_as_upstream() {
        let pl = VolumeRestrictions::new(Arc::new(MemStorage::default()));
        let conflict = Status::unschedulable(DISK_CONFLICT);
        let cases: Vec<(Volume, Volume, bool)> = vec![
            (gce("foo", false), gce("foo", false), true),
            (gce("foo", false), gce("bar", false), false),
            (gce("foo", true), gce("foo", true), false),
            (gce("foo", true), gce("foo", false), true),
            (ebs("foo"), ebs("foo"), true),
            (ebs("foo"), ebs("bar"), false),
            (iscsi("iqn.a", false), iscsi("iqn.a", false), true),
            (iscsi("iqn.a", true), iscsi("iqn.a", true), false),
            (iscsi("iqn.a", false), iscsi("iqn.b", false), false),
            (rbd(&["a", "b"], "foo"), rbd(&["b", "c"], "foo"), true),
            (rbd(&["a"], "foo"), rbd(&["c"], "foo"), false),
            (rbd(&["a"], "foo"), rbd(&["a"], "bar"), false),
        ];
        for (i, (new, old, want)) in cases.into_iter().enumerate() {
            let s = filter(&pl, pod_with("p", vec![new]), vec![placed("e", vec![old])]);
            assert_eq!(s == conflict, want, "case {i}: {s:?}");
        }
        // Nothing on the node.
        let s = filter(&pl, pod_with("p", vec![gce("foo", false)]), vec![]);
        assert!(s.is_success());
    }

    #[test]
    fn read_write_once_pod_claims_admit_one_pod() {
        let mut rwop = pvc("solo", "", "1Gi");
        rwop.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteOncePod".into()]);
        let storage = MemStorage::default()
            .pvc(rwop)
            .pvc(pvc("shared", "", "1Gi"));
        let pl = VolumeRestrictions::new(Arc::new(storage));
        let user = placed("user", vec![claim_volume("solo"), claim_volume("shared")]);
        let s = filter(
            &pl,
            pod_with("p", vec![claim_volume("solo")]),
            vec![user.clone()],
        );
        assert_eq!(s, Status::unschedulable(RWOP_CONFLICT));
        let s = filter(&pl, pod_with("p", vec![claim_volume("shared")]), vec![user]);
        assert!(s.is_success());
        let s = filter(&pl, pod_with("p", vec![claim_volume("solo")]), vec![]);
        assert!(s.is_success());
        let s = filter(&pl, pod_with("p", vec![claim_volume("nope")]), vec![]);
        assert_eq!(
            s,
            Status::unresolvable("persistentvolumeclaim \"nope\" not found")
        );
    }

    #[test]
    fn preemption_can_free_a_read_write_once_pod_claim() {
        let mut rwop = pvc("solo", "", "1Gi");
        rwop.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteOncePod".into()]);
        let pl = VolumeRestrictions::new(Arc::new(MemStorage::default().pvc(rwop)));
        let user = placed("user", vec![claim_volume("solo")]);
        let infos = snapshot(&[node("n").obj()], std::slice::from_ref(&user));
        let mut cs = state(&infos);
        let pi = PodInfo::new(pod_with("p", vec![claim_volume("solo")]));
        assert!(pl.pre_filter(&mut cs, &pi, &infos).1.is_success());
        assert_eq!(
            pl.filter(&cs, &pi, &infos[0]),
            Status::unschedulable(RWOP_CONFLICT)
        );
        pl.remove_pod(&mut cs, &pi, &PodInfo::new(user.clone()), &infos[0]);
        assert!(pl.filter(&cs, &pi, &infos[0]).is_success());
        pl.add_pod(&mut cs, &pi, &PodInfo::new(user), &infos[0]);
        assert_eq!(
            pl.filter(&cs, &pi, &infos[0]),
            Status::unschedulable(RWOP_CONFLICT)
        );
    }
}
