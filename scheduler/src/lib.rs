//! kube-scheduler: assigns pending pods to nodes with upstream's scheduling
//! framework, plugins, queue, messages and metrics.
//!
//! ```text
//!  apiserver ──list+watch (client_base::informer)──┬─▶ pods (not Succeeded/Failed)
//!                                                  └─▶ nodes
//!    pods without spec.nodeName, for one of our profiles ─▶ [queue] active/backoff/
//!                                                            unschedulable/gated
//!    bound pods and nodes ─────────────────────────────────▶ [cache] NodeInfos
//!    node, bound-pod and storage (PVC, PV, StorageClass, CSINode, ...) changes
//!      ─▶ queue.move_all(event): unschedulable pods retried
//!
//!  leading (Lease kube-system/kube-scheduler):
//!    loop { queue.pop ─▶ [schedule_one] with the pod's profile [framework::runtime]
//!                      ─▶ plugins ([plugins]) ─▶ assume in cache ─▶ bind (async):
//!                         PreBind (volume binding) ─▶ POST pods/binding, event `Scheduled`;
//!           failure ─▶ event `FailedScheduling`, PodScheduled=False, requeue }
//!
//!  --secure-port (10259): /healthz, /livez, /readyz (leaderElection check), /metrics
//! ```
//!
//! - [`options`] and [`config`]: flags and the KubeSchedulerConfiguration, with
//!   profiles expanded to extension points.
//! - [`framework`]: the plugin interfaces, statuses, cycle state, node infos and the
//!   per-profile runtime.
//! - [`plugins`]: the in-tree plugins, registered by name.
//! - [`queue`], [`cache`]: upstream's scheduling queue and cache.
//! - [`schedule_one`]: the scheduling and binding cycles and failure handling.
//! - [`metrics`]: upstream's `scheduler_*` metrics.

pub mod cache;
pub mod config;
pub mod framework;
pub mod metrics;
pub mod options;
pub mod plugins;
pub mod queue;
pub mod schedule_one;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use client_base::informer::{Funcs, SharedInformerFactory};
use client_base::leaderelection::{Ended, Leader};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher;
use prometheus::Registry;

use crate::framework::runtime::Framework;
use crate::framework::{Changed, ClusterEvent, QueueingHint};
use crate::options::Options;
use crate::queue::{Gate, SchedulingQueue};
use crate::schedule_one::Scheduler;

