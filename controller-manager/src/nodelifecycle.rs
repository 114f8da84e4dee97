//! The node lifecycle controller, as upstream's `pkg/controller/nodelifecycle`:
//! node health from the kubelet's status posts and its Lease in
//! `kube-node-lease`, and the taints that follow from it.
//!
//! ```text
//!  informers: nodes, leases
//!  node events ─▶ queue ─▶ NoSchedule condition taints (not-ready, unreachable,
//!                  memory/disk/pid-pressure, network-unavailable, unschedulable)
//!  every --node-monitor-period: per node, the last status change or Lease renewal
//!     older than --node-monitor-grace-period (--node-startup-grace-period before
//!     the first status) ─▶ Ready, MemoryPressure, DiskPressure, PIDPressure
//!     Unknown ("Kubelet stopped posting node status.") ─▶ PUT status
//!     ─▶ NoExecute not-ready / unreachable taints, at --node-eviction-rate per zone
//! ```
//!
//! Evicting pods whose tolerations run out is the taint-eviction controller's
//! part (not built yet); marking pods NotReady is not done yet either.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use tokio::time::Instant;

use client_base::informer::{Funcs, Informer, SharedInformerFactory};
use client_base::ratelimit::TokenBucket;
use client_base::workqueue::{Metrics, Queue, Requeue, run_workers};

/// The controller's name.
pub const NAME: &str = "node-lifecycle-controller";
/// Its service account, as upstream's.
pub const ACCOUNT: &str = "node-controller";

/// The taint of a node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a node whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Upstream's `nodeConditionToTaintKeyStatusMap`.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

/// The controller's flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--node-monitor-period`.
    pub monitor_period: Duration,
    /// `--node-monitor-grace-period`.
    pub grace_period: Duration,
    /// `--node-startup-grace-period`.
    pub startup_grace_period: Duration,
    /// `--node-eviction-rate` (NoExecute taints per second per zone).
    pub eviction_rate: f32,
}

fn conditions(n: &Node) -> &[NodeCondition] {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

fn condition<'a>(n: &'a Node, t: &str) -> Option<&'a NodeCondition> {
    conditions(n).iter().find(|c| c.type_ == t)
}

fn taints(n: &Node) -> &[Taint] {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The NoSchedule taints a node's conditions and `spec.unschedulable` call for
/// (upstream's `doNoScheduleTaintingPass`): (to add, to remove).
pub fn no_schedule_diff(n: &Node) -> (Vec<String>, Vec<String>) {
    let mut want: Vec<String> = conditions(n)
        .iter()
        .filter_map(|c| {
            CONDITION_TAINTS
                .iter()
                .find(|(t, s, _)| *t == c.type_ && *s == c.status)
                .map(|(_, _, k)| (*k).to_owned())
        })
        .collect();
    if n.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        want.push(UNSCHEDULABLE.into());
    }
    let have: Vec<String> = taints(n)
        .iter()
        .filter(|t| t.effect == "NoSchedule")
        .filter(|t| t.key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key))
        .map(|t| t.key.clone())
        .collect();
    let add = want.iter().filter(|k| !have.contains(k)).cloned().collect();
    let del = have.iter().filter(|k| !want.contains(k)).cloned().collect();
    (add, del)
}

/// The NoExecute taint the Ready condition calls for (upstream's
/// `doNoExecuteTaintingPass`): not-ready, unreachable, or none.
pub fn no_execute_want(n: &Node) -> Option<&'static str> {
    match condition(n, "Ready").map(|c| c.status.as_str()) {
        Some("False") => Some(NOT_READY),
        Some("Unknown") => Some(UNREACHABLE),
        _ => None,
    }
}

/// The node with `add` taints (of `effect`, added now) and without `del`.
fn swapped(n: &Node, effect: &str, add: &[String], del: &[String]) -> Vec<Taint> {
    let now = Time(Timestamp::now());
    let mut out: Vec<Taint> = taints(n)
        .iter()
        .filter(|t| !(t.effect == effect && del.contains(&t.key)))
        .cloned()
        .collect();
    for k in add {
        if !out.iter().any(|t| t.key == *k && t.effect == effect) {
            out.push(Taint {
                key: k.clone(),
                effect: effect.into(),
                value: None,
                time_added: Some(now.clone()),
            });
        }
    }
    out
}

/// What the controller remembers of a node: when it last showed life.
struct Health {
    probe: Instant,
    ready: Option<NodeCondition>,
    renew: Option<Timestamp>,
}

