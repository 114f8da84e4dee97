//! The scheduling framework, as upstream's `pkg/scheduler/framework`: the
//! extension points plugins implement, the [`Status`] they answer with, the
//! per-cycle [`CycleState`], and the per-profile runtime ([`runtime::Framework`])
//! that calls them in order.
//!
//! A plugin is one object implementing [`Plugin`] and answering `as_filter()`,
//! `as_score()`, … for the extension points it serves; a profile's configuration
//! decides at which points each enabled plugin is called, and with which weight.
//! Plugins see the cluster only as [`types::NodeInfo`] snapshots and a
//! [`CycleState`]; they never reach into the queue or the cache.

pub mod parallelize;
pub mod runtime;
pub mod types;
pub mod waiting;

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;

use self::types::{NodeInfo, PodInfo};

/// The highest score a Score plugin gives after normalization.
pub const MAX_NODE_SCORE: i64 = 100;
/// The lowest.
pub const MIN_NODE_SCORE: i64 = 0;

/// How an extension point answered, as upstream's `framework.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// Go on.
    Success,
    /// An internal failure (retried with backoff).
    Error,
    /// Not here now; preemption may help.
    Unschedulable,
    /// Not here, and preemption cannot help.
    UnschedulableAndUnresolvable,
    /// Permit: wait for approval.
    Wait,
    /// PreFilter/PreScore: this plugin has nothing to do for this pod.
    Skip,
    /// Not schedulable now for reasons outside the cluster state (PreEnqueue gates).
    Pending,
}

impl Code {
    /// Upstream's name (the `status` label of metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::Error => "Error",
            Code::Unschedulable => "Unschedulable",
            Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
            Code::Wait => "Wait",
            Code::Skip => "Skip",
            Code::Pending => "Pending",
        }
    }
}

/// A plugin's answer: a code, the reasons shown to users, and who said it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The code.
    pub code: Code,
    /// Reasons, in upstream's words (`Insufficient cpu`).
    pub reasons: Vec<String>,
    /// The plugin that answered, set by the runtime.
    pub plugin: String,
}

impl Default for Status {
    fn default() -> Self {
        Status::success()
    }
}

impl Status {
    /// Success.
    pub fn success() -> Self {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: String::new(),
        }
    }
    /// `code` with `reasons`.
    pub fn new(code: Code, reasons: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Status {
            code,
            reasons: reasons.into_iter().map(Into::into).collect(),
            plugin: String::new(),
        }
    }
    /// Unschedulable for `reason`.
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Status::new(Code::Unschedulable, [reason.into()])
    }
    /// Unschedulable and unresolvable for `reason`.
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Status::new(Code::UnschedulableAndUnresolvable, [reason.into()])
    }
    /// An internal error.
    pub fn error(message: impl fmt::Display) -> Self {
        Status::new(Code::Error, [message.to_string()])
    }
    /// Skip.
    pub fn skip() -> Self {
        Status::new(Code::Skip, Vec::<String>::new())
    }
    /// With `plugin` as its author.
    pub fn with_plugin(mut self, plugin: &str) -> Self {
        self.plugin = plugin.to_owned();
        self
    }
    /// Whether it is a success.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
    /// Whether it rejects the pod (unschedulable, unresolvable or pending).
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable | Code::Pending
        )
    }
    /// The reasons joined as upstream's `Status.Message`.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// Data plugins keep for one scheduling cycle, keyed by plugin-chosen names.
#[derive(Clone, Default)]
pub struct CycleState {
    data: HashMap<&'static str, Arc<dyn Any + Send + Sync>>,
    /// Every node of this cycle's snapshot (plugins that count across the cluster,
    /// as upstream's `SharedLister().NodeInfos()`).
    pub snapshot: Arc<Vec<Arc<NodeInfo>>>,
    /// Filter plugins whose PreFilter answered Skip.
    pub skip_filter: HashSet<String>,
    /// Score plugins whose PreScore answered Skip.
    pub skip_score: HashSet<String>,
    /// Whether this cycle records `scheduler_plugin_execution_duration_seconds`
    /// (upstream samples 10% of cycles).
    pub record_plugin_metrics: bool,
}

impl CycleState {
    /// Stores `value` under `key`.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Arc::new(value));
    }
    /// The value under `key`, if it has type `T`.
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref::<T>())
    }
    /// A mutable value under `key` (copied first if shared with a clone).
    pub fn read_mut<T: Any + Send + Sync + Clone>(&mut self, key: &'static str) -> Option<&mut T> {
        let v = self.data.get_mut(key)?;
        v.downcast_ref::<T>()?;
        if Arc::get_mut(v).is_none() {
            let copy: T = v.downcast_ref::<T>()?.clone();
            *v = Arc::new(copy);
        }
        Arc::get_mut(v)?.downcast_mut::<T>()
    }
}

