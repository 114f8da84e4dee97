//! Service account tokens: signed JWTs, as upstream's `pkg/serviceaccount`.
//!
//! - [`Signer`] issues bound tokens (TokenRequest, `kubectl create token`) with the
//!   key from `--service-account-signing-key-file`, under the first
//!   `--service-account-issuer`. RSA keys sign RS256, P-256 keys ES256; the `kid` is
//!   upstream's: the unpadded base64url SHA-256 of the public key's DER.
//! - [`Authenticator`] verifies them with the keys from `--service-account-key-file`
//!   (any issuer in the list, an audience from `--api-audiences`, expiry and
//!   not-before with a minute of leeway), then checks that what the token is bound to
//!   still exists with the same uid: the service account, and the pod, secret or
//!   node it names. A token outliving its pod is refused.
//! - [`jwks`] and [`openid_configuration`] serve OIDC discovery
//!   (`/.well-known/openid-configuration`, `/openid/v1/jwks`).
//!
//! Object lookups go through [`Lookup`] (the watch caches in the server).

pub mod jwt;
pub mod request;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::authn::{TokenAuthenticator, UserInfo};
pub use jwt::{Key, KeyError, VerifyingKey};

/// The leeway on `exp` and `nbf`, as upstream's `jwt.DefaultLeeway`.
pub const LEEWAY_SECS: i64 = 60;
/// The expiration kubelets ask for (`3607`), which `--service-account-extend-token-expiration`
/// stretches to a year with a `warnafter` claim.
pub const EXTENDED_REQUEST_SECS: i64 = 3607;
/// How long an extended token lives.
pub const EXTENDED_SECS: i64 = 365 * 24 * 3600;

/// The groups of a service account, as upstream's `MakeGroupNames`.
pub fn groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{namespace}"),
    ]
}

/// A service account's user name.
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Reads objects a token may be bound to.
pub trait Lookup: Send + Sync {
    /// One object of `kind` (ServiceAccount, Pod, Secret, Node); `namespace` is empty
    /// for nodes.
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<Value>>;
}

/// The registry's watch caches as a [`Lookup`].
pub struct CacheLookup {
    caches: Vec<(&'static str, Arc<crate::cache::WatchCache>, String)>,
}

impl CacheLookup {
    /// Reads from `registry`'s caches.
    pub fn new(registry: &crate::registry::Registry) -> CacheLookup {
        let mut caches = Vec::new();
        for (kind, plural) in [
            ("ServiceAccount", "serviceaccounts"),
            ("Pod", "pods"),
            ("Secret", "secrets"),
            ("Node", "nodes"),
        ] {
            let res = crate::catalog::catalog()
                .get("", "v1", plural)
                .expect("core resource");
            if let Some(c) = registry.cache(res) {
                caches.push((kind, c, registry.collection(res, None)));
            }
        }
        CacheLookup { caches }
    }
}

impl Lookup for CacheLookup {
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let (_, cache, prefix) = self.caches.iter().find(|(k, _, _)| *k == kind)?;
        let key = if namespace.is_empty() {
            format!("{prefix}{name}")
        } else {
            format!("{prefix}{namespace}/{name}")
        };
        cache.get(&key)
    }
}

/// What a token is bound to besides its service account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// Kind: Pod, Secret or Node.
    pub kind: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// Issues tokens.
pub struct Signer {
    key: Key,
    issuer: String,
}

impl Signer {
    /// Signs with `key` as `issuer`.
    pub fn new(key: Key, issuer: &str) -> Signer {
        Signer {
            key,
            issuer: issuer.to_owned(),
        }
    }

    /// Loads `--service-account-signing-key-file`.
    pub fn load(path: &Path, issuer: &str) -> Result<Signer, KeyError> {
        Ok(Signer::new(Key::load_private(path)?, issuer))
    }

