//! The small plugins: PrioritySort, SchedulingGates, NodeUnschedulable, NodeName
//! and DefaultBinder.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod, Taint};
use kube::api::{Api, PostParams};

use crate::framework::types::{NodeInfo, PodInfo};
use crate::framework::{
    BindPlugin, Changed, ClusterEvent, CycleState, FilterPlugin, Plugin, PreEnqueuePlugin,
    QueueSortPlugin, QueuedPodInfo, QueueingHint, Status,
};

/// A pod's priority (0 when unset).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// PrioritySort: higher priority first, then earlier in the queue.
pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        "PrioritySort"
    }
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        Some(self)
    }
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        let (pa, pb) = (priority(&a.info.pod), priority(&b.info.pod));
        pa > pb || (pa == pb && a.timestamp < b.timestamp)
    }
}

/// SchedulingGates: a pod with `spec.schedulingGates` waits outside the active
/// queue until they are all removed.
pub struct SchedulingGates;

impl Plugin for SchedulingGates {
    fn name(&self) -> &'static str {
        "SchedulingGates"
    }
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        Some(self)
    }
}

impl PreEnqueuePlugin for SchedulingGates {
    fn pre_enqueue(&self, pod: &Pod) -> Status {
        let gates: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .into_iter()
            .flatten()
            .map(|g| g.name.clone())
            .collect();
        if gates.is_empty() {
            return Status::success();
        }
        Status::new(
            crate::framework::Code::UnschedulableAndUnresolvable,
            [format!(
                "waiting for scheduling gates: [{}]",
                gates.join(" ")
            )],
        )
    }
}

/// The reason NodeUnschedulable gives.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";

/// NodeUnschedulable: nodes with `spec.unschedulable` take only pods tolerating
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeSpecUnschedulableChange,
            ClusterEvent::NodeTaintChange,
        ]
    }
    fn queueing_hint(&self, _: ClusterEvent, pod: &PodInfo, changed: &Changed) -> QueueingHint {
        super::helper::node_now_passes(self, pod, changed)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = node.node.as_ref() else {
            return Status::unresolvable("node not found");
        };
        if !n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
        {
            return Status::success();
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        let tolerations = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        if tolerations
            .iter()
            .any(|t| client_base::selectors::tolerates(t, &taint))
        {
            return Status::success();
        }
        Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
    }
}

/// The reason NodeName gives.
pub const ERR_REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";

/// NodeName: a pod naming a node (`spec.nodeName`) fits only there.
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd]
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(want) if !want.is_empty() && want != node.name() => {
                Status::unresolvable(ERR_REASON_NODE_NAME)
            }
            _ => Status::success(),
        }
    }
}

/// DefaultBinder: binds through the `pods/binding` subresource.
pub struct DefaultBinder {
    client: Arc<kube::Client>,
}

impl DefaultBinder {
    /// Binds with `client`.
    pub fn new(client: kube::Client) -> Self {
        DefaultBinder {
            client: Arc::new(client),
        }
    }
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        "DefaultBinder"
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}

impl BindPlugin for DefaultBinder {
    fn bind<'a>(
        &'a self,
        _state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let ns = pod.pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.pod.metadata.name.clone().unwrap_or_default();
            let binding = Binding {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid: pod.pod.metadata.uid.clone(),
                    ..Default::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(node.to_owned()),
                    ..Default::default()
                },
            };
            let api: Api<Pod> = Api::namespaced((*self.client).clone(), &ns);
            match api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                Ok(_) => Status::success(),
                Err(e) => Status::error(e),
            }
        })
    }
}
