//! TaintToleration: a node's NoSchedule and NoExecute taints keep out pods that
//! do not tolerate them; PreferNoSchedule taints lower the score.

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};

use super::helper::default_normalize_score;
use crate::framework::types::{NodeInfo, PodInfo};
use crate::framework::{
    Changed, ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin,
    QueueingHint, ScorePlugin, Status,
};

/// TaintToleration.
pub struct TaintToleration;

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeTaintChange]
    }
    fn queueing_hint(&self, _: ClusterEvent, pod: &PodInfo, changed: &Changed) -> QueueingHint {
        // Upstream: only a node whose taints the pod did not tolerate and now does.
        let Changed::Node { old, new } = changed else {
            return QueueingHint::Queue;
        };
        let untolerated = |n: &Node| {
            let taints = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_deref())
                .unwrap_or_default();
            client_base::selectors::untolerated_taint(taints, tolerations(pod), |t| {
                t.effect == "NoSchedule" || t.effect == "NoExecute"
            })
            .is_some()
        };
        let was = old.as_deref().is_none_or(untolerated);
        if was && !untolerated(new) {
            QueueingHint::Queue
        } else {
            QueueingHint::Skip
        }
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match client_base::selectors::untolerated_taint(taints(node), tolerations(pod), |t| {
            t.effect == "NoSchedule" || t.effect == "NoExecute"
        }) {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        // Only tolerations that can tolerate PreferNoSchedule count.
        let prefer: Vec<&Toleration> = tolerations(pod)
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .collect();
        let n = taints(node)
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| {
                !prefer
                    .iter()
                    .any(|tol| client_base::selectors::tolerates(tol, t))
            })
            .count();
        (n as i64, Status::success())
    }
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}