/// The controller.
pub struct Controller {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    settings: Settings,
    health: Mutex<HashMap<String, Health>>,
    zones: Mutex<HashMap<String, TokenBucket>>,
    queue: Arc<Queue<String>>,
}

fn zone(n: &Node) -> String {
    let l = n.metadata.labels.clone().unwrap_or_default();
    let region = l
        .get("topology.kubernetes.io/region")
        .cloned()
        .unwrap_or_default();
    let zone = l
        .get("topology.kubernetes.io/zone")
        .cloned()
        .unwrap_or_default();
    format!("{region}:\u{0}:{zone}")
}

impl Controller {
    async fn set_taints(&self, name: &str, taints: Vec<Taint>) -> Result<(), kube::Error> {
        let patch = serde_json::json!({"spec": {"taints": taints}});
        Api::<Node>::all(self.client.clone())
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
    }

    /// The NoSchedule pass for one node.
    async fn sync(&self, name: &str) -> Requeue {
        let Some(n) = self.nodes.get(name) else {
            return Requeue::Forget;
        };
        let (add, del) = no_schedule_diff(&n);
        if add.is_empty() && del.is_empty() {
            return Requeue::Forget;
        }
        match self
            .set_taints(name, swapped(&n, "NoSchedule", &add, &del))
            .await
        {
            Ok(()) => Requeue::Forget,
            Err(e) if client_base::errors::is_not_found(&e) => Requeue::Forget,
            Err(e) => {
                tracing::info!(node = name, error = %client_base::errors::message(&e), "failed to swap taints");
                Requeue::Backoff
            }
        }
    }

    /// Upstream's `tryUpdateNodeHealth` for one node: marks its conditions
    /// Unknown once it has shown no life for the grace period.
    async fn monitor(&self, n: &Node) -> Result<(), kube::Error> {
        let name = n.metadata.name.clone().unwrap_or_default();
        let lease = self.leases.get(&format!("kube-node-lease/{name}"));
        let renew = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        let ready = condition(n, "Ready").cloned();
        let grace = if ready.is_none() {
            self.settings.startup_grace_period
        } else {
            self.settings.grace_period
        };
        let now = Instant::now();
        let stale = {
            let mut health = self.health.lock();
            let h = health.entry(name.clone()).or_insert_with(|| Health {
                probe: now,
                ready: ready.clone(),
                renew,
            });
            // A new status post (heartbeat or transition) or a renewed Lease is life.
            let posted = |a: &Option<NodeCondition>, b: &Option<NodeCondition>| {
                a.as_ref().map(|c| (&c.last_heartbeat_time, &c.status))
                    != b.as_ref().map(|c| (&c.last_heartbeat_time, &c.status))
            };
            if posted(&h.ready, &ready) {
                h.probe = now;
                h.ready = ready.clone();
            }
            if let Some(new) = renew
                && h.renew.is_none_or(|old| new > old)
            {
                h.probe = now;
                h.renew = Some(new);
            }
            now.duration_since(h.probe) > grace
        };
        if !stale {
            return Ok(());
        }
        let mut next = n.clone();
        let st = next.status.get_or_insert_with(Default::default);
        let conds = st.conditions.get_or_insert_with(Vec::new);
        let stamp = Time(Timestamp::now());
        let mut changed = false;
        for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conds.iter_mut().find(|c| c.type_ == t) {
                None => {
                    conds.push(NodeCondition {
                        type_: t.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: n.metadata.creation_timestamp.clone(),
                        last_transition_time: Some(stamp.clone()),
                    });
                    changed = true;
                }
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(stamp.clone());
                    changed = true;
                }
                Some(_) => {}
            }
        }
        if changed {
            tracing::info!(node = %name, "node's kubelet stopped posting its status; conditions Unknown");
            Api::<Node>::all(self.client.clone())
                .replace_status(&name, &PostParams::default(), &next)
                .await?;
        }
        Ok(())
    }

    /// Upstream's NoExecute pass for one node, rate limited per zone.
    async fn no_execute(&self, n: &Node) -> Result<(), kube::Error> {
        let want = no_execute_want(n);
        let have: Vec<String> = taints(n)
            .iter()
            .filter(|t| t.effect == "NoExecute" && (t.key == NOT_READY || t.key == UNREACHABLE))
            .map(|t| t.key.clone())
            .collect();
        let add: Vec<String> = want
            .filter(|w| !have.iter().any(|h| h == w))
            .map(|w| vec![w.to_owned()])
            .unwrap_or_default();
        let del: Vec<String> = have
            .iter()
            .filter(|h| Some(h.as_str()) != want)
            .cloned()
            .collect();
        if add.is_empty() && del.is_empty() {
            return Ok(());
        }
        if !add.is_empty() {
            let mut zones = self.zones.lock();
            let bucket = zones
                .entry(zone(n))
                .or_insert_with(|| TokenBucket::new(self.settings.eviction_rate, 1));
            if bucket.reserve() > Duration::ZERO {
                bucket.refund();
                return Ok(());
            }
        }
        let name = n.metadata.name.clone().unwrap_or_default();
        self.set_taints(&name, swapped(n, "NoExecute", &add, &del))
            .await
    }

    /// One monitoring round over every node.
    async fn monitor_all(&self) {
        for n in self.nodes.list() {
            let name = n.metadata.name.clone().unwrap_or_default();
            if let Err(e) = self.monitor(&n).await {
                tracing::info!(node = %name, error = %client_base::errors::message(&e), "updating node health failed");
                continue;
            }
            let current = self.nodes.get(&name).unwrap_or(n);
            if let Err(e) = self.no_execute(&current).await {
                tracing::info!(node = %name, error = %client_base::errors::message(&e), "NoExecute tainting failed");
            }
        }
    }
}

