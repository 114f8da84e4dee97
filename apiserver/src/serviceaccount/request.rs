//! The TokenRequest subresource (`POST .../serviceaccounts/<name>/token`, what
//! `kubectl create token` and kubelets' projected volumes call), as upstream's
//! `TokenREST`.

use serde_json::{Value, json};

use super::{Binding, Signer};
use crate::catalog::catalog;
use crate::error::{ApiError, FieldError, GroupResource};
use crate::handlers::{Ctx, Reply};

/// Token issuing settings from the flags.
pub struct Issuing {
    /// The signer (`--service-account-signing-key-file`, first issuer).
    pub signer: Signer,
    /// `--api-audiences` (the issuer when unset).
    pub audiences: Vec<String>,
    /// `--service-account-max-token-expiration`, in seconds.
    pub max_seconds: Option<i64>,
    /// `--service-account-extend-token-expiration`.
    pub extend: bool,
}

fn invalid(causes: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        group: "authentication.k8s.io".into(),
        kind: "TokenRequest".into(),
        name: String::new(),
        causes,
    }
}

async fn get(ctx: &Ctx<'_>, plural: &str, ns: &str, name: &str) -> Result<Value, ApiError> {
    let res = catalog().get("", "v1", plural).expect("core resource");
    ctx.api.registry.get(res, ns, name).await
}

/// Issues a token for the service account the request names.
pub async fn create(
    ctx: &Ctx<'_>,
    issuing: Option<&Issuing>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let Some(issuing) = issuing else {
        return Err(ApiError::NoRoute);
    };
    let ns = ctx.info.namespace.as_deref().unwrap_or("");
    let name = ctx.info.name.as_deref().unwrap_or("");
    let mut req: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the object provided is unrecognized (must be of type TokenRequest): {e}"
        ))
    })?;
    if !req.is_object() {
        return Err(ApiError::BadRequest(
            "the object provided is unrecognized (must be of type TokenRequest)".into(),
        ));
    }
    if req.get("spec").is_none_or(|s| !s.is_object()) {
        req["spec"] = json!({});
    }
    let spec = &mut req["spec"];
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => 3600,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid(vec![FieldError::invalid(
                "spec.expirationSeconds",
                v.clone(),
                "must be an integer",
            )])
        })?,
    };
    let mut causes = Vec::new();
    if seconds < 600 {
        causes.push(FieldError::invalid(
            "spec.expirationSeconds",
            json!(seconds),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if seconds > 1 << 32 {
        causes.push(FieldError::invalid(
            "spec.expirationSeconds",
            json!(seconds),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !causes.is_empty() {
        return Err(invalid(causes));
    }
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = issuing.audiences.clone();
    }
    let sa = get(ctx, "serviceaccounts", ns, name).await?;
    let mut bound = None;
    let mut node = None;
    if let Some(r) = spec
        .get("boundObjectRef")
        .filter(|r| r.is_object())
        .cloned()
    {
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let obj_name = r.get("name").and_then(Value::as_str).unwrap_or("");
        let want_uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
        let (plural, obj_ns) = match (api_version, kind) {
            ("v1", "Pod") => ("pods", ns),
            ("v1", "Secret") => ("secrets", ns),
            ("v1", "Node") => ("nodes", ""),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount {name:?} to object of kind {kind:?} ({api_version})"
                )));
            }
        };
        let obj = get(ctx, plural, obj_ns, obj_name).await?;
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !want_uid.is_empty() && want_uid != uid {
            return Err(ApiError::Conflict {
                resource: GroupResource::new("", plural),
                name: obj_name.to_owned(),
                message: format!(
                    "Operation cannot be fulfilled on {plural} {obj_name:?}: the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            });
        }
        if kind == "Pod" {
            let pod_sa = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if pod_sa != name {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                )));
            }
            if let Some(n) = obj.pointer("/spec/nodeName").and_then(Value::as_str)
                && let Ok(node_obj) = get(ctx, "nodes", "", n).await
            {
                node = Some(Binding {
                    kind: "Node".into(),
                    name: n.to_owned(),
                    uid: node_obj
                        .pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                });
            }
        }
        spec["boundObjectRef"]["uid"] = json!(uid);
        bound = Some(Binding {
            kind: kind.to_owned(),
            name: obj_name.to_owned(),
            uid: uid.to_owned(),
        });
    }
    // The cap applies first; only then may a kubelet's pod-bound request for the
    // API's own audiences be extended (and it still reports the short expiry), as
    // upstream's TokenREST.
    let mut issued_seconds = seconds;
    if let Some(max) = issuing.max_seconds
        && issued_seconds > max
    {
        issued_seconds = max;
    }
    let kube_audiences = audiences.iter().all(|a| issuing.audiences.contains(a));
    let extend =
        issuing.extend && kube_audiences && bound.as_ref().is_some_and(|b| b.kind == "Pod");
    let now = crate::meta::unix_now();
    let (token, _) = issuing.signer.issue(
        ns,
        &sa,
        &audiences,
        issued_seconds,
        extend,
        bound.as_ref(),
        node.as_ref(),
        now,
    );
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(issued_seconds);
    let exp = now + issued_seconds;
    let body = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": crate::meta::rfc3339(now)},
        "spec": req["spec"].clone(),
        "status": {"token": token, "expirationTimestamp": crate::meta::rfc3339(exp)},
    });
    Ok(Reply {
        code: 201,
        body,
        warnings: Vec::new(),
    })
}
