//! Storage and ingress defaulting plugins: DefaultStorageClass,
//! StorageObjectInUseProtection, PersistentVolumeClaimResize and DefaultIngressClass,
//! as upstream's.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::pods::{cached, cached_all, forbidden};
use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::error::ApiError;

/// The default among `objects` by `annotation`: the newest, then by name (upstream
/// since 1.28).
fn default_of(objects: Vec<std::sync::Arc<Value>>, annotations: &[&str]) -> Option<String> {
    objects
        .into_iter()
        .filter(|o| {
            annotations.iter().any(|a| {
                o.pointer(&format!("/metadata/annotations/{}", a.replace('/', "~1")))
                    .and_then(Value::as_str)
                    == Some("true")
            })
        })
        .max_by(|a, b| {
            let t = |o: &Value| {
                crate::meta::field(o, "creationTimestamp")
                    .unwrap_or("")
                    .to_owned()
            };
            t(a).cmp(&t(b))
                .then_with(|| crate::meta::name(b).cmp(crate::meta::name(a)))
        })
        .map(|o| crate::meta::name(&o).to_owned())
}

/// DefaultStorageClass: a claim that names no class gets the default one.
pub struct DefaultStorageClass;

impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }
    fn admit<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        let mut obj = req.object.clone();
        if req.operation == Operation::Create
            && req.is("", "PersistentVolumeClaim")
            && let Some(pvc) = obj.as_mut()
            && pvc
                .pointer("/spec/storageClassName")
                .is_none_or(Value::is_null)
            && let Some(name) = default_of(
                cached_all(api, "storage.k8s.io", "v1", "storageclasses"),
                &[
                    "storageclass.kubernetes.io/is-default-class",
                    "storageclass.beta.kubernetes.io/is-default-class",
                ],
            )
        {
            pvc["spec"]["storageClassName"] = json!(name);
        }
        Box::pin(async move { Ok(obj) })
    }
}

/// StorageObjectInUseProtection: claims and volumes carry the protection finalizer
/// their controllers remove once nothing uses them.
pub struct StorageObjectInUseProtection;

impl Plugin for StorageObjectInUseProtection {
    fn name(&self) -> &'static str {
        "StorageObjectInUseProtection"
    }
    fn admit<'a>(
        &'a self,
        _api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        let mut obj = req.object.clone();
        let finalizer = match req.resource.kind {
            "PersistentVolumeClaim" if req.subresource.is_none() => {
                Some("kubernetes.io/pvc-protection")
            }
            "PersistentVolume" if req.subresource.is_none() => Some("kubernetes.io/pv-protection"),
            _ => None,
        };
        if req.operation == Operation::Create
            && let (Some(f), Some(o)) = (finalizer, obj.as_mut())
        {
            let mut list = crate::meta::finalizers(o);
            if !list.iter().any(|x| x == f) {
                list.push(f.to_owned());
                o["metadata"]["finalizers"] = json!(list);
            }
        }
        Box::pin(async move { Ok(obj) })
    }
}

/// PersistentVolumeClaimResize: a claim may only grow when its class allows
/// expansion.
pub struct PersistentVolumeClaimResize;

impl Plugin for PersistentVolumeClaimResize {
    fn name(&self) -> &'static str {
        "PersistentVolumeClaimResize"
    }
    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if req.operation != Operation::Update || !req.is("", "PersistentVolumeClaim") {
                return Ok(());
            }
            let (Some(new), Some(old)) = (&req.object, &req.old_object) else {
                return Ok(());
            };
            let size = |o: &Value| {
                o.pointer("/spec/resources/requests/storage")
                    .and_then(Value::as_str)
                    .and_then(crate::quantity::parse)
            };
            let (Some(n), Some(o)) = (size(new), size(old)) else {
                return Ok(());
            };
            if n <= o || old.pointer("/status/phase").and_then(Value::as_str) != Some("Bound") {
                return Ok(());
            }
            let class = new
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let expandable = !class.is_empty()
                && cached(api, "storage.k8s.io", "v1", "storageclasses", "", class)
                    .and_then(|c| c.get("allowVolumeExpansion").and_then(Value::as_bool))
                    == Some(true);
            if !expandable {
                return Err(forbidden(
                    req,
                    "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
                ));
            }
            Ok(())
        })
    }
}

/// DefaultIngressClass: an Ingress that names no class gets the default one.
pub struct DefaultIngressClass;

impl Plugin for DefaultIngressClass {
    fn name(&self) -> &'static str {
        "DefaultIngressClass"
    }
    fn admit<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        let mut obj = req.object.clone();
        if req.operation == Operation::Create
            && req.is("networking.k8s.io", "Ingress")
            && let Some(ing) = obj.as_mut()
            && ing
                .pointer("/spec/ingressClassName")
                .is_none_or(Value::is_null)
            && ing
                .pointer("/metadata/annotations/kubernetes.io~1ingress.class")
                .is_none()
            && let Some(name) = default_of(
                cached_all(api, "networking.k8s.io", "v1", "ingressclasses"),
                &["ingressclass.kubernetes.io/is-default-class"],
            )
        {
            ing["spec"]["ingressClassName"] = json!(name);
        }
        Box::pin(async move { Ok(obj) })
    }
}
