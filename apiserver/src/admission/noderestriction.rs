//! NodeRestriction: a kubelet (`system:node:<name>`) may only touch its own Node and
//! the pods bound to it, as upstream's plugin:
//!
//! - pods: create only mirror pods bound to itself that reference no secrets,
//!   configmaps, claims or service account; delete and evict only pods bound to
//!   itself; update status only of pods bound to itself;
//! - nodes: create and update only its own Node, without setting
//!   `node-restriction.kubernetes.io/` labels or changing its taints after creation.

use futures::future::BoxFuture;
use serde_json::Value;

use super::pods::forbidden;
use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::authz::node::{node_name, pod_refs};
use crate::error::ApiError;

/// The plugin.
pub struct NodeRestriction;

const MIRROR: &str = "kubernetes.io/config.mirror";

fn bound_to(pod: Option<&Value>) -> &str {
    pod.and_then(|p| p.pointer("/spec/nodeName"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn pod_rules(node: &str, req: &AdmissionRequest) -> Result<(), String> {
    match (req.operation, req.subresource.as_deref()) {
        (Operation::Create, None) => {
            let pod = req.object.as_ref();
            let annotated = pod
                .and_then(|p| {
                    p.pointer(&format!(
                        "/metadata/annotations/{}",
                        MIRROR.replace('/', "~1")
                    ))
                })
                .is_some();
            if !annotated {
                return Err(format!("node {node:?} can only create mirror pods"));
            }
            if bound_to(pod) != node {
                return Err(format!(
                    "node {node:?} can only create pods with spec.nodeName set to itself"
                ));
            }
            let p = pod.cloned().unwrap_or(Value::Null);
            if p.pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return Err(format!(
                    "node {node:?} can not create pods that reference a service account"
                ));
            }
            for (kind, what) in [
                ("Secret", "secrets"),
                ("ConfigMap", "configmaps"),
                ("PersistentVolumeClaim", "persistentvolumeclaims"),
            ] {
                if !pod_refs(&p, kind).is_empty() {
                    return Err(format!(
                        "node {node:?} can not create pods that reference {what}"
                    ));
                }
            }
            Ok(())
        }
        (Operation::Delete, None) => {
            if bound_to(req.old_object.as_ref()) != node {
                return Err(format!(
                    "node {node:?} can only delete pods with spec.nodeName set to itself"
                ));
            }
            Ok(())
        }
        (Operation::Update, Some("status")) => {
            if bound_to(req.old_object.as_ref()) != node {
                return Err(format!(
                    "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                ));
            }
            Ok(())
        }
        (_, Some("eviction")) => {
            if bound_to(req.old_object.as_ref().or(req.object.as_ref())) != node {
                return Err(format!(
                    "node {node:?} can only evict pods with spec.nodeName set to itself"
                ));
            }
            Ok(())
        }
        (Operation::Update, None) => Err(format!("node {node:?} can only update pod status")),
        _ => Ok(()),
    }
}

fn node_rules(node: &str, req: &AdmissionRequest) -> Result<(), String> {
    let name = if req.name.is_empty() {
        req.object.as_ref().map(crate::meta::name).unwrap_or("")
    } else {
        &req.name
    };
    if name != node {
        return Err(format!(
            "node {node:?} is not allowed to modify node {name:?}"
        ));
    }
    let labels = |o: Option<&Value>| {
        o.and_then(|o| o.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let new = labels(req.object.as_ref());
    let old = labels(req.old_object.as_ref());
    let changed: Vec<&String> = new
        .keys()
        .chain(old.keys())
        .filter(|k| new.get(*k) != old.get(*k))
        .filter(|k| {
            k.split_once('/').is_some_and(|(p, _)| {
                p == "node-restriction.kubernetes.io"
                    || p.ends_with(".node-restriction.kubernetes.io")
            })
        })
        .collect();
    if !changed.is_empty() {
        return Err(format!(
            "is not allowed to modify labels: {}",
            changed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if req.operation == Operation::Update
        && req.subresource.is_none()
        && req.object.as_ref().and_then(|o| o.pointer("/spec/taints"))
            != req
                .old_object
                .as_ref()
                .and_then(|o| o.pointer("/spec/taints"))
    {
        return Err(format!("node {node:?} is not allowed to modify taints"));
    }
    Ok(())
}

impl Plugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }
    fn validate<'a>(
        &'a self,
        _api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let Some(node) = node_name(&req.user) else {
                return Ok(());
            };
            let r = match (req.resource.group, req.resource.kind) {
                ("", "Pod") => pod_rules(node, req),
                ("", "Node") => node_rules(node, req),
                _ => Ok(()),
            };
            r.map_err(|why| forbidden(req, &why))
        })
    }
}
