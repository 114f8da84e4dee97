//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook: the webhooks of the
//! Mutating/ValidatingWebhookConfigurations in the store, called with
//! `admission.k8s.io/v1` AdmissionReviews over TLS, as upstream's.
//!
//! - Configurations are taken in name order, webhooks in their listed order.
//! - A webhook is called when its `rules` match the request's operation and resource
//!   (`matchPolicy: Equivalent` ignores the version), its `namespaceSelector` matches
//!   the namespace's labels and its `objectSelector` the object's (or old object's).
//! - Calls go to `clientConfig.url`, or to a ready endpoint of `clientConfig.service`
//!   with the service's DNS name as TLS server name (upstream's aggregator routing),
//!   trusting `caBundle` (the system roots without one), within `timeoutSeconds` (10
//!   by default).
//! - A refusal is upstream's `admission webhook "<name>" denied the request: ...`; a
//!   failed call is an internal error under `failurePolicy: Fail` and skipped under
//!   `Ignore`; a dry run is refused by webhooks that may have side effects.
//! - Mutating webhooks answer with JSONPatch, applied in turn; those with
//!   `reinvocationPolicy: IfNeeded` are called once more when a later webhook changed
//!   the object.

use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::pods::cached_all;
use super::{AdmissionRequest, Plugin};
use crate::api::Api;
use crate::error::ApiError;

/// Which kind of configuration a plugin reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mutating,
    Validating,
}

/// The webhook admission plugin, mutating or validating.
pub struct Webhooks {
    kind: Kind,
}

impl Webhooks {
    /// MutatingAdmissionWebhook.
    pub fn mutating() -> Self {
        Webhooks {
            kind: Kind::Mutating,
        }
    }
    /// ValidatingAdmissionWebhook.
    pub fn validating() -> Self {
        Webhooks {
            kind: Kind::Validating,
        }
    }
}

/// Whether one of `rules` matches the request.
fn rules_match(webhook: &Value, req: &AdmissionRequest) -> bool {
    let exact = webhook.get("matchPolicy").and_then(Value::as_str) == Some("Exact");
    any_rule_matches(webhook.get("rules"), exact, req)
}

/// Whether any of `rules` (upstream's `RuleWithOperations`, or a policy's
/// `NamedRuleWithOperations` with `resourceNames`) covers the request. `exact`
/// (`matchPolicy: Exact`) also compares the version.
pub(super) fn any_rule_matches(rules: Option<&Value>, exact: bool, req: &AdmissionRequest) -> bool {
    let res = req.resource;
    let resource = match &req.subresource {
        Some(s) => format!("{}/{s}", res.plural),
        None => res.plural.to_owned(),
    };
    rules
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|r| {
            let any = |k: &str, want: &str| {
                crate::meta::strings(r, k)
                    .iter()
                    .any(|x| x == "*" || x == want)
            };
            let scope = r.get("scope").and_then(Value::as_str).unwrap_or("*");
            let scope_ok = match scope {
                "Cluster" => !res.namespaced,
                "Namespaced" => res.namespaced,
                _ => true,
            };
            let resource_ok = crate::meta::strings(r, "resources").iter().any(|x| {
                x == "*" && req.subresource.is_none()
                    || *x == "*/*"
                    || *x == resource
                    || req.subresource.as_ref().is_some_and(|s| {
                        *x == format!("*/{s}") || *x == format!("{}/*", res.plural)
                    })
            });
            let names = crate::meta::strings(r, "resourceNames");
            let name_ok = names.is_empty() || names.contains(&req.name);
            any("operations", req.operation.as_str())
                && any("apiGroups", res.group)
                && (!exact || any("apiVersions", res.version))
                && resource_ok
                && scope_ok
                && name_ok
        })
}

/// Whether a webhook's label selector (absent: everything) matches `labels`.
fn selector_matches(
    selector: Option<&Value>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selector
        .filter(|s| s.is_object())
        .is_none_or(|s| crate::selectors::LabelSelector::from_meta(s).matches(labels))
}

fn labels_of(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    v.map(crate::selectors::labels_of).unwrap_or_default()
}

/// Whether the webhook's selectors match.
/// Whether `webhook`'s `namespaceSelector` and `objectSelector` (also a policy's
/// match resources) select the request.
pub(super) fn selectors_match(api: &Api, webhook: &Value, req: &AdmissionRequest) -> bool {
    let ns_labels = if req.resource.kind == "Namespace" {
        Some(labels_of(req.object.as_ref().or(req.old_object.as_ref())))
    } else if req.resource.namespaced {
        super::pods::cached(api, "", "v1", "namespaces", "", &req.namespace)
            .map(|ns| labels_of(Some(&ns)))
    } else {
        None
    };
    if let Some(labels) = ns_labels
        && !selector_matches(webhook.get("namespaceSelector"), &labels)
    {
        return false;
    }
    let sel = webhook.get("objectSelector");
    selector_matches(sel, &labels_of(req.object.as_ref()))
        || req.old_object.is_some() && selector_matches(sel, &labels_of(req.old_object.as_ref()))
}