/// A node's score from one plugin, or the weighted total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeScore {
    /// The node.
    pub name: String,
    /// The score.
    pub score: i64,
}

/// What PreFilter may narrow the nodes to (`None`: every node).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    /// The only nodes worth filtering.
    pub node_names: Option<HashSet<String>>,
}

/// A kind of change in the cluster that may make unschedulable pods schedulable,
/// as upstream's `ClusterEvent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    /// A node was added.
    NodeAdd,
    /// A node's labels changed.
    NodeLabelChange,
    /// A node's taints changed.
    NodeTaintChange,
    /// A node's allocatable grew.
    NodeAllocatableChange,
    /// A node became schedulable (`spec.unschedulable` cleared).
    NodeSpecUnschedulableChange,
    /// A node's other fields changed (images, conditions).
    NodeOtherChange,
    /// A pod bound to a node was added.
    AssignedPodAdd,
    /// A pod bound to a node changed (labels, requests).
    AssignedPodUpdate,
    /// A pod bound to a node was deleted.
    AssignedPodDelete,
    /// A node was deleted.
    NodeDelete,
    /// A PersistentVolumeClaim was added.
    PvcAdd,
    /// A PersistentVolumeClaim changed.
    PvcUpdate,
    /// A PersistentVolume was added.
    PvAdd,
    /// A PersistentVolume changed.
    PvUpdate,
    /// A StorageClass was added.
    StorageClassAdd,
    /// A StorageClass changed.
    StorageClassUpdate,
    /// A CSINode was added.
    CsiNodeAdd,
    /// A CSINode changed.
    CsiNodeUpdate,
    /// A CSIDriver changed.
    CsiDriverUpdate,
    /// A CSIStorageCapacity was added or changed.
    CsiStorageCapacityChange,
    /// Anything (a flush of pods left unschedulable too long).
    Any,
}

impl ClusterEvent {
    /// Upstream's event label (`scheduler_queue_incoming_pods_total{event}`).
    pub fn label(self) -> &'static str {
        match self {
            ClusterEvent::NodeAdd => "NodeAdd",
            ClusterEvent::NodeLabelChange => "NodeLabelChange",
            ClusterEvent::NodeTaintChange => "NodeTaintChange",
            ClusterEvent::NodeAllocatableChange => "NodeAllocatableChange",
            ClusterEvent::NodeSpecUnschedulableChange => "NodeSpecUnschedulableChange",
            ClusterEvent::NodeOtherChange => "NodeUpdate",
            ClusterEvent::AssignedPodAdd => "AssignedPodAdd",
            ClusterEvent::AssignedPodUpdate => "AssignedPodUpdate",
            ClusterEvent::AssignedPodDelete => "AssignedPodDelete",
            ClusterEvent::NodeDelete => "NodeDelete",
            ClusterEvent::PvcAdd => "PersistentVolumeClaimAdd",
            ClusterEvent::PvcUpdate => "PersistentVolumeClaimUpdate",
            ClusterEvent::PvAdd => "PersistentVolumeAdd",
            ClusterEvent::PvUpdate => "PersistentVolumeUpdate",
            ClusterEvent::StorageClassAdd => "StorageClassAdd",
            ClusterEvent::StorageClassUpdate => "StorageClassUpdate",
            ClusterEvent::CsiNodeAdd => "CSINodeAdd",
            ClusterEvent::CsiNodeUpdate => "CSINodeUpdate",
            ClusterEvent::CsiDriverUpdate => "CSIDriverUpdate",
            ClusterEvent::CsiStorageCapacityChange => "CSIStorageCapacityUpdate",
            ClusterEvent::Any => "UnschedulableTimeout",
        }
    }
}

/// What a cluster event changed, for queueing hints: the object before and after.
#[derive(Clone, Default)]
pub enum Changed {
    /// Not known (flushes, storage events).
    #[default]
    Nothing,
    /// A node was added (`old` is `None`) or updated.
    Node {
        /// Before.
        old: Option<Arc<k8s_openapi::api::core::v1::Node>>,
        /// After.
        new: Arc<k8s_openapi::api::core::v1::Node>,
    },
    /// A bound pod was added (`old` is `None`), updated, or deleted (`new` is `None`).
    Pod {
        /// Before.
        old: Option<Arc<Pod>>,
        /// After.
        new: Option<Arc<Pod>>,
    },
}

/// Upstream's `QueueingHint`: whether an event may make a rejected pod schedulable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueingHint {
    /// Retry the pod.
    Queue,
    /// The event cannot help it.
    Skip,
}

