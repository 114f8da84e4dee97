//! `--enable-bootstrap-token-auth`: bootstrap tokens (`abcdef.0123456789abcdef`) for
//! kubeadm-style joins, backed by Secrets of type `bootstrap.kubernetes.io/token`
//! named `bootstrap-token-<id>` in kube-system, as upstream's
//! `plugin/pkg/auth/authenticator/token/bootstrap`.
//!
//! A token authenticates as `system:bootstrap:<id>` in `system:bootstrappers` (plus
//! the secret's `auth-extra-groups`) while its secret allows authentication, matches,
//! has not expired and is not being deleted. Anything else is "not mine", which the
//! chain turns into a 401.

use base64::Engine;
use serde_json::Value;

use super::{TokenAuthenticator, UserInfo};
use crate::serviceaccount::Lookup;

/// The bootstrap token authenticator.
pub struct BootstrapTokens {
    lookup: Box<dyn Lookup>,
    now: fn() -> i64,
}

/// Splits `id.secret` when both parts have upstream's shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// Byte equality without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl BootstrapTokens {
    /// Reads token secrets through `lookup`.
    pub fn new(lookup: Box<dyn Lookup>) -> Self {
        BootstrapTokens {
            lookup,
            now: crate::meta::unix_now,
        }
    }

    /// Uses `now` as the clock (tests).
    pub fn with_clock(mut self, now: fn() -> i64) -> Self {
        self.now = now;
        self
    }
}

impl TokenAuthenticator for BootstrapTokens {
    fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        let Some((id, secret)) = parse(token) else {
            return Ok(None);
        };
        let Some(s) = self
            .lookup
            .get("Secret", "kube-system", &format!("bootstrap-token-{id}"))
        else {
            return Ok(None);
        };
        if s.get("type").and_then(Value::as_str) != Some("bootstrap.kubernetes.io/token")
            || crate::meta::field(&s, "deletionTimestamp").is_some()
        {
            return Ok(None);
        }
        let data = |k: &str| {
            s.pointer(&format!("/data/{k}"))
                .and_then(Value::as_str)
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                .and_then(|v| String::from_utf8(v).ok())
        };
        if data("token-id").as_deref() != Some(id)
            || !same(
                data("token-secret").unwrap_or_default().as_bytes(),
                secret.as_bytes(),
            )
            || data("usage-bootstrap-authentication").as_deref() != Some("true")
        {
            return Ok(None);
        }
        // An empty expiration never expires; an unparsable one always has.
        if let Some(exp) = data("expiration").filter(|e| !e.is_empty())
            && crate::meta::parse_rfc3339(&exp).is_none_or(|t| t <= (self.now)())
        {
            return Ok(None);
        }
        let Some(groups) = groups(&data("auth-extra-groups").unwrap_or_default()) else {
            tracing::info!(
                secret = format!("bootstrap-token-{id}"),
                "has invalid value for key auth-extra-groups"
            );
            return Ok(None);
        };
        Ok(Some(UserInfo {
            name: format!("system:bootstrap:{id}"),
            groups,
            ..Default::default()
        }))
    }
}

/// Upstream's `GetGroups`: `system:bootstrappers` and the extra groups, sorted and
/// deduplicated; `None` when any extra group is not a valid
/// `system:bootstrappers:...` name, which rejects the whole token.
fn groups(extra: &str) -> Option<Vec<String>> {
    let mut groups = std::collections::BTreeSet::from(["system:bootstrappers".to_owned()]);
    if extra.is_empty() {
        return Some(groups.into_iter().collect());
    }
    for g in extra.split(',') {
        let rest = g.strip_prefix("system:bootstrappers:")?;
        let valid = !rest.is_empty()
            && rest.len() <= 256
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '-')
            && rest
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            return None;
        }
        groups.insert(g.to_owned());
    }
    Some(groups.into_iter().collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn extra_groups_are_all_valid_or_the_token_is_refused() {
        assert_eq!(super::groups("").unwrap(), ["system:bootstrappers"]);
        assert_eq!(
            super::groups("system:bootstrappers:kubeadm:default-node-token,system:bootstrappers:a")
                .unwrap(),
            [
                "system:bootstrappers",
                "system:bootstrappers:a",
                "system:bootstrappers:kubeadm:default-node-token"
            ]
        );
        assert!(super::groups("system:bootstrappers:ok,system:masters").is_none());
        assert!(super::groups("system:bootstrappers:Bad").is_none());
        assert!(super::groups("system:bootstrappers:trailing-").is_none());
    }

    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    struct One(Value);
    impl Lookup for One {
        fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
            (kind == "Secret" && ns == "kube-system" && name == "bootstrap-token-abcdef")
                .then(|| Arc::new(self.0.clone()))
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: &str) -> Value {
        json!({"type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "data": {"token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
                "usage-bootstrap-authentication": b64("true"), "expiration": b64(expiration),
                "auth-extra-groups": b64("system:bootstrappers:kubeadm:default-node-token")}})
    }

    #[test]
    fn tokens_authenticate_while_their_secret_allows() {
        let now = || 1_800_000_000;
        let a = BootstrapTokens::new(Box::new(One(secret("2030-01-01T00:00:00Z")))).with_clock(now);
        let u = a
            .authenticate_token("abcdef.0123456789abcdef")
            .unwrap()
            .unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert_eq!(
            u.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token"
            ]
        );
        for bad in [
            "abcdef.0123456789abcdee",
            "abcdef.short",
            "ABCDEF.0123456789abcdef",
            "other.0123456789abcdef",
            "nodot",
        ] {
            assert_eq!(a.authenticate_token(bad).unwrap(), None, "{bad}");
        }
        let expired =
            BootstrapTokens::new(Box::new(One(secret("2020-01-01T00:00:00Z")))).with_clock(now);
        assert_eq!(
            expired
                .authenticate_token("abcdef.0123456789abcdef")
                .unwrap(),
            None
        );
        // No expiration: no expiry. A group outside system:bootstrappers: refuses the token.
        let forever = BootstrapTokens::new(Box::new(One(secret("")))).with_clock(now);
        assert!(
            forever
                .authenticate_token("abcdef.0123456789abcdef")
                .unwrap()
                .is_some()
        );
        let mut masters = secret("");
        masters["data"]["auth-extra-groups"] = json!(b64("system:bootstrappers:x,system:masters"));
        let a = BootstrapTokens::new(Box::new(One(masters))).with_clock(now);
        assert_eq!(
            a.authenticate_token("abcdef.0123456789abcdef").unwrap(),
            None
        );
        let mut wrong_type = secret("2030-01-01T00:00:00Z");
        wrong_type["type"] = json!("Opaque");
        let a = BootstrapTokens::new(Box::new(One(wrong_type))).with_clock(now);
        assert_eq!(
            a.authenticate_token("abcdef.0123456789abcdef").unwrap(),
            None
        );
    }
}
