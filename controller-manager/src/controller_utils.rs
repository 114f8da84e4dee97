//! What the workload controllers share, as upstream's `pkg/controller`
//! (`controller_utils.go`): expectations, pod readiness and availability, the
//! order in which surplus pods are deleted, pods from templates, and slow-start
//! batches of creates.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;
use tokio::time::Instant;

/// Upstream's `ExpectationsTimeout`: expectations older than this are ignored, so a
/// lost watch event cannot stall a controller for good.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Upstream's `SlowStartInitialBatchSize`.
pub const SLOW_START_INITIAL_BATCH: usize = 1;
/// The annotation that ranks pods for scale-down (`PodDeletionCost`).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

#[derive(Debug)]
struct Expected {
    add: i64,
    del: i64,
    /// The pods whose deletion is awaited (upstream's UID-tracking expectations).
    deleting: HashSet<String>,
    at: Instant,
}

/// Upstream's `UIDTrackingControllerExpectations`: how many creates and which
/// deletes a controller has asked for and not yet seen in its watch, so that it
/// does not act twice on a cache that lags behind its own writes.
#[derive(Debug, Default)]
pub struct Expectations {
    by_key: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    /// Whether the controller `key` may act: nothing is awaited, the wait expired,
    /// or it never set any.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.by_key.lock().get(key) {
            None => true,
            Some(e) => (e.add <= 0 && e.del <= 0) || e.at.elapsed() > EXPECTATIONS_TIMEOUT,
        }
    }
    /// `n` creates are under way.
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.by_key.lock().insert(
            key.to_owned(),
            Expected {
                add: n as i64,
                del: 0,
                deleting: HashSet::new(),
                at: Instant::now(),
            },
        );
    }
    /// The deletes of `pods` (`namespace/name`) are under way.
    pub fn expect_deletions(&self, key: &str, pods: Vec<String>) {
        self.by_key.lock().insert(
            key.to_owned(),
            Expected {
                add: 0,
                del: pods.len() as i64,
                deleting: pods.into_iter().collect(),
                at: Instant::now(),
            },
        );
    }
    /// A create was seen (or will never be).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.by_key.lock().get_mut(key) {
            e.add -= 1;
        }
    }
    /// The delete of `pod` was seen (or will never be); counted once per pod.
    pub fn deletion_observed(&self, key: &str, pod: &str) {
        if let Some(e) = self.by_key.lock().get_mut(key)
            && e.deleting.remove(pod)
        {
            e.del -= 1;
        }
    }
    /// The controller is gone.
    pub fn delete(&self, key: &str) {
        self.by_key.lock().remove(key);
    }
}

/// Upstream's `IsPodActive`: not ended and not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's Ready condition's transition time, when it is ready.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Upstream's `IsPodReady`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream's `IsPodAvailable`: ready for at least `min_ready_seconds` at `now`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => t
            .saturating_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
            .is_ok_and(|t| t < now),
    }
}

/// The controller owner reference of an object.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (`metav1.NewControllerRef`).
pub fn controller_ref(owner: &ObjectMeta, api_version: &str, kind: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Upstream's `GetPodFromTemplate`: a pod named `<controller>-<random>` with the
/// template's labels, annotations, finalizers and spec, controlled by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    controller: &str,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    // Upstream's getPodsPrefix: the name and a dash, unless that is not a valid
    // generateName (too long), then the name alone.
    let prefix = format!("{controller}-");
    let generate_name = if prefix.len() <= 253 - 5 {
        prefix
    } else {
        controller.to_owned()
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Upstream's `slowStartBatch`: calls `f` `count` times in batches of 1, 2, 4, …
/// at once, stopping after the first batch with a failure; the successes and the
/// first error.
pub async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, f: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| f())).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    (successes, None)
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// `afterOrZero`: a zero time sorts first, else the later time.
fn after_or_zero(a: Option<Timestamp>, b: Option<Timestamp>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => a.is_none(),
        (Some(a), Some(b)) => a > b,
    }
}

/// Upstream's `logarithmicRankDiff`: the difference of ⌊log2⌋ of the ages.
fn log_rank_diff(a: Timestamp, b: Timestamp, now: Timestamp) -> i64 {
    let rank = |t: Timestamp| {
        let d = now.duration_since(t).as_nanos();
        if d > 0 { (d as f64).log2() as i64 } else { -1 }
    };
    rank(a) - rank(b)
}

/// Upstream's `ActivePodsWithRanks.Less` (with PodDeletionCost and
/// LogarithmicScaleDown, both on): whether `a` goes before `b` when choosing
/// pods to delete. `rank` is the number of the controller's (and its
/// siblings') active pods on the same node.
pub fn delete_first(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Timestamp) -> bool {
    let (na, nb) = (node_name(a), node_name(b));
    // 1. Unassigned < assigned.
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    // 2. Pending < Unknown < Running.
    if phase_ordinal(a) != phase_ordinal(b) {
        return phase_ordinal(a) < phase_ordinal(b);
    }
    // 3. Not ready < ready.
    let (ra, rb) = (is_pod_ready(a), is_pod_ready(b));
    if ra != rb {
        return !ra;
    }
    // 4. Lower deletion cost first.
    if deletion_cost(a) != deletion_cost(b) {
        return deletion_cost(a) < deletion_cost(b);
    }
    // 5. Doubled up (more colocated pods) first.
    if rank_a != rank_b {
        return rank_a > rank_b;
    }
    let uid_less = || a.metadata.uid < b.metadata.uid;
    // 6. Ready for less time first, in logarithmic buckets.
    if ra && rb {
        let (ta, tb) = (ready_since(a).flatten(), ready_since(b).flatten());
        if ta != tb {
            return match (ta, tb) {
                (Some(x), Some(y)) => match log_rank_diff(x, y, now) {
                    0 => uid_less(),
                    d => d < 0,
                },
                _ => after_or_zero(ta, tb),
            };
        }
    }
    // 7. More restarts first.
    if max_restarts(a) != max_restarts(b) {
        return max_restarts(a) > max_restarts(b);
    }
    // 8. Newer first (empty creation time first), in logarithmic buckets.
    let (ca, cb) = (
        a.metadata.creation_timestamp.as_ref().map(|t| t.0),
        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
    );
    if ca != cb {
        return match (ca, cb) {
            (Some(x), Some(y)) => match log_rank_diff(x, y, now) {
                0 => uid_less(),
                d => d < 0,
            },
            _ => after_or_zero(ca, cb),
        };
    }
    false
}