/// Start-up and run-time failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] config::Error),
    /// The client could not be configured.
    #[error("{0}")]
    Client(#[from] client_base::config::Error),
    /// `--write-config-to` failed.
    #[error("writing config to {path}: {message}")]
    WriteConfig {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A metric could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Delegated authentication or authorization could not be set up.
    #[error("{0}")]
    Delegation(#[from] client_base::delegated::Error),
    /// Leadership was lost.
    #[error("{0}")]
    LeaderElection(#[from] client_base::leaderelection::Error),
}

/// The pods the scheduler watches: those that have not ended (one informer,
/// shared by the queue, the cache and the plugins).
pub fn pods_watch() -> watcher::Config {
    watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed")
}

fn assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler")
}

/// The cluster events a node update is (several when it changed several
/// things); empty when nothing the plugins look at changed.
pub fn node_events(old: &Node, new: &Node) -> Vec<ClusterEvent> {
    let spec = |n: &Node| n.spec.clone().unwrap_or_default();
    let alloc = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    let mut out = Vec::new();
    if spec(old).unschedulable != spec(new).unschedulable {
        out.push(ClusterEvent::NodeSpecUnschedulableChange);
    }
    if old.metadata.labels != new.metadata.labels {
        out.push(ClusterEvent::NodeLabelChange);
    }
    if spec(old).taints != spec(new).taints {
        out.push(ClusterEvent::NodeTaintChange);
    }
    if alloc(old) != alloc(new) {
        out.push(ClusterEvent::NodeAllocatableChange);
    }
    out
}

/// Wires the informers' events to the cache and the queue.
fn add_handlers(
    factory: &SharedInformerFactory,
    sched: &Arc<Scheduler>,
) -> Arc<client_base::informer::Informer<Pod>> {
    let pods = sched.pods.clone();
    let ours: HashSet<String> = sched.profiles.keys().cloned().collect();
    let ours = Arc::new(ours);
    let (s1, s2, s3) = (sched.clone(), sched.clone(), sched.clone());
    let (o1, o2) = (ours.clone(), ours);
    pods.add_handler(
        Funcs::new()
            .on_add(move |p: &Arc<Pod>, _| {
                if assigned(p) {
                    s1.cache.lock().add_pod(p.clone());
                    let changed = Changed::Pod {
                        old: None,
                        new: Some(p.clone()),
                    };
                    s1.queue
                        .move_all_for(&[ClusterEvent::AssignedPodAdd], &changed);
                } else if o1.contains(scheduler_name(p)) {
                    s1.queue.add(p.clone());
                }
            })
            .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| {
                if assigned(new) {
                    if !assigned(old) {
                        s2.queue.delete(new);
                    }
                    s2.cache.lock().add_pod(new.clone());
                    if assigned(old) {
                        let changed = Changed::Pod {
                            old: Some(old.clone()),
                            new: Some(new.clone()),
                        };
                        s2.queue
                            .move_all_for(&[ClusterEvent::AssignedPodUpdate], &changed);
                    } else {
                        // Newly bound: an added pod for the plugins that count pods
                        // (upstream's assigned-pod informer sees an add).
                        let changed = Changed::Pod {
                            old: None,
                            new: Some(new.clone()),
                        };
                        s2.queue
                            .move_all_for(&[ClusterEvent::AssignedPodAdd], &changed);
                    }
                } else if o2.contains(scheduler_name(new)) {
                    s2.queue.update(new.clone());
                }
            })
            .on_delete(move |p: &Arc<Pod>| {
                if assigned(p) {
                    s3.cache.lock().remove_pod(p);
                    let changed = Changed::Pod {
                        old: Some(p.clone()),
                        new: None,
                    };
                    s3.queue
                        .move_all_for(&[ClusterEvent::AssignedPodDelete], &changed);
                } else {
                    s3.queue.delete(p);
                    // Deleted while waiting at Permit: its binding cycle gives up.
                    let uid = p.metadata.uid.as_deref().unwrap_or_default();
                    for fwk in s3.profiles.values() {
                        fwk.waiting_pods().reject(uid);
                    }
                }
            }),
    );
    let nodes = factory.informer::<Node>();
    let (n1, n2, n3) = (sched.clone(), sched.clone(), sched.clone());
    nodes.add_handler(
        Funcs::new()
            .on_add(move |n: &Arc<Node>, _| {
                n1.cache.lock().set_node(n.clone());
                let changed = Changed::Node {
                    old: None,
                    new: n.clone(),
                };
                n1.queue.move_all_for(&[ClusterEvent::NodeAdd], &changed);
            })
            .on_update(move |old: &Arc<Node>, new: &Arc<Node>| {
                n2.cache.lock().set_node(new.clone());
                let events = node_events(old, new);
                let changed = Changed::Node {
                    old: Some(old.clone()),
                    new: new.clone(),
                };
                n2.queue.move_all_for(&events, &changed);
            })
            .on_delete(move |n: &Arc<Node>| {
                n3.cache
                    .lock()
                    .remove_node(n.metadata.name.as_deref().unwrap_or_default());
                n3.queue.move_all(ClusterEvent::NodeDelete);
            }),
    );
    // The storage objects the volume plugins read, when a plugin waits on them.
    let wanted: HashSet<ClusterEvent> = sched
        .profiles
        .values()
        .flat_map(|f| f.plugins().flat_map(|p| p.events().iter().copied()))
        .collect();
    use ClusterEvent as E;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, CSIStorageCapacity, StorageClass};
    if wanted.contains(&E::PvcAdd) || wanted.contains(&E::PvcUpdate) {
        requeue_on::<PersistentVolumeClaim>(factory, sched, Some(E::PvcAdd), Some(E::PvcUpdate));
    }
    if wanted.contains(&E::PvAdd) || wanted.contains(&E::PvUpdate) {
        requeue_on::<PersistentVolume>(factory, sched, Some(E::PvAdd), Some(E::PvUpdate));
    }
    if wanted.contains(&E::StorageClassAdd) || wanted.contains(&E::StorageClassUpdate) {
        let (add, update) = (Some(E::StorageClassAdd), Some(E::StorageClassUpdate));
        requeue_on::<StorageClass>(factory, sched, add, update);
    }
    if wanted.contains(&E::CsiNodeAdd) || wanted.contains(&E::CsiNodeUpdate) {
        requeue_on::<CSINode>(factory, sched, Some(E::CsiNodeAdd), Some(E::CsiNodeUpdate));
    }
    if wanted.contains(&E::CsiDriverUpdate) {
        requeue_on::<CSIDriver>(factory, sched, None, Some(E::CsiDriverUpdate));
    }
    if wanted.contains(&E::CsiStorageCapacityChange) {
        let e = Some(E::CsiStorageCapacityChange);
        requeue_on::<CSIStorageCapacity>(factory, sched, e, e);
    }
    pods
}

