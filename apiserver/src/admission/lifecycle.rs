//! NamespaceLifecycle: no new objects in a missing or terminating namespace, and the
//! system namespaces cannot be deleted.

use futures::future::BoxFuture;
use serde_json::Value;

use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::catalog::catalog;
use crate::error::{ApiError, GroupResource};
use crate::meta;

/// Namespaces that can never be deleted.
const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// Upstream's NamespaceLifecycle: no new objects in a missing or terminating
/// namespace, and the system namespaces cannot be deleted.
pub struct NamespaceLifecycle;

impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }
    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let res = req.resource;
            if res.kind == "Namespace"
                && req.operation == Operation::Delete
                && IMMORTAL.contains(&req.name.as_str())
            {
                return Err(ApiError::Forbidden {
                    resource: Some(GroupResource::new("", "namespaces")),
                    name: req.name.clone(),
                    message: format!(
                        "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                        req.name
                    ),
                });
            }
            if !res.namespaced || req.operation != Operation::Create || req.subresource.is_some() {
                return Ok(());
            }
            let nsr = catalog().get("", "v1", "namespaces").expect("namespaces");
            let ns = match api.registry.get(nsr, "", &req.namespace).await {
                Ok(ns) => ns,
                Err(ApiError::NotFound { .. }) => {
                    return Err(ApiError::not_found(&nsr.gr(), &req.namespace));
                }
                Err(e) => return Err(e),
            };
            let terminating = meta::field(&ns, "deletionTimestamp").is_some()
                || ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
            // Events about the namespace's own teardown are still accepted.
            if terminating && res.kind != "Event" {
                let name = req
                    .object
                    .as_ref()
                    .map(|o| meta::name(o).to_owned())
                    .unwrap_or_default();
                return Err(ApiError::Forbidden {
                    resource: Some(res.gr()),
                    name,
                    message: format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                        res.gr(),
                        req.object.as_ref().map(meta::name).unwrap_or(""),
                        req.namespace
                    ),
                });
            }
            Ok(())
        })
    }
}
