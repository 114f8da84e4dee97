//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes;
//! preferred node affinity scores them by the weights of the terms they match.
//! The `addedAffinity` arg adds scheduler-enforced affinity to every pod of the
//! profile.

use k8s_openapi::api::core::v1::{NodeAffinity as Affinity, PreferredSchedulingTerm};
use serde::Deserialize;

use super::helper::default_normalize_score;
use super::helper::node_now_passes;
use crate::framework::types::{NodeInfo, PodInfo};
use crate::framework::{
    Changed, ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin,
    QueueingHint, ScorePlugin, Status,
};

/// The reason for a pod's own affinity or selector.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// The reason for the profile's `addedAffinity`.
pub const ERR_REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";

/// `NodeAffinityArgs`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Args {
    /// Affinity added to every pod of the profile.
    #[serde(default)]
    pub added_affinity: Option<Affinity>,
}

/// NodeAffinity.
pub struct NodeAffinity {
    added: Option<Affinity>,
}

impl NodeAffinity {
    /// With its args.
    pub fn new(args: Args) -> Self {
        NodeAffinity {
            added: args.added_affinity,
        }
    }
}

fn required_matches(a: Option<&Affinity>, node: &NodeInfo) -> bool {
    let (Some(sel), Some(n)) = (
        a.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }),
        node.node.as_ref(),
    ) else {
        return true;
    };
    client_base::selectors::node_selector_matches(sel, n)
}

fn preferred_score(terms: &[PreferredSchedulingTerm], node: &NodeInfo) -> i64 {
    let Some(n) = node.node.as_ref() else {
        return 0;
    };
    let labels = client_base::selectors::node_labels(n);
    let name = node.name();
    terms
        .iter()
        .filter(|t| t.weight != 0)
        .filter(|t| client_base::selectors::term_matches(&t.preference, labels, name))
        .map(|t| i64::from(t.weight))
        .sum()
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeLabelChange]
    }
    fn queueing_hint(&self, _: ClusterEvent, pod: &PodInfo, changed: &Changed) -> QueueingHint {
        node_now_passes(self, pod, changed)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = node.node.as_ref() else {
            return Status::unresolvable("node not found");
        };
        if !required_matches(self.added.as_ref(), node) {
            return Status::unresolvable(ERR_REASON_ENFORCED);
        }
        let spec = pod.pod.spec.as_ref();
        if let Some(sel) = spec.and_then(|s| s.node_selector.as_ref())
            && !client_base::selectors::matches_set(sel, client_base::selectors::node_labels(n))
        {
            return Status::unresolvable(ERR_REASON_POD);
        }
        let affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref());
        if !required_matches(affinity, node) {
            return Status::unresolvable(ERR_REASON_POD);
        }
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let mut score = 0;
        if let Some(terms) = self.added.as_ref().and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }) {
            score += preferred_score(terms, node);
        }
        if let Some(terms) = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
        {
            score += preferred_score(terms, node);
        }
        (score, Status::success())
    }
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}