/// Upstream's `getPodsToDelete`: the first `diff` of `pods` in deletion order,
/// ranked by how many of `related` (active pods of the controller and its
/// siblings) share their node.
pub fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    diff: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    if diff >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in related {
        if is_pod_active(p) && !node_name(p).is_empty() {
            *on_node.entry(node_name(p)).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&Pod, usize)> = pods
        .iter()
        .map(|p| (*p, on_node.get(node_name(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|(a, ra), (b, rb)| {
        if delete_first(a, *ra, b, *rb, now) {
            Ordering::Less
        } else if delete_first(b, *rb, a, *ra, now) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
    ranked.into_iter().take(diff).map(|(p, _)| p).collect()
}

/// `namespace/name` of an object: the work queues' keys.
pub fn key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Whether a controller's selector picks an orphan with `meta`'s labels, as
/// upstream's `GetPodReplicaSets`/`getDeploymentsForReplicaSet`: an empty
/// selector selects nothing here.
pub fn selects_orphan(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    meta: &ObjectMeta,
) -> bool {
    let nonempty = sel.match_labels.as_ref().is_some_and(|m| !m.is_empty())
        || sel
            .match_expressions
            .as_ref()
            .is_some_and(|m| !m.is_empty());
    let empty = BTreeMap::new();
    nonempty && client_base::selectors::matches(sel, meta.labels.as_ref().unwrap_or(&empty))
}

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.creation_timestamp = Some(Time(at(created)));
        p.spec = Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.into()),
            ..Default::default()
        });
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: ready_at.map(|t| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at(t))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        p
    }

    #[test]
    fn deletion_order_as_upstream() {
        let now = at(100_000);
        let pods = [
            pod("running-ready-old", "n1", "Running", Some(0), 0),
            pod("unassigned", "", "Pending", None, 50_000),
            pod("running-ready-new", "n2", "Running", Some(99_990), 99_000),
            pod("pending", "n1", "Pending", None, 10),
            pod("running-not-ready", "n3", "Running", None, 20),
            pod("unknown", "n1", "Unknown", None, 30),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let order: Vec<&str> = pods_to_delete(&refs, &[], 5, now)
            .into_iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "unassigned",
                "pending",
                "unknown",
                "running-not-ready",
                "running-ready-new"
            ]
        );
        // Doubled-up pods go first among equals.
        let a = pod("alone", "n1", "Running", Some(0), 0);
        let b = pod("crowded", "n2", "Running", Some(0), 0);
        let c = pod("crowd-mate", "n2", "Running", Some(0), 0);
        let related = [&a, &b, &c];
        let out = pods_to_delete(&[&a, &b], &related, 1, now);
        assert_eq!(out[0].metadata.name.as_deref(), Some("crowded"));
        // A lower deletion cost goes first, before readiness age.
        let mut cheap = pod("cheap", "n1", "Running", Some(0), 0);
        cheap.metadata.annotations =
            Some([(POD_DELETION_COST.to_owned(), "-10".to_owned())].into());
        let young = pod("young", "n1", "Running", Some(99_999), 99_999);
        let out = pods_to_delete(&[&young, &cheap], &[], 1, now);
        assert_eq!(out[0].metadata.name.as_deref(), Some("cheap"));
    }

    #[test]
    fn availability_needs_min_ready_seconds() {
        let p = pod("p", "n1", "Running", Some(0), 0);
        assert!(is_pod_available(&p, 0, at(0)));
        assert!(!is_pod_available(&p, 10, at(5)));
        assert!(is_pod_available(&p, 10, at(11)));
        assert!(!is_pod_available(
            &pod("q", "n1", "Running", None, 0),
            0,
            at(5)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_wait_for_the_watch_or_expire() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"), "none set");
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.expect_deletions("ns/rs", vec!["ns/a".into(), "ns/b".into()]);
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        assert!(!e.satisfied("ns/rs"), "each pod counts once");
        tokio::time::advance(EXPECTATIONS_TIMEOUT + Duration::from_secs(1)).await;
        assert!(e.satisfied("ns/rs"), "expired");
    }

    #[tokio::test]
    async fn slow_start_doubles_and_stops_at_the_first_failing_batch() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<(), String>(())
        })
        .await;
        assert_eq!((ok, err), (10, None));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 10);
        // Batches 1, 2, 4: the 5th call fails, so the batch of 4 ends the run.
        let n = std::sync::atomic::AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || async {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i == 4 {
                Err("quota".to_owned())
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!((ok, err.as_deref()), (6, Some("quota")));
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 7);
    }
}
