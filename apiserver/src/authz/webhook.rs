//! The Webhook authorization mode: a SubjectAccessReview for each request, posted to
//! the service named by `--authorization-webhook-config-file` (a kubeconfig), as
//! upstream's `WebhookAuthorizer`.
//!
//! The webhook answers `allowed` (Allow), `denied` (Deny) or neither (NoOpinion:
//! the next mode decides). Answers are cached by the review's spec,
//! `--authorization-webhook-cache-authorized-ttl` (5m) for allowed ones and
//! `--authorization-webhook-cache-unauthorized-ttl` (30s) for the rest. A webhook
//! that cannot be reached gives no opinion and an error; when no other mode allows,
//! the request fails with a 500, as upstream's.
//!
//! Authorization is synchronous everywhere else (RBAC and Node decide from
//! caches), so the call is made with `block_in_place` on the server's multi-threaded
//! runtime: the waiting worker hands its other tasks on while it waits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use super::{Attributes, Decision};
use crate::authn::UserInfo;
use crate::webhookclient::KubeconfigClient;

/// How long one review may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a transient failure is tried.
const RETRIES: u32 = 5;

/// The webhook mode.
pub struct WebhookAuthorizer {
    client: KubeconfigClient,
    version: String,
    authorized_ttl: Duration,
    unauthorized_ttl: Duration,
    cache: Mutex<HashMap<String, (Decision, Instant)>>,
}

/// The review's spec for a request, as upstream's: empty fields left out; v1beta1
/// calls the groups `group`.
pub fn review_spec(user: &UserInfo, attrs: &Attributes, version: &str) -> Value {
    let mut spec = Map::new();
    let put = |m: &mut Map<String, Value>, k: &str, v: &str| {
        if !v.is_empty() {
            m.insert(k.into(), json!(v));
        }
    };
    if attrs.resource_request {
        let mut r = Map::new();
        put(&mut r, "namespace", &attrs.namespace);
        put(&mut r, "verb", &attrs.verb);
        put(&mut r, "group", &attrs.group);
        put(&mut r, "version", &attrs.version);
        put(&mut r, "resource", &attrs.resource);
        put(&mut r, "subresource", &attrs.subresource);
        put(&mut r, "name", &attrs.name);
        spec.insert("resourceAttributes".into(), Value::Object(r));
    } else {
        let mut n = Map::new();
        put(&mut n, "path", &attrs.path);
        put(&mut n, "verb", &attrs.verb);
        spec.insert("nonResourceAttributes".into(), Value::Object(n));
    }
    put(&mut spec, "user", &user.name);
    put(&mut spec, "uid", &user.uid);
    if !user.groups.is_empty() {
        let key = if version == "v1beta1" {
            "group"
        } else {
            "groups"
        };
        spec.insert(key.into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        spec.insert("extra".into(), json!(user.extra));
    }
    Value::Object(spec)
}

/// The decision a review's answer carries.
pub fn decision(answer: &Value) -> Decision {
    let status = answer.get("status").cloned().unwrap_or(Value::Null);
    let reason = status
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    // Denied wins, also over a contradictory allowed.
    if status.get("denied").and_then(Value::as_bool) == Some(true) {
        Decision::Deny(reason)
    } else if status.get("allowed").and_then(Value::as_bool) == Some(true) {
        Decision::Allow(reason)
    } else {
        Decision::NoOpinion(reason)
    }
}

impl WebhookAuthorizer {
    /// From the flags.
    pub fn new(
        config: &std::path::Path,
        version: &str,
        authorized_ttl: Duration,
        unauthorized_ttl: Duration,
    ) -> Result<Self, String> {
        if !matches!(version, "v1" | "v1beta1") {
            return Err(format!(
                "unsupported authorization webhook version {version:?}: must be v1 or v1beta1"
            ));
        }
        Ok(WebhookAuthorizer {
            client: crate::webhookclient::from_kubeconfig(config)?,
            version: version.to_owned(),
            authorized_ttl,
            unauthorized_ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Asks the webhook (or the cache).
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Result<Decision, String> {
        let spec = review_spec(user, attrs, &self.version);
        let key = spec.to_string();
        if let Some((d, until)) = self.cache.lock().get(&key)
            && Instant::now() < *until
        {
            return Ok(d.clone());
        }
        let review = json!({
            "apiVersion": format!("authorization.k8s.io/{}", self.version),
            "kind": "SubjectAccessReview",
            "spec": spec,
        });
        // Upstream's `DefaultAuthWebhookRetryBackoff`: 500ms, ×1.5, ±20% jitter, 5
        // tries, for transient failures only.
        let call = async {
            let mut delay = 0.5_f64;
            let mut attempt = 1;
            loop {
                match crate::webhookclient::post_json(
                    &self.client.target,
                    self.client.tls.clone(),
                    self.client.token.as_deref(),
                    &review,
                    TIMEOUT,
                )
                .await
                {
                    Err(e) if e.should_retry() && attempt < RETRIES => {
                        let jitter = 1.0 + rand::random_range(-0.2..0.2);
                        tokio::time::sleep(Duration::from_secs_f64(delay * jitter)).await;
                        delay *= 1.5;
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        };
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(call))
            }
            _ => return Err("the authorization webhook needs a multi-threaded runtime".into()),
        }
        .map_err(|e| format!("error contacting webhook: {e}"))?;
        let d = decision(&answer);
        let ttl = if d.allowed() {
            self.authorized_ttl
        } else {
            self.unauthorized_ttl
        };
        if !ttl.is_zero() {
            let mut cache = self.cache.lock();
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
            cache.insert(key, (d.clone(), now + ttl));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_carry_what_upstream_sends() {
        let mut user = UserInfo::new("alice", &["dev", "system:authenticated"]);
        user.extra.insert("scopes".into(), vec!["a".into()]);
        let mut attrs = Attributes::resource("list", "apps", "deployments", "ns", "");
        attrs.version = "v1".into();
        assert_eq!(
            review_spec(&user, &attrs, "v1"),
            json!({
                "resourceAttributes": {"namespace": "ns", "verb": "list", "group": "apps", "version": "v1", "resource": "deployments"},
                "user": "alice",
                "groups": ["dev", "system:authenticated"],
                "extra": {"scopes": ["a"]},
            })
        );
        let path = Attributes {
            verb: "get".into(),
            path: "/healthz".into(),
            ..Default::default()
        };
        let spec = review_spec(&user, &path, "v1beta1");
        assert_eq!(
            spec["nonResourceAttributes"],
            json!({"path": "/healthz", "verb": "get"})
        );
        assert!(spec.get("group").is_some() && spec.get("groups").is_none());
    }

    #[test]
    fn answers_become_decisions() {
        assert_eq!(
            decision(&json!({"status": {"allowed": true, "reason": "ok"}})),
            Decision::Allow("ok".into())
        );
        assert_eq!(
            decision(&json!({"status": {"allowed": false, "denied": true, "reason": "no"}})),
            Decision::Deny("no".into())
        );
        assert_eq!(
            decision(&json!({"status": {"allowed": true, "denied": true}})),
            Decision::Deny(String::new())
        );
        assert_eq!(
            decision(&json!({"status": {"allowed": false}})),
            Decision::NoOpinion(String::new())
        );
    }
}