/// Where and how to call a webhook: (host to dial, port, TLS server name, path).
async fn endpoint(api: &Api, config: &Value) -> Result<(String, u16, String, String), String> {
    if let Some(url) = config.get("url").and_then(Value::as_str) {
        let u = url::Url::parse(url).map_err(|e| format!("invalid url {url:?}: {e}"))?;
        if u.scheme() != "https" {
            return Err(format!("webhook url {url:?} must use https"));
        }
        let host = u
            .host_str()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_owned();
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        };
        return Ok((host.clone(), u.port().unwrap_or(443), host, path));
    }
    let svc = config
        .get("service")
        .ok_or("webhook has neither url nor service")?;
    let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
    let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
    let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443) as u16;
    let path = svc
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    let service = super::pods::cached(api, "", "v1", "services", ns, name)
        .ok_or_else(|| format!("service \"{name}\" not found"))?;
    let svc_port = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("port").and_then(Value::as_u64) == Some(port as u64))
        })
        .cloned()
        .ok_or_else(|| format!("no service port {port} found for service \"{name}\""))?;
    let port_name = svc_port.get("name").and_then(Value::as_str).unwrap_or("");
    let eps = super::pods::cached(api, "", "v1", "endpoints", ns, name)
        .ok_or_else(|| format!("no endpoints available for service \"{name}\""))?;
    for ss in eps
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ip = ss
            .get("addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|a| a.get("ip"))
            .and_then(Value::as_str);
        let target = ss
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64));
        if let (Some(ip), Some(tp)) = (ip, target) {
            return Ok((ip.to_owned(), tp as u16, format!("{name}.{ns}.svc"), path));
        }
    }
    Err(format!("no endpoints available for service \"{name}\""))
}

/// Posts the review; returns the response body.
async fn call(api: &Api, webhook: &Value, review: &Value) -> Result<Value, String> {
    let config = webhook.get("clientConfig").cloned().unwrap_or(Value::Null);
    let (host, port, server_name, path) = endpoint(api, &config).await?;
    let timeout = Duration::from_secs(
        webhook
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10)
            .clamp(1, 30),
    );
    let ca = match config.get("caBundle").and_then(Value::as_str) {
        Some(ca) => base64::engine::general_purpose::STANDARD
            .decode(ca)
            .map_err(|e| format!("invalid caBundle: {e}"))?,
        None => Vec::new(),
    };
    let tls = crate::webhookclient::tls_config(crate::webhookclient::Trust::Ca(&ca), None)?;
    // Upstream's client tells the webhook its deadline in the query.
    let sep = if path.contains('?') { '&' } else { '?' };
    let target = crate::webhookclient::Target {
        host,
        port,
        server_name,
        path: format!("{path}{sep}timeout={}s", timeout.as_secs()),
    };
    crate::webhookclient::post_json(&target, tls, None, review, timeout)
        .await
        .map_err(|e| format!("failed to call webhook: {e}"))
}

fn review(req: &AdmissionRequest, object: Option<&Value>, uid: &str) -> Value {
    let res = req.resource;
    let mut user = json!({"username": req.user.name, "groups": req.user.groups});
    if !req.user.uid.is_empty() {
        user["uid"] = json!(req.user.uid);
    }
    if !req.user.extra.is_empty() {
        user["extra"] = json!(req.user.extra);
    }
    let kind = json!({"group": res.group, "version": res.version, "kind": res.kind});
    let resource = json!({"group": res.group, "version": res.version, "resource": res.plural});
    let options = match req.operation {
        super::Operation::Create => "CreateOptions",
        super::Operation::Update => "UpdateOptions",
        super::Operation::Delete => "DeleteOptions",
    };
    let mut r = json!({
        "uid": uid,
        "kind": kind, "resource": resource,
        "requestKind": kind, "requestResource": resource,
        "name": req.name, "namespace": req.namespace,
        "operation": req.operation.as_str(),
        "userInfo": user,
        "object": object.cloned().unwrap_or(Value::Null),
        "oldObject": req.old_object.clone().unwrap_or(Value::Null),
        "dryRun": req.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options},
    });
    if let Some(s) = &req.subresource {
        r["subResource"] = json!(s);
        r["requestSubResource"] = json!(s);
    }
    if req.name.is_empty()
        && let Some(o) = object
    {
        r["name"] = json!(crate::meta::name(o));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": r})
}

/// Upstream's `ToStatusErr` for a refusal.
fn denied(name: &str, status: Option<&Value>) -> ApiError {
    let by = format!("admission webhook {name:?} denied the request");
    let s = status.cloned().unwrap_or(json!({}));
    let message = s.get("message").and_then(Value::as_str).unwrap_or("");
    let reason = s.get("reason").and_then(Value::as_str).unwrap_or("");
    let text = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !reason.is_empty() {
        format!("{by}: {reason}")
    } else {
        format!("{by} without explanation")
    };
    let code = s.get("code").and_then(Value::as_u64).unwrap_or(0).max(400) as u16;
    ApiError::Webhook {
        code,
        reason: reason.to_owned(),
        message: text,
    }
}

