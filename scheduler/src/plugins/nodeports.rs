//! NodePorts: a pod's host ports must be free on the node (a wildcard host IP
//! conflicts with every IP on the same protocol and port).

use crate::framework::types::{HostPort, NodeInfo, PodInfo, host_ports};
use crate::framework::{
    Changed, ClusterEvent, CycleState, FilterPlugin, Plugin, QueueingHint, Status,
};

/// The reason NodePorts gives.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// NodePorts.
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::AssignedPodDelete]
    }
    fn queueing_hint(&self, _: ClusterEvent, pod: &PodInfo, changed: &Changed) -> QueueingHint {
        // Upstream: a deleted pod helps only if it held a port this pod wants.
        let Changed::Pod {
            old: Some(deleted),
            new: None,
        } = changed
        else {
            return QueueingHint::Queue;
        };
        let freed = host_ports(deleted);
        if host_ports(&pod.pod)
            .iter()
            .any(|w| freed.iter().any(|u| conflicts(w, u)))
        {
            QueueingHint::Queue
        } else {
            QueueingHint::Skip
        }
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
}

fn conflicts(want: &HostPort, used: &HostPort) -> bool {
    want.port == used.port
        && want.protocol == used.protocol
        && (want.ip == used.ip || want.ip == "0.0.0.0" || used.ip == "0.0.0.0")
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let wanted = host_ports(&pod.pod);
        if wanted
            .iter()
            .any(|w| node.used_ports.keys().any(|u| conflicts(w, u)))
        {
            return Status::unschedulable(ERR_REASON);
        }
        Status::success()
    }
}
