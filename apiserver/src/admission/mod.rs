//! The admission chain: mutating plugins run first, then validating ones, each in
//! upstream's order, between authorization and storage.
//!
//! The chain is chosen as upstream's is: the default-on plugins, plus
//! `--enable-admission-plugins`, minus `--disable-admission-plugins`, always run in
//! [`ORDER`] (upstream's `AllOrderedPlugins`) whatever order the flags list them in.
//! `--admission-control-config-file` (an `AdmissionConfiguration`) hands plugins their
//! configuration (`PodSecurityConfiguration` for PodSecurity). A plugin upstream has
//! and Keelson does not yet is accepted by name and logged at start as not enforced,
//! so that kubeadm's command lines start; unknown names are refused with upstream's
//! error.
//!
//! Plugins implement [`Plugin`]: `admit` may change the object (mutating phase),
//! `validate` may only refuse it (validating phase).

pub mod certificates;
pub mod lifecycle;
pub mod limitranger;
pub mod noderestriction;
pub mod pods;
pub mod podsecurity;
pub mod resourcequota;
pub mod serviceaccount;
pub mod storage;
pub mod validatingpolicy;
pub mod webhook;

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::api::Api;
use crate::authn::UserInfo;
use crate::catalog::Resource;
use crate::error::ApiError;

pub use lifecycle::NamespaceLifecycle;
pub use pods::system_priority_classes;

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

impl Operation {
    /// Upstream's name (`CREATE`, `UPDATE`, `DELETE`), as AdmissionReview carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
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
    /// Warnings for the client (`Warning` headers on the reply).
    pub warnings: std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
    /// Audit annotations for the request's audit event (PodSecurity's audit mode,
    /// a policy's Audit action).
    pub audit_annotations: std::sync::Arc<parking_lot::Mutex<Vec<(String, String)>>>,
}

impl AdmissionRequest {
    /// Upstream's `IsExemptAdmissionConfigurationResource`: webhooks and policies
    /// never see writes to webhook configurations and policies themselves, so that
    /// a broken one can always be fixed.
    pub fn is_admission_configuration(&self) -> bool {
        self.resource.group == "admissionregistration.k8s.io"
            && matches!(
                self.resource.kind,
                "ValidatingWebhookConfiguration"
                    | "MutatingWebhookConfiguration"
                    | "ValidatingAdmissionPolicy"
                    | "ValidatingAdmissionPolicyBinding"
                    | "MutatingAdmissionPolicy"
                    | "MutatingAdmissionPolicyBinding"
            )
    }

    /// Records an audit annotation; a key set twice keeps its first value, as
    /// upstream's `AddAnnotation`.
    pub fn annotate(&self, key: &str, value: String) {
        let mut a = self.audit_annotations.lock();
        if !a.iter().any(|(k, _)| k == key) {
            a.push((key.to_owned(), value));
        }
    }
}

impl AdmissionRequest {
    /// Whether this is `kind` (core group unless given) without a subresource.
    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.resource.group == group && self.resource.kind == kind && self.subresource.is_none()
    }
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

/// Upstream's `AllOrderedPlugins`: every plugin it knows, in the order they run.
pub const ORDER: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceLifecycle",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodSecurity",
    "PodNodeSelector",
    "Priority",
    "DefaultTolerationSeconds",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DenyServiceExternalIPs",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "AlwaysDeny",
];

/// The plugins on unless disabled, as upstream's `DefaultOffAdmissionPlugins`
/// complement.
pub const DEFAULT_ON: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
];

/// Errors choosing or configuring plugins.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag names a plugin upstream does not have.
    #[error("{flag} plugin {name:?} is unknown")]
    Unknown {
        /// The flag.
        flag: &'static str,
        /// The name.
        name: String,
    },
    /// A plugin is both enabled and disabled.
    #[error(
        "{0} plugins appear in both --enable-admission-plugins and --disable-admission-plugins"
    )]
    Both(String),
    /// The configuration file is unreadable or malformed.
    #[error("failed to read plugin config: {0}")]
    File(String),
}

/// The enabled plugin names, in upstream's order.
pub fn enabled(enable: &[String], disable: &[String]) -> Result<Vec<&'static str>, ConfigError> {
    let known =
        |flag: &'static str, names: &[String]| -> Result<BTreeSet<&'static str>, ConfigError> {
            names
                .iter()
                .map(|n| n.trim())
                .filter(|n| !n.is_empty())
                .map(|n| {
                    ORDER
                        .iter()
                        .find(|o| **o == n)
                        .copied()
                        .ok_or_else(|| ConfigError::Unknown {
                            flag,
                            name: n.to_owned(),
                        })
                })
                .collect()
        };
    let on = known("enable-admission-plugins", enable)?;
    let off = known("disable-admission-plugins", disable)?;
    let both: Vec<&str> = on.intersection(&off).copied().collect();
    if !both.is_empty() {
        return Err(ConfigError::Both(format!("{both:?}")));
    }
    Ok(ORDER
        .iter()
        .copied()
        .filter(|p| (DEFAULT_ON.contains(p) || on.contains(p)) && !off.contains(p))
        .collect())
}

