//! Upstream's `ControllerRefManager` (`controller_ref_manager.go`): a controller
//! claims the objects (pods, or a Deployment's ReplicaSets) its selector matches.
//! It keeps the ones it controls that still match, adopts matching orphans (after
//! checking, against the API, that it is not being deleted), releases the ones it
//! controls that stopped matching, and never touches another controller's.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::json;

use crate::controller_utils::controller_of;

/// The writes claiming needs (the API, or a fake in tests).
pub trait Claims: Send + Sync {
    /// The controller as the API has it now (`None`: gone), to check before adopting.
    fn fresh_owner(&self) -> BoxFuture<'_, Result<Option<ObjectMeta>, kube::Error>>;
    /// A strategic merge patch of a claimed object's metadata.
    fn patch<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;
}

/// Why a claim failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The controller cannot adopt (it is gone or being deleted).
    #[error("can't adopt {kind} {namespace}/{name} ({uid}): {reason}")]
    CannotAdopt {
        /// The claimed object's kind.
        kind: &'static str,
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
        /// The pod's UID.
        uid: String,
        /// Why.
        reason: String,
    },
    /// A patch failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// The claimer for one controller.
pub struct Claimer<'a> {
    /// The kind of what is claimed (`Pod`, `ReplicaSet`).
    pub kind: &'static str,
    /// The controller.
    pub owner: &'a ObjectMeta,
    /// Its reference, as it puts it on the pods it adopts.
    pub owner_ref: OwnerReference,
    /// Its selector.
    pub selector: &'a LabelSelector,
    /// Where it writes.
    pub api: &'a dyn Claims,
}

impl Claimer<'_> {
    fn matches(&self, meta: &ObjectMeta) -> bool {
        let empty = BTreeMap::new();
        let labels = meta.labels.as_ref().unwrap_or(&empty);
        client_base::selectors::matches(self.selector, labels)
    }

    /// Upstream's `RecheckDeletionTimestamp`: the controller as the API has it is
    /// the same object and not being deleted.
    async fn can_adopt(&self) -> Result<(), String> {
        let ns = self.owner.namespace.as_deref().unwrap_or_default();
        let name = self.owner.name.as_deref().unwrap_or_default();
        let want = self.owner.uid.as_deref().unwrap_or_default();
        match self.api.fresh_owner().await {
            Err(e) => Err(e.to_string()),
            Ok(None) => Err(format!(
                "original {ns}/{name} is gone: got uid , wanted {want}"
            )),
            Ok(Some(fresh)) => {
                let got = fresh.uid.as_deref().unwrap_or_default();
                if got != want {
                    return Err(format!(
                        "original {ns}/{name} is gone: got uid {got}, wanted {want}"
                    ));
                }
                if let Some(t) = &fresh.deletion_timestamp {
                    return Err(format!("{ns}/{name} has just been deleted at {}", t.0));
                }
                Ok(())
            }
        }
    }

    /// Upstream's `ClaimPods` / `ClaimReplicaSets`: what this controller now
    /// controls. Errors are collected; what was claimed so far is still returned.
    pub async fn claim<'p, T: kube::Resource>(&self, objs: Vec<&'p T>) -> (Vec<&'p T>, Vec<Error>) {
        let mut claimed = Vec::new();
        let mut errors = Vec::new();
        let deleting = self.owner.deletion_timestamp.is_some();
        let uid = self.owner.uid.as_deref().unwrap_or_default();
        for obj in objs {
            let meta = obj.meta();
            let ns = meta.namespace.as_deref().unwrap_or_default();
            let name = meta.name.as_deref().unwrap_or_default();
            let obj_uid = meta.uid.as_deref().unwrap_or_default();
            match controller_of(meta) {
                Some(r) if r.uid != uid => {}
                Some(_) if self.matches(meta) => claimed.push(obj),
                Some(_) => {
                    // Ours, but the selector no longer matches: release it.
                    if deleting {
                        continue;
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": [{"$patch": "delete", "uid": uid}],
                        "uid": obj_uid,
                    }});
                    match self.api.patch(ns, name, patch).await {
                        Ok(()) => {}
                        Err(e) if client_base::errors::is_not_found(&e) => {}
                        Err(e) => errors.push(Error::Api(e)),
                    }
                }
                None => {
                    if deleting
                        || !self.matches(meta)
                        || meta.deletion_timestamp.is_some()
                        || meta.namespace != self.owner.namespace
                    {
                        continue;
                    }
                    if let Err(reason) = self.can_adopt().await {
                        errors.push(Error::CannotAdopt {
                            kind: self.kind,
                            namespace: ns.to_owned(),
                            name: name.to_owned(),
                            uid: obj_uid.to_owned(),
                            reason,
                        });
                        continue;
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": [self.owner_ref],
                        "uid": obj_uid,
                    }});
                    match self.api.patch(ns, name, patch).await {
                        Ok(()) => claimed.push(obj),
                        Err(e) if client_base::errors::is_not_found(&e) => {}
                        Err(e) => errors.push(Error::Api(e)),
                    }
                }
            }
        }
        (claimed, errors)
    }
}
