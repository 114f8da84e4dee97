//! The self-review APIs: create-only, never stored; each answers about the
//! requesting user from the current authenticator and authorizer.
//!
//! - `authorization.k8s.io/v1` `SelfSubjectAccessReview` (`kubectl auth can-i`);
//! - `authorization.k8s.io/v1` `SelfSubjectRulesReview` (`kubectl auth can-i --list`);
//! - `authentication.k8s.io/v1` `SelfSubjectReview` (`kubectl auth whoami`).

use serde_json::{Value, json};

use crate::authz::{Attributes, Decision};
use crate::error::{ApiError, FieldError};
use crate::handlers::{Ctx, Reply};

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Handles a create of one of the review kinds.
pub fn create(ctx: &Ctx<'_>, body: &[u8]) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let mut obj: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the object provided is unrecognized (must be of type {}): {e}",
            res.kind
        ))
    })?;
    if !obj.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the object provided is unrecognized (must be of type {})",
            res.kind
        )));
    }
    let status = match res.kind {
        "SelfSubjectAccessReview" => access_review(ctx, &obj)?,
        "SelfSubjectRulesReview" => rules_review(ctx, &obj)?,
        "SelfSubjectReview" => {
            let u = ctx.user;
            let mut info = json!({"username": u.name, "groups": u.groups});
            if !u.uid.is_empty() {
                info["uid"] = json!(u.uid);
            }
            json!({"userInfo": info})
        }
        other => {
            return Err(ApiError::Internal(format!("no review handler for {other}")));
        }
    };
    obj["kind"] = json!(res.kind);
    obj["apiVersion"] = json!(res.api_version());
    // Never stored: no uid, resourceVersion or creationTimestamp, as upstream's reply.
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    obj["metadata"] = json!({"creationTimestamp": null});
    if let Some(n) = name {
        obj["metadata"]["name"] = n;
    }
    obj["status"] = status;
    Ok(Reply {
        code: 201,
        body: obj,
        warnings: Vec::new(),
    })
}

fn access_review(ctx: &Ctx<'_>, obj: &Value) -> Result<Value, ApiError> {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let ra = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let nra = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let mut causes = Vec::new();
    match (ra, nra) {
        (Some(_), Some(n)) => causes.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            n.clone(),
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => causes.push(FieldError::invalid(
            "spec.resourceAttributes",
            json!("null"),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    if !causes.is_empty() {
        return Err(ApiError::Invalid {
            group: ctx.res.group.to_owned(),
            kind: ctx.res.kind.to_owned(),
            name: String::new(),
            causes,
        });
    }
    let attrs = match (ra, nra) {
        (Some(r), _) => Attributes {
            verb: str_at(r, "/verb").to_owned(),
            resource_request: true,
            group: str_at(r, "/group").to_owned(),
            resource: str_at(r, "/resource").to_owned(),
            subresource: str_at(r, "/subresource").to_owned(),
            namespace: str_at(r, "/namespace").to_owned(),
            name: str_at(r, "/name").to_owned(),
            path: String::new(),
        },
        (None, Some(n)) => Attributes {
            verb: str_at(n, "/verb").to_owned(),
            path: str_at(n, "/path").to_owned(),
            ..Default::default()
        },
        (None, None) => Attributes::default(),
    };
    let mut status = json!({"allowed": false});
    match ctx.api.authorizer.authorize(ctx.user, &attrs) {
        Decision::Allow(reason) => {
            status["allowed"] = json!(true);
            if !reason.is_empty() {
                status["reason"] = json!(reason);
            }
        }
        Decision::Deny(reason) => {
            status["denied"] = json!(true);
            if !reason.is_empty() {
                status["reason"] = json!(reason);
            }
        }
        Decision::NoOpinion(reason) => {
            if !reason.is_empty() {
                status["reason"] = json!(reason);
            }
        }
    }
    Ok(status)
}

fn rules_review(ctx: &Ctx<'_>, obj: &Value) -> Result<Value, ApiError> {
    let namespace = str_at(obj, "/spec/namespace");
    if namespace.is_empty() {
        return Err(ApiError::BadRequest("no namespace on request".into()));
    }
    let (resource, non_resource, incomplete) = ctx.api.authorizer.rules_for(ctx.user, namespace);
    Ok(json!({
        "resourceRules": resource,
        "nonResourceRules": non_resource,
        "incomplete": incomplete,
    }))
}
