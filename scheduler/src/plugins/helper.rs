//! Helpers several plugins share, as upstream's `plugins/helper`.

use crate::framework::types::{NodeInfo, PodInfo};
use crate::framework::{Changed, CycleState, FilterPlugin, NodeScore, QueueingHint};

/// The queueing hint of a Filter plugin that looks only at the node (upstream's
/// NodeAffinity and NodeUnschedulable hints): a node change helps when the
/// filter now passes on the node and did not before (or the node is new).
pub fn node_now_passes(f: &dyn FilterPlugin, pod: &PodInfo, changed: &Changed) -> QueueingHint {
    let Changed::Node { old, new } = changed else {
        return QueueingHint::Queue;
    };
    let passes = |n: &std::sync::Arc<k8s_openapi::api::core::v1::Node>| {
        let mut info = NodeInfo::default();
        info.set_node(n.clone());
        f.filter(&CycleState::default(), pod, &info).is_success()
    };
    if passes(new) && !old.as_ref().is_some_and(passes) {
        QueueingHint::Queue
    } else {
        QueueingHint::Skip
    }
}

/// Scales scores to `[0, max]` by the highest (all `max` when reversed and every
/// score is zero), as upstream's `DefaultNormalizeScore`.
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [NodeScore]) {
    let highest = scores.iter().map(|s| s.score).max().unwrap_or(0).max(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| s.score = max);
        }
        return;
    }
    for s in scores {
        let v = max * s.score / highest;
        s.score = if reverse { max - v } else { v };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(v: &[i64]) -> Vec<NodeScore> {
        v.iter()
            .enumerate()
            .map(|(i, s)| NodeScore {
                name: format!("n{i}"),
                score: *s,
            })
            .collect()
    }

    #[test]
    fn normalizes_as_upstream() {
        // Upstream's normalize_score_test.go cases.
        let mut s = scores(&[10, 20, 30, 40]);
        default_normalize_score(100, false, &mut s);
        assert_eq!(
            s.iter().map(|s| s.score).collect::<Vec<_>>(),
            [25, 50, 75, 100]
        );
        let mut s = scores(&[10, 20, 30, 40]);
        default_normalize_score(100, true, &mut s);
        assert_eq!(
            s.iter().map(|s| s.score).collect::<Vec<_>>(),
            [75, 50, 25, 0]
        );
        let mut s = scores(&[0, 0]);
        default_normalize_score(100, true, &mut s);
        assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), [100, 100]);
        let mut s = scores(&[1000, 2]);
        default_normalize_score(10, false, &mut s);
        assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), [10, 0]);
    }
}