    /// The public half, for verification and discovery.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Issues a bound token for service account `sa` (its object) in `namespace`,
    /// valid for `seconds` from `now` (unix seconds), for `audiences`, optionally
    /// bound to `bound` (and the node a bound pod runs on). Returns the token and its
    /// expiry.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &self,
        namespace: &str,
        sa: &Value,
        audiences: &[String],
        seconds: i64,
        extend: bool,
        bound: Option<&Binding>,
        node: Option<&Binding>,
        now: i64,
    ) -> (String, i64) {
        let sa_name = crate::meta::name(sa);
        let sa_uid = sa
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (exp, warnafter) = if extend && seconds == EXTENDED_REQUEST_SECS {
            (now + EXTENDED_SECS, Some(now + seconds))
        } else {
            (now + seconds, None)
        };
        let mut k8s = json!({
            "namespace": namespace,
            "serviceaccount": {"name": sa_name, "uid": sa_uid},
        });
        if let Some(b) = bound {
            k8s[b.kind.to_lowercase()] = json!({"name": b.name, "uid": b.uid});
        }
        if let Some(n) = node {
            k8s["node"] = json!({"name": n.name, "uid": n.uid});
        }
        if let Some(w) = warnafter {
            k8s["warnafter"] = json!(w);
        }
        let claims = json!({
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "iss": self.issuer,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": k8s,
            "nbf": now,
            "sub": username(namespace, sa_name),
        });
        (self.key.sign(&claims), exp)
    }
}

/// Verifies service account tokens.
pub struct Authenticator {
    keys: Vec<VerifyingKey>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    lookup: Box<dyn Lookup>,
    now: fn() -> i64,
}

fn uid_of(v: &Value) -> &str {
    v.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Authenticator {
    /// Accepts tokens signed by `keys`, from `issuers`, for one of `audiences`.
    pub fn new(
        keys: Vec<VerifyingKey>,
        issuers: Vec<String>,
        audiences: Vec<String>,
        lookup: Box<dyn Lookup>,
    ) -> Authenticator {
        Authenticator {
            keys,
            issuers,
            audiences,
            lookup,
            now: crate::meta::unix_now,
        }
    }

    /// Uses `now` as the clock (tests).
    pub fn with_clock(mut self, now: fn() -> i64) -> Self {
        self.now = now;
        self
    }

    /// Verifies `token` for `audiences` (the server's when empty). `Ok(None)`: not a
    /// token of these issuers.
    pub fn verify(&self, token: &str, audiences: &[String]) -> Result<Option<UserInfo>, String> {
        Ok(self.verify_for(token, audiences)?.map(|(u, _)| u))
    }

    /// As [`Self::verify`], also returning the wanted audiences the token is for.
    pub fn verify_for(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Option<(UserInfo, Vec<String>)>, String> {
        let Some((header, claims, signed, sig)) = jwt::split(token) else {
            return Ok(None);
        };
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if !self.issuers.iter().any(|i| i == iss) {
            return Ok(None);
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let verified = self
            .keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| kid == k.kid))
            .any(|k| k.verify(alg, signed.as_bytes(), &sig));
        if !verified {
            return Err("square/go-jose: error in cryptographic primitive".to_owned());
        }
        let now = (self.now)();
        let exp = claims.get("exp").and_then(Value::as_i64);
        if exp.is_none_or(|e| now > e.saturating_add(LEEWAY_SECS)) {
            return Err("service account token has expired".to_owned());
        }
        if claims
            .get("nbf")
            .and_then(Value::as_i64)
            .is_some_and(|n| now.saturating_add(LEEWAY_SECS) < n)
        {
            return Err("service account token is not valid yet".to_owned());
        }
        let wanted = if audiences.is_empty() {
            &self.audiences
        } else {
            audiences
        };
        let aud: Vec<&str> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let matched: Vec<String> = wanted
            .iter()
            .filter(|w| aud.contains(&w.as_str()))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err("token audiences is invalid for the target audiences".to_owned());
        }
        let k8s = claims.get("kubernetes.io").cloned().unwrap_or(Value::Null);
        let ns = k8s.get("namespace").and_then(Value::as_str).unwrap_or("");
        let sa_name = k8s
            .pointer("/serviceaccount/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let sa_uid = k8s
            .pointer("/serviceaccount/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if ns.is_empty() || sa_name.is_empty() {
            return Err("service account token claims are missing the service account".into());
        }
        let sa = self
            .lookup
            .get("ServiceAccount", ns, sa_name)
            .ok_or_else(|| format!("serviceaccounts {sa_name:?} not found"))?;
        if uid_of(&sa) != sa_uid {
            return Err(format!(
                "service account UID ({sa_uid}) does not match claim ({})",
                uid_of(&sa)
            ));
        }
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (kind, claim) in [("Pod", "pod"), ("Secret", "secret"), ("Node", "node")] {
            let Some(b) = k8s.get(claim).filter(|b| b.is_object()) else {
                continue;
            };
            let name = b.get("name").and_then(Value::as_str).unwrap_or("");
            let uid = b.get("uid").and_then(Value::as_str).unwrap_or("");
            let lookup_ns = if kind == "Node" { "" } else { ns };
            let obj = self
                .lookup
                .get(kind, lookup_ns, name)
                .ok_or_else(|| format!("{}s {name:?} not found", claim))?;
            if uid_of(&obj) != uid {
                return Err(format!(
                    "{kind} UID ({}) does not match claim ({uid})",
                    uid_of(&obj)
                ));
            }
            if kind != "Node"
                && crate::meta::field(&obj, "deletionTimestamp")
                    .and_then(crate::meta::parse_rfc3339)
                    .is_some_and(|t| t <= now)
            {
                return Err("Token has been invalidated".to_owned());
            }
            extra.insert(
                format!("authentication.kubernetes.io/{claim}-name"),
                vec![name.to_owned()],
            );
            extra.insert(
                format!("authentication.kubernetes.io/{claim}-uid"),
                vec![uid.to_owned()],
            );
        }
        // Secret claims are not user extras upstream.
        extra.remove("authentication.kubernetes.io/secret-name");
        extra.remove("authentication.kubernetes.io/secret-uid");
        if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_owned(),
                vec![format!("JTI={jti}")],
            );
        }
        Ok(Some((
            UserInfo {
                name: username(ns, sa_name),
                uid: sa_uid.to_owned(),
                groups: groups(ns),
                extra,
            },
            matched,
        )))
    }
}