/// The webhooks of every configuration of this kind, in order.
fn webhooks(api: &Api, kind: Kind) -> Vec<Value> {
    let plural = match kind {
        Kind::Mutating => "mutatingwebhookconfigurations",
        Kind::Validating => "validatingwebhookconfigurations",
    };
    let mut configs = cached_all(api, "admissionregistration.k8s.io", "v1", plural);
    configs.sort_by(|a, b| crate::meta::name(a).cmp(crate::meta::name(b)));
    configs
        .iter()
        .flat_map(|c| {
            c.get("webhooks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// Calls one webhook: `Ok(Some(patched))` for an applied mutation, `Ok(None)` when it
/// allowed without change or was skipped.
async fn run_one(
    api: &Api,
    wh: &Value,
    req: &AdmissionRequest,
    object: Option<&Value>,
    mutate: bool,
) -> Result<Option<Value>, ApiError> {
    let name = wh.get("name").and_then(Value::as_str).unwrap_or("");
    let ignore = wh.get("failurePolicy").and_then(Value::as_str) == Some("Ignore");
    let side_effects = wh
        .get("sideEffects")
        .and_then(Value::as_str)
        .unwrap_or("Unknown");
    if req.dry_run && !matches!(side_effects, "None" | "NoneOnDryRun") {
        return Err(ApiError::BadRequest(format!(
            "admission webhook {name:?} does not support dry run"
        )));
    }
    let fail = |e: String| -> Result<Option<Value>, ApiError> {
        if ignore {
            tracing::warn!(webhook = name, error = %e, "failed calling webhook, failing open");
            Ok(None)
        } else {
            Err(ApiError::Internal(format!(
                "failed calling webhook {name:?}: {e}"
            )))
        }
    };
    if !crate::meta::strings(wh, "admissionReviewVersions")
        .iter()
        .any(|v| v == "v1")
    {
        return fail("webhook does not accept v1 AdmissionReview".into());
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let body = review(req, object, &uid);
    let resp = match call(api, wh, &body).await {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let Some(r) = resp.get("response") else {
        return fail("webhook response was absent".into());
    };
    if r.get("uid").and_then(Value::as_str) != Some(uid.as_str()) {
        return fail(format!(
            "expected response.uid={uid:?}, got {:?}",
            r.get("uid").and_then(Value::as_str).unwrap_or("")
        ));
    }
    if r.get("allowed").and_then(Value::as_bool) != Some(true) {
        return Err(denied(name, r.get("status")));
    }
    let Some(patch) = r.get("patch").and_then(Value::as_str).filter(|_| mutate) else {
        return Ok(None);
    };
    if r.get("patchType").and_then(Value::as_str) != Some("JSONPatch") {
        return fail("webhook returned a patch without patchType JSONPatch".into());
    }
    let raw = match base64::engine::general_purpose::STANDARD.decode(patch) {
        Ok(p) => p,
        Err(e) => return fail(format!("the patch is not base64: {e}")),
    };
    let ops: Value = match serde_json::from_slice(&raw) {
        Ok(p) => p,
        Err(e) => return fail(format!("the patch is not JSON: {e}")),
    };
    let mut out = object.cloned().unwrap_or(Value::Null);
    if let Err(e) = crate::patch::json_patch(&mut out, &ops) {
        return fail(format!("applying the patch: {e:?}"));
    }
    Ok(Some(out))
}

impl Plugin for Webhooks {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Mutating => "MutatingAdmissionWebhook",
            Kind::Validating => "ValidatingAdmissionWebhook",
        }
    }
    fn admit<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            let mut obj = req.object.clone();
            if self.kind != Kind::Mutating || req.is_admission_configuration() {
                return Ok(obj);
            }
            let hooks: Vec<Value> = webhooks(api, self.kind)
                .into_iter()
                .filter(|w| rules_match(w, req) && selectors_match(api, w, req))
                .collect();
            // (index of the webhook, the object it last saw) for reinvocation.
            let mut seen: Vec<(usize, Option<Value>)> = Vec::new();
            for (i, wh) in hooks.iter().enumerate() {
                seen.push((i, obj.clone()));
                if let Some(o) = run_one(api, wh, req, obj.as_ref(), true).await? {
                    obj = Some(o);
                }
            }
            for (i, before) in seen {
                let wh = &hooks[i];
                let reinvoke =
                    wh.get("reinvocationPolicy").and_then(Value::as_str) == Some("IfNeeded");
                // Changed after this webhook ran: later webhooks' work it has not seen.
                let later_changed = before != obj && i + 1 < hooks.len();
                if reinvoke
                    && later_changed
                    && let Some(o) = run_one(api, wh, req, obj.as_ref(), true).await?
                {
                    obj = Some(o);
                }
            }
            Ok(obj)
        })
    }
    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if self.kind != Kind::Validating || req.is_admission_configuration() {
                return Ok(());
            }
            for wh in webhooks(api, self.kind) {
                if rules_match(&wh, req) && selectors_match(api, &wh, req) {
                    run_one(api, &wh, req, req.object.as_ref(), false).await?;
                }
            }
            Ok(())
        })
    }
}