/// Every plugin: its name, the extension points it serves, and the cluster events
/// that may make a pod it rejected schedulable.
pub trait Plugin: Send + Sync {
    /// Upstream's plugin name.
    fn name(&self) -> &'static str;
    /// Events that may resolve this plugin's rejections.
    fn events(&self) -> &'static [ClusterEvent] {
        &[]
    }
    /// Upstream's `QueueingHintFn`: whether `event` about `changed` may make
    /// `pod`, which this plugin rejected, schedulable. Plugins without a hint (and
    /// a hint unsure of the change) answer [`QueueingHint::Queue`].
    fn queueing_hint(
        &self,
        _event: ClusterEvent,
        _pod: &PodInfo,
        _changed: &Changed,
    ) -> QueueingHint {
        QueueingHint::Queue
    }
    /// PreEnqueue.
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        None
    }
    /// QueueSort.
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        None
    }
    /// PreFilter.
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        None
    }
    /// Filter.
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        None
    }
    /// PostFilter.
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        None
    }
    /// PreScore.
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        None
    }
    /// Score (and NormalizeScore).
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        None
    }
    /// Reserve and Unreserve.
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        None
    }
    /// Permit.
    fn as_permit(&self) -> Option<&dyn PermitPlugin> {
        None
    }
    /// PreBind.
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        None
    }
    /// Bind.
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        None
    }
    /// PostBind.
    fn as_post_bind(&self) -> Option<&dyn PostBindPlugin> {
        None
    }
}

/// Decides whether a pod may enter the active queue at all.
pub trait PreEnqueuePlugin: Send + Sync {
    /// Success to enqueue; anything else keeps the pod gated.
    fn pre_enqueue(&self, pod: &Pod) -> Status;
}

/// A queued pod, as QueueSort compares them.
#[derive(Clone, Debug)]
pub struct QueuedPodInfo {
    /// The pod.
    pub info: PodInfo,
    /// When it entered the queue (for ordering), in seconds since the queue began.
    pub timestamp: Duration,
    /// How many times it was tried.
    pub attempts: u32,
    /// When it was first tried, for the SLI (seconds since the queue began).
    pub initial_attempt: Option<Duration>,
    /// Plugins that rejected it last time.
    pub unschedulable_plugins: HashSet<String>,
    /// Plugins whose PreEnqueue keeps it gated.
    pub gating_plugin: Option<String>,
}

/// Orders the active queue.
pub trait QueueSortPlugin: Send + Sync {
    /// Whether `a` goes before `b`.
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool;
}

/// Checks and precomputes once per cycle.
pub trait PreFilterPlugin: Send + Sync {
    /// Runs before filtering; may narrow the nodes.
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status);
    /// Preemption's "what if `victim` were added to `node`" on the precomputed state.
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _victim: &PodInfo,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }
    /// Preemption's "what if `victim` were removed from `node`".
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _victim: &PodInfo,
        _node: &NodeInfo,
    ) -> Status {
        Status::success()
    }
}

/// Whether a pod fits a node.
pub trait FilterPlugin: Send + Sync {
    /// Success when the pod may run on `node`.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Why each node was rejected, for PostFilter and the FitError message.
pub type NodeStatuses = HashMap<String, Status>;

/// Runs when no node fits (preemption). It gets the profile's framework, to run
/// the filters on what-if copies of nodes, as upstream's framework handle.
pub trait PostFilterPlugin: Send + Sync {
    /// May nominate a node; the status explains why not.
    fn post_filter<'a>(
        &'a self,
        fwk: &'a runtime::Framework,
        state: &'a CycleState,
        pod: &'a PodInfo,
        statuses: &'a NodeStatuses,
    ) -> BoxFuture<'a, (Option<String>, Status)>;
}

/// Precomputes for scoring.
pub trait PreScorePlugin: Send + Sync {
    /// Runs once over the feasible nodes.
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Status;
}

/// Ranks feasible nodes.
pub trait ScorePlugin: Send + Sync {
    /// The raw score of `node`.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status);
    /// Maps raw scores to `[0, 100]`, when the plugin needs it.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [NodeScore]) -> Status {
        Status::success()
    }
}

/// Reserves resources for a chosen node (volume binding), and releases them.
pub trait ReservePlugin: Send + Sync {
    /// Reserve.
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    /// Releases what `reserve` took (must be idempotent).
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

/// Approves, rejects or delays binding.
pub trait PermitPlugin: Send + Sync {
    /// Success, rejection, or [`Code::Wait`] with a timeout.
    fn permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> (Status, Duration);
}

/// Runs before binding (volume binding's API writes).
pub trait PreBindPlugin: Send + Sync {
    /// PreBind.
    fn pre_bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Binds the pod; [`Code::Skip`] passes to the next bind plugin.
pub trait BindPlugin: Send + Sync {
    /// Bind.
    fn bind<'a>(
        &'a self,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status>;
}

/// Told after a successful bind.
pub trait PostBindPlugin: Send + Sync {
    /// PostBind.
    fn post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str);
}