/// `--admission-control-config-file`: each plugin's configuration, by name.
pub fn plugin_configs(path: Option<&std::path::Path>) -> Result<Vec<(String, Value)>, ConfigError> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File(format!("{}: {e}", path.display())))?;
    let v: Value = serde_saphyr::from_str(&text).map_err(|e| ConfigError::File(e.to_string()))?;
    if v.get("kind").and_then(Value::as_str) != Some("AdmissionConfiguration") {
        return Err(ConfigError::File(format!(
            "{}: kind must be AdmissionConfiguration",
            path.display()
        )));
    }
    let mut out = Vec::new();
    for p in v
        .get("plugins")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let config = match (
            p.get("configuration"),
            p.get("path").and_then(Value::as_str),
        ) {
            (Some(c), _) if !c.is_null() => c.clone(),
            (_, Some(file)) => {
                let file = path
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(file);
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| ConfigError::File(format!("{}: {e}", file.display())))?;
                serde_saphyr::from_str(&text).map_err(|e| ConfigError::File(e.to_string()))?
            }
            _ => Value::Null,
        };
        out.push((name, config));
    }
    Ok(out)
}

/// The configured plugins, in order.
pub struct Chain {
    plugins: Vec<Box<dyn Plugin>>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::build(&enabled(&[], &[]).expect("defaults are known"), &[]).expect("defaults build")
    }
}

impl Chain {
    /// Builds the named plugins (in the given order) with their configurations.
    pub fn build(
        names: &[&'static str],
        configs: &[(String, Value)],
    ) -> Result<Chain, ConfigError> {
        let config = |name: &str| {
            configs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.clone())
                .unwrap_or(Value::Null)
        };
        let mut plugins: Vec<Box<dyn Plugin>> = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            let p: Option<Box<dyn Plugin>> = match *name {
                "AlwaysAdmit" => None,
                "AlwaysDeny" => Some(Box::new(pods::AlwaysDeny)),
                "NamespaceLifecycle" => Some(Box::new(NamespaceLifecycle)),
                "TaintNodesByCondition" => Some(Box::new(pods::TaintNodesByCondition)),
                "LimitRanger" => Some(Box::new(limitranger::LimitRanger)),
                "ServiceAccount" => Some(Box::new(serviceaccount::ServiceAccount)),
                "NodeRestriction" => Some(Box::new(noderestriction::NodeRestriction)),
                "PodSecurity" => Some(Box::new(
                    podsecurity::PodSecurity::new(&config("PodSecurity"))
                        .map_err(ConfigError::File)?,
                )),
                "Priority" => Some(Box::new(pods::Priority)),
                "DefaultTolerationSeconds" => Some(Box::new(pods::DefaultTolerationSeconds)),
                "RuntimeClass" => Some(Box::new(pods::RuntimeClass)),
                "DefaultStorageClass" => Some(Box::new(storage::DefaultStorageClass)),
                "StorageObjectInUseProtection" => {
                    Some(Box::new(storage::StorageObjectInUseProtection))
                }
                "PersistentVolumeClaimResize" => {
                    Some(Box::new(storage::PersistentVolumeClaimResize))
                }
                "CertificateApproval" => Some(Box::new(certificates::CertificateApproval)),
                "CertificateSigning" => Some(Box::new(certificates::CertificateSigning)),
                "CertificateSubjectRestriction" => {
                    Some(Box::new(certificates::CertificateSubjectRestriction))
                }
                "DefaultIngressClass" => Some(Box::new(storage::DefaultIngressClass)),
                "MutatingAdmissionWebhook" => Some(Box::new(webhook::Webhooks::mutating())),
                "ValidatingAdmissionPolicy" => Some(Box::new(
                    validatingpolicy::ValidatingAdmissionPolicy::default(),
                )),
                "ValidatingAdmissionWebhook" => Some(Box::new(webhook::Webhooks::validating())),
                "ResourceQuota" => Some(Box::new(
                    resourcequota::ResourceQuota::new(&config("ResourceQuota"))
                        .map_err(ConfigError::File)?,
                )),
                other => {
                    missing.push(other);
                    None
                }
            };
            plugins.extend(p);
        }
        if !missing.is_empty() {
            tracing::warn!(
                plugins = ?missing,
                "admission plugins enabled but not yet implemented by Keelson; not enforced"
            );
        }
        Ok(Chain { plugins })
    }

    /// The plugin names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }

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

#[cfg(test)]
mod tests;