/// Starts the controller; runs until its queue shuts down.
pub async fn run(
    client: kube::Client,
    factory: Arc<SharedInformerFactory>,
    settings: Settings,
    metrics: Metrics,
) {
    let nodes = factory.informer::<Node>();
    let leases = factory.informer::<Lease>();
    let c = Arc::new(Controller {
        client,
        nodes: nodes.clone(),
        leases,
        settings,
        health: Mutex::default(),
        zones: Mutex::default(),
        queue: Queue::new("node_lifecycle_controller", Some(metrics)),
    });
    let (a, u) = (c.clone(), c.clone());
    nodes.add_handler(
        Funcs::new()
            .on_add(move |n: &Arc<Node>, _| {
                a.queue.add(n.metadata.name.clone().unwrap_or_default())
            })
            .on_update(move |_, n: &Arc<Node>| {
                u.queue.add(n.metadata.name.clone().unwrap_or_default())
            }),
    );
    factory.start();
    factory.wait_for_cache_sync().await;
    let m = c.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(m.settings.monitor_period);
        loop {
            tick.tick().await;
            m.monitor_all().await;
        }
    });
    let queue = c.queue.clone();
    run_workers(queue, 1, move |k: String| {
        let c = c.clone();
        async move { c.sync(&k).await }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    use super::*;

    fn node(
        ready: Option<&str>,
        pressure: bool,
        unschedulable: bool,
        taints: &[(&str, &str)],
    ) -> Node {
        let mut conds = Vec::new();
        if let Some(r) = ready {
            conds.push(NodeCondition {
                type_: "Ready".into(),
                status: r.into(),
                ..Default::default()
            });
        }
        if pressure {
            conds.push(NodeCondition {
                type_: "MemoryPressure".into(),
                status: "True".into(),
                ..Default::default()
            });
        }
        Node {
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: (*k).into(),
                            effect: (*e).into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(conds),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn no_schedule_taints_follow_conditions() {
        // Created not-ready (admission's taint), now Ready: the taint goes.
        let n = node(
            Some("True"),
            false,
            false,
            &[(NOT_READY, "NoSchedule"), ("user", "NoSchedule")],
        );
        assert_eq!(no_schedule_diff(&n), (vec![], vec![NOT_READY.to_owned()]));
        let n = node(Some("Unknown"), true, true, &[]);
        let (add, del) = no_schedule_diff(&n);
        assert_eq!(
            add,
            [
                UNREACHABLE,
                "node.kubernetes.io/memory-pressure",
                UNSCHEDULABLE
            ]
        );
        assert!(del.is_empty());
        assert_eq!(
            no_execute_want(&node(Some("False"), false, false, &[])),
            Some(NOT_READY)
        );
        assert_eq!(
            no_execute_want(&node(Some("True"), false, false, &[])),
            None
        );
        // Other effects and other keys are left alone.
        let n = node(Some("True"), false, false, &[(NOT_READY, "NoExecute")]);
        let t = swapped(&n, "NoSchedule", &[], &[NOT_READY.to_owned()]);
        assert_eq!(t.len(), 1);
    }
}