/// Moves unschedulable pods when a `K` is added or changed (not on the initial
/// list, which happens before scheduling starts).
fn requeue_on<K: client_base::informer::Object>(
    factory: &SharedInformerFactory,
    sched: &Arc<Scheduler>,
    add: Option<ClusterEvent>,
    update: Option<ClusterEvent>,
) {
    let (s1, s2) = (sched.clone(), sched.clone());
    let mut funcs = Funcs::new();
    if let Some(e) = add {
        funcs = funcs.on_add(move |_: &Arc<K>, initial| {
            if !initial {
                s1.queue.move_all(e);
            }
        });
    }
    if let Some(e) = update {
        funcs = funcs.on_update(move |old: &Arc<K>, new: &Arc<K>| {
            if old.meta().resource_version != new.meta().resource_version {
                s2.queue.move_all(e);
            }
        });
    }
    factory.informer::<K>().add_handler(funcs);
}

/// Runs kube-scheduler until SIGTERM, or until leadership is lost.
pub async fn run(opts: Options) -> Result<(), Error> {
    let cfg = opts.configuration()?;
    if let Some(path) = &opts.write_config_to {
        let text = config::to_yaml(&cfg);
        std::fs::write(path, text).map_err(|e| Error::WriteConfig {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        tracing::info!(file = %path.display(), "Wrote configuration");
        return Ok(());
    }
    let cc = &cfg.client_connection;
    let kubeconfig = (!cc.kubeconfig.is_empty()).then(|| std::path::PathBuf::from(&cc.kubeconfig));
    let kcfg = client_base::config::load(kubeconfig.as_deref(), opts.master.as_deref()).await?;
    let burst = cc.burst.max(0) as u32;
    let client = client_base::config::client(kcfg.clone(), cc.qps, burst)?;
    let registry = Registry::new();
    let metrics = metrics::Metrics::register(&registry)?;
    // Leader election has a client (and rate limiter) of its own, as upstream's.
    let election_client = client_base::config::client(kcfg, cc.qps, burst)?;
    let leader = Leader::new(election_client, cfg.leader_election.clone(), &registry)?;

    // Profiles, each with its plugins and its event recorder (reporting controller:
    // the profile's scheduler name, instance: name-hostname, as upstream's).
    let factory = Arc::new(SharedInformerFactory::new(client.clone()));
    let mut profiles = HashMap::new();
    let mut recorders = HashMap::new();
    let mut plugin_events: HashMap<String, Vec<ClusterEvent>> = HashMap::new();
    let mut percentages = HashMap::new();
    let host = client_base::leaderelection::hostname();
    let parallelizer = Arc::new(framework::parallelize::Parallelizer::new(
        cfg.parallelism.max(1) as usize,
    ));
    for p in &cfg.profiles {
        let recorder = client_base::events::Recorder::new(
            client.clone(),
            &p.scheduler_name,
            Some(format!("{}-{host}", p.scheduler_name)),
        );
        let handle = plugins::Handle {
            client: client.clone(),
            factory: factory.clone(),
            recorder: recorder.clone(),
            metrics: metrics.clone(),
            waiting: Arc::default(),
        };
        let built = config::build_profile(p, &handle)?;
        for (name, plugin) in &built.plugins {
            plugin_events.insert(name.clone(), plugin.events().to_vec());
        }
        let fwk = Framework::new(
            p.scheduler_name.clone(),
            built.plugins,
            built.points,
            metrics.clone(),
        )
        .with_waiting_pods(handle.waiting.clone())
        .with_parallelizer(parallelizer.clone());
        profiles.insert(p.scheduler_name.clone(), Arc::new(fwk));
        recorders.insert(p.scheduler_name.clone(), recorder);
        if let Some(pct) = p.percentage_of_nodes_to_score {
            percentages.insert(p.scheduler_name.clone(), pct);
        }
    }
    for p in &cfg.profiles {
        for n in p
            .plugins
            .iter()
            .flat_map(|ps| ps.multi_point.enabled.iter())
        {
            if plugins::NOT_YET.contains(&n.name.as_str()) {
                tracing::warn!(profile = %p.scheduler_name, plugin = %n.name, "plugin is not implemented in Keelson yet; skipping");
            }
        }
    }
    let gate_profiles = profiles.clone();
    let gate: Gate = Arc::new(move |pod: &Pod| {
        let fwk = gate_profiles.get(scheduler_name(pod))?;
        let s = fwk.run_pre_enqueue(pod);
        (!s.is_success()).then_some(s.plugin)
    });
    let queue = SchedulingQueue::new(
        cfg.pod_initial_backoff,
        cfg.pod_max_backoff,
        plugin_events,
        gate,
        metrics.clone(),
    );

    // Informers: pods that have not ended, and nodes.
    let pods = factory.informer_with::<Pod>(pods_watch());
    let sched = Scheduler::new(
        client.clone(),
        queue.clone(),
        profiles,
        recorders,
        metrics,
        cfg.percentage_of_nodes_to_score,
        percentages,
        pods,
    );
    // No plugin reads managedFields: drop them, as upstream's scheduler does.
    sched
        .pods
        .set_transform(client_base::informer::strip_managed_fields::<Pod>);
    factory
        .informer::<Node>()
        .set_transform(client_base::informer::strip_managed_fields::<Node>);
    // Queueing hints: the plugin of the pod's own profile answers.
    let hint_profiles = sched.profiles.clone();
    queue.set_hinter(Arc::new(move |plugin, event, pod, changed| {
        hint_profiles
            .get(scheduler_name(&pod.pod))
            .and_then(|f| f.plugin(plugin))
            .map_or(QueueingHint::Queue, |p| {
                p.queueing_hint(event, pod, changed)
            })
    }));
    add_handlers(&factory, &sched);

    // The secure port.
    if opts.secure_port != 0 {
        let checks = leader
            .health_check()
            .map(|c| ("leaderElection", c))
            .into_iter()
            .collect();
        client_base::delegated::serve_secure(
            "kube-scheduler",
            SocketAddr::new(opts.bind_address, opts.secure_port),
            &opts.serving,
            &opts.delegation,
            registry.clone(),
            checks,
        )
        .await?;
    }

    factory.start();
    tokio::spawn(queue.clone().run_flushes());
    let work = async {
        factory.wait_for_cache_sync().await;
        tracing::info!("caches populated; scheduling");
        sched.clone().run().await;
    };
    let ended = leader.run(component_base::signal::shutdown(), work).await;
    queue.close();
    match ended? {
        Ended::Shutdown | Ended::Finished => Ok(()),
    }
}