impl TokenAuthenticator for Authenticator {
    fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        self.verify(token, &[])
    }
    fn authenticate_token_for(
        &self,
        token: &str,
        audiences: &[String],
        _api_audiences: &[String],
    ) -> Result<Option<(UserInfo, Vec<String>)>, String> {
        self.verify_for(token, audiences)
    }
}

/// What OIDC discovery serves: the issuer, where its keys are, and the keys.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// The first `--service-account-issuer`.
    pub issuer: String,
    /// `--service-account-jwks-uri`, or `<issuer>/openid/v1/jwks`.
    pub jwks_uri: String,
    /// The verification keys.
    pub keys: Vec<VerifyingKey>,
}

impl Discovery {
    /// `/.well-known/openid-configuration`.
    pub fn configuration(&self) -> Value {
        openid_configuration(&self.issuer, &self.jwks_uri, &self.keys)
    }
    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        jwks(&self.keys)
    }
}

/// `/.well-known/openid-configuration`.
pub fn openid_configuration(issuer: &str, jwks_uri: &str, keys: &[VerifyingKey]) -> Value {
    let mut algs: Vec<&str> = keys.iter().map(|k| k.alg).collect();
    algs.sort_unstable();
    algs.dedup();
    json!({
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    })
}

/// `/openid/v1/jwks`.
pub fn jwks(keys: &[VerifyingKey]) -> Value {
    json!({"keys": keys.iter().map(VerifyingKey::jwk).collect::<Vec<_>>()})
}

#[cfg(test)]
mod tests;
