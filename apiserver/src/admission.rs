//! The admission chain: mutating plugins run first, then validating ones, each in
//! upstream's order, between authorization and storage.
//!
//! Plugins implement [`Plugin`]. The chain so far holds NamespaceLifecycle; the
//! admission issue adds the rest behind the same trait, configured by
//! `--enable-admission-plugins` and `--disable-admission-plugins`.

use futures::future::BoxFuture;
use serde_json::Value;

use crate::api::Api;
use crate::authn::UserInfo;
use crate::catalog::{Resource, catalog};
use crate::error::{ApiError, GroupResource};
use crate::meta;

/// The operation being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Create.
    Create,
    /// Update or patch.
    Update,
    /// Delete.
    Delete,
}

/// What a plugin sees.
#[derive(Clone, Debug)]
pub struct AdmissionRequest {
    /// The operation.
    pub operation: Operation,
    /// The resource.
    pub resource: &'static Resource,
    /// The subresource, if any.
    pub subresource: Option<String>,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The new object (create, update).
    pub object: Option<Value>,
    /// The old object (update, delete).
    pub old_object: Option<Value>,
    /// Who asks.
    pub user: UserInfo,
    /// dryRun=All.
    pub dry_run: bool,
}

/// An admission plugin.
pub trait Plugin: Send + Sync {
    /// Upstream's plugin name.
    fn name(&self) -> &'static str;
    /// Mutates the object; the default leaves it alone.
    fn admit<'a>(
        &'a self,
        _api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move { Ok(req.object.clone()) })
    }
    /// Accepts or refuses the request; the default accepts.
    fn validate<'a>(
        &'a self,
        _api: &'a Api,
        _req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The configured plugins, in order.
pub struct Chain {
    plugins: Vec<Box<dyn Plugin>>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            plugins: vec![Box::new(NamespaceLifecycle)],
        }
    }
}

impl Chain {
    /// Runs every mutating step; returns the object to store.
    pub async fn admit(&self, api: &Api, mut req: AdmissionRequest) -> Result<Value, ApiError> {
        for p in &self.plugins {
            req.object = p.admit(api, &req).await?;
        }
        Ok(req.object.unwrap_or(Value::Null))
    }
    /// Runs every validating step.
    pub async fn validate(&self, api: &Api, req: AdmissionRequest) -> Result<(), ApiError> {
        for p in &self.plugins {
            p.validate(api, &req).await?;
        }
        Ok(())
    }
}

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
