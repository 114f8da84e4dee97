//! The review APIs: create-only, never stored; each answers from the current
//! authenticator and authorizer.
//!
//! - `authentication.k8s.io/v1` `TokenReview`: who a bearer token is (webhook token
//!   authentication for kubelets and aggregated servers);
//! - `authorization.k8s.io/v1` `SubjectAccessReview` and `LocalSubjectAccessReview`:
//!   may a given user do this (webhook authorization);
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
        "SelfSubjectAccessReview" => access_review(ctx, &obj, ctx.user)?,
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let spec = obj.get("spec").cloned().unwrap_or(json!({}));
            let user = crate::authn::UserInfo {
                name: str_at(&spec, "/user").to_owned(),
                uid: str_at(&spec, "/uid").to_owned(),
                groups: strings(spec.get("groups")),
                extra: spec
                    .get("extra")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), strings(Some(v))))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let mut causes = Vec::new();
            if user.name.is_empty() && user.groups.is_empty() {
                causes.push(FieldError::invalid(
                    "spec.user",
                    json!(""),
                    "at least one of user or group must be specified",
                ));
            }
            if res.kind == "LocalSubjectAccessReview" {
                let ns = ctx.info.namespace.as_deref().unwrap_or("");
                let want = spec
                    .pointer("/resourceAttributes/namespace")
                    .and_then(Value::as_str);
                if spec
                    .get("nonResourceAttributes")
                    .is_some_and(|v| !v.is_null())
                {
                    causes.push(FieldError::invalid(
                        "spec.nonResourceAttributes",
                        spec["nonResourceAttributes"].clone(),
                        "disallowed on this kind of request",
                    ));
                }
                if let Some(w) = want
                    && w != ns
                {
                    return Err(ApiError::BadRequest(format!(
                        "spec.resourceAttributes.namespace must match namespace: {ns}"
                    )));
                }
                if want.is_none() && spec.get("resourceAttributes").is_some_and(Value::is_object) {
                    obj["spec"]["resourceAttributes"]["namespace"] = json!(ns);
                }
            }
            if !causes.is_empty() {
                return Err(ApiError::Invalid {
                    group: res.group.to_owned(),
                    kind: res.kind.to_owned(),
                    name: String::new(),
                    causes,
                });
            }
            access_review(ctx, &obj, &user)?
        }
        "TokenReview" => token_review(ctx, &obj)?,
        "SelfSubjectRulesReview" => rules_review(ctx, &obj)?,
        "SelfSubjectReview" => {
            let u = ctx.user;
            let mut info = json!({"username": u.name, "groups": u.groups});
            if !u.uid.is_empty() {
                info["uid"] = json!(u.uid);
            }
            if !u.extra.is_empty() {
                info["extra"] = json!(u.extra);
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

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn token_review(ctx: &Ctx<'_>, obj: &Value) -> Result<Value, ApiError> {
    let token = str_at(obj, "/spec/token");
    if token.is_empty() {
        return Err(ApiError::Invalid {
            group: ctx.res.group.to_owned(),
            kind: ctx.res.kind.to_owned(),
            name: String::new(),
            causes: vec![FieldError::required("spec.token", "")],
        });
    }
    let audiences: Vec<String> = strings(obj.pointer("/spec/audiences"));
    Ok(
        match ctx.api.authenticator.review_token(token, &audiences) {
            Ok((u, auds)) => {
                let mut user = json!({"username": u.name, "groups": u.groups});
                if !u.uid.is_empty() {
                    user["uid"] = json!(u.uid);
                }
                if !u.extra.is_empty() {
                    user["extra"] = json!(u.extra);
                }
                json!({"authenticated": true, "user": user, "audiences": auds})
            }
            Err(e) => json!({"user": {}, "error": e}),
        },
    )
}

fn access_review(
    ctx: &Ctx<'_>,
    obj: &Value,
    user: &crate::authn::UserInfo,
) -> Result<Value, ApiError> {
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
            version: str_at(r, "/version").to_owned(),
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
    match ctx.api.authorizer.authorize(user, &attrs) {
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
    let rules = ctx.api.authorizer.rules_for(ctx.user, namespace);
    let mut status = json!({
        "resourceRules": rules.resource,
        "nonResourceRules": rules.non_resource,
        "incomplete": rules.incomplete,
    });
    if !rules.errors.is_empty() {
        status["evaluationError"] = json!(rules.errors.join(", "));
    }
    Ok(status)
}
