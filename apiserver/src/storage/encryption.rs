//! Secrets at rest: `--encryption-provider-config` (EncryptionConfiguration,
//! `apiserver.config.k8s.io/v1`), as upstream's value transformers.
//!
//! [`EncryptedKv`] wraps the store: values written under a configured resource are
//! transformed by that resource's first provider, values read are untransformed by
//! whichever provider's prefix they carry. The stored forms are upstream's, so data
//! moves between Keelson and kube-apiserver:
//!
//! | provider | stored value |
//! |---|---|
//! | `identity` | the plaintext |
//! | `aescbc` | `k8s:enc:aescbc:v1:<key>:` IV(16) AES-CBC-PKCS#7 ciphertext |
//! | `aesgcm` | `k8s:enc:aesgcm:v1:<key>:` nonce(12) AES-GCM ciphertext+tag, the etcd key as AAD |
//! | `secretbox` | `k8s:enc:secretbox:v1:<key>:` nonce(24) XSalsa20-Poly1305 box |
//!
//! Key rotation is upstream's: add the new key second, restart; move it first,
//! restart; rewrite every object (`kubectl get secrets -A -o json | kubectl replace
//! -f -`); remove the old key. A value no configured provider can read is an error,
//! never returned as plaintext.

use std::sync::Arc;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    self, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use crypto_secretbox::aead::{Aead, KeyInit};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::Value;

use super::{KeyValue, Kv, KvError, KvResult, RangePage, WatchEvent, WatchStream};

/// One key of a provider.
#[derive(Clone)]
struct NamedKey {
    name: String,
    secret: Vec<u8>,
}

/// A provider, as configured.
#[derive(Clone)]
enum Provider {
    Identity,
    AesCbc(Vec<NamedKey>),
    AesGcm(Vec<NamedKey>),
    Secretbox(Vec<NamedKey>),
}

impl Provider {
    fn kind(&self) -> &'static str {
        match self {
            Provider::Identity => "identity",
            Provider::AesCbc(_) => "aescbc",
            Provider::AesGcm(_) => "aesgcm",
            Provider::Secretbox(_) => "secretbox",
        }
    }
    fn keys(&self) -> &[NamedKey] {
        match self {
            Provider::Identity => &[],
            Provider::AesCbc(k) | Provider::AesGcm(k) | Provider::Secretbox(k) => k,
        }
    }
    fn prefix(&self, key: &NamedKey) -> String {
        format!("k8s:enc:{}:v1:{}:", self.kind(), key.name)
    }

    /// Transforms `plain` stored under `ctx` with this provider's first key.
    fn seal(&self, plain: &[u8], ctx: &[u8]) -> Result<Vec<u8>, String> {
        let Some(k) = self.keys().first() else {
            return Ok(plain.to_vec());
        };
        let rng = SystemRandom::new();
        let mut out = self.prefix(k).into_bytes();
        let fail = |e: aws_lc_rs::error::Unspecified| format!("{}: {e}", self.kind());
        match self {
            Provider::Identity => unreachable!("identity has no keys"),
            Provider::AesCbc(_) => {
                let alg = aes_alg(k.secret.len())?;
                let key = PaddedBlockEncryptingKey::cbc_pkcs7(
                    UnboundCipherKey::new(alg, &k.secret).map_err(fail)?,
                )
                .map_err(fail)?;
                let mut iv = [0u8; 16];
                rng.fill(&mut iv).map_err(fail)?;
                let mut data = plain.to_vec();
                key.less_safe_encrypt(&mut data, EncryptionContext::Iv128(iv.into()))
                    .map_err(fail)?;
                out.extend_from_slice(&iv);
                out.extend_from_slice(&data);
            }
            Provider::AesGcm(_) => {
                let key = gcm_key(&k.secret)?;
                let mut nonce = [0u8; 12];
                rng.fill(&mut nonce).map_err(fail)?;
                let mut data = plain.to_vec();
                key.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(ctx),
                    &mut data,
                )
                .map_err(fail)?;
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&data);
            }
            Provider::Secretbox(_) => {
                let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&k.secret)
                    .map_err(|_| "secretbox: the key must be 32 bytes".to_owned())?;
                let mut nonce = [0u8; 24];
                rng.fill(&mut nonce).map_err(fail)?;
                let sealed = cipher
                    .encrypt(&nonce.into(), plain)
                    .map_err(|_| "secretbox: sealing failed".to_owned())?;
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
            }
        }
        Ok(out)
    }

    /// Untransforms `stored` if one of this provider's keys wrote it.
    fn open(&self, stored: &[u8], ctx: &[u8]) -> Option<Result<Vec<u8>, String>> {
        for k in self.keys() {
            let prefix = self.prefix(k);
            let Some(body) = stored.strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            let what = format!("{}: key {:?}", self.kind(), k.name);
            return Some(match self {
                Provider::Identity => unreachable!("identity has no keys"),
                Provider::AesCbc(_) => (|| {
                    if body.len() < 16 || (body.len() - 16) % 16 != 0 {
                        return Err(format!(
                            "{what}: the stored data is not a whole number of blocks"
                        ));
                    }
                    let (iv, data) = body.split_at(16);
                    let key = PaddedBlockDecryptingKey::cbc_pkcs7(
                        UnboundCipherKey::new(aes_alg(k.secret.len())?, &k.secret)
                            .map_err(|e| format!("{what}: {e}"))?,
                    )
                    .map_err(|e| format!("{what}: {e}"))?;
                    let mut buf = data.to_vec();
                    let iv: [u8; 16] = iv.try_into().map_err(|_| format!("{what}: bad IV"))?;
                    let plain = key
                        .decrypt(&mut buf, DecryptionContext::Iv128(iv.into()))
                        .map_err(|_| format!("{what}: invalid padding on input"))?;
                    Ok(plain.to_vec())
                })(),
                Provider::AesGcm(_) => (|| {
                    if body.len() < 12 + 16 {
                        return Err(format!(
                            "{what}: the stored data was shorter than the required size"
                        ));
                    }
                    let (nonce, data) = body.split_at(12);
                    let key = gcm_key(&k.secret)?;
                    let mut buf = data.to_vec();
                    let nonce: [u8; 12] =
                        nonce.try_into().map_err(|_| format!("{what}: bad nonce"))?;
                    let plain = key
                        .open_in_place(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from(ctx),
                            &mut buf,
                        )
                        .map_err(|_| format!("{what}: cipher: message authentication failed"))?;
                    Ok(plain.to_vec())
                })(),
                Provider::Secretbox(_) => (|| {
                    if body.len() < 24 {
                        return Err(format!(
                            "{what}: the stored data was shorter than the required size"
                        ));
                    }
                    let (nonce, data) = body.split_at(24);
                    let cipher = crypto_secretbox::XSalsa20Poly1305::new_from_slice(&k.secret)
                        .map_err(|_| format!("{what}: the key must be 32 bytes"))?;
                    let nonce: [u8; 24] =
                        nonce.try_into().map_err(|_| format!("{what}: bad nonce"))?;
                    cipher.decrypt(&nonce.into(), data).map_err(|_| {
                        format!("{what}: output array was not large enough for encryption")
                    })
                })(),
            });
        }
        None
    }
}

fn aes_alg(len: usize) -> Result<&'static cipher::Algorithm, String> {
    match len {
        16 => Ok(&cipher::AES_128),
        24 => Ok(&cipher::AES_192),
        32 => Ok(&cipher::AES_256),
        n => Err(format!(
            "secret is not of the expected length, got {n}, expected one of [16 24 32]"
        )),
    }
}

fn gcm_key(secret: &[u8]) -> Result<LessSafeKey, String> {
    let alg = match secret.len() {
        16 => &aead::AES_128_GCM,
        24 => &aead::AES_192_GCM,
        32 => &aead::AES_256_GCM,
        n => {
            return Err(format!(
                "secret is not of the expected length, got {n}, expected one of [16 24 32]"
            ));
        }
    };
    UnboundKey::new(alg, secret)
        .map(LessSafeKey::new)
        .map_err(|e| format!("aesgcm: {e}"))
}

/// One `resources[]` entry: which resources, and their providers in order.
#[derive(Clone)]
struct Rule {
    /// `secrets`, `deployments.apps`, `*.apps`, `*.*`.
    resources: Vec<String>,
    providers: Vec<Provider>,
}

/// A parsed EncryptionConfiguration.
#[derive(Clone, Default)]
pub struct EncryptionConfig {
    rules: Vec<Rule>,
}

/// Configuration errors, in upstream's words where it has them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("error reading encryption provider configuration file {path:?}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Malformed or invalid.
    #[error("error while parsing file: {0}")]
    Invalid(String),
}

impl EncryptionConfig {
    /// Reads `--encryption-provider-config`.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates the file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let inv = |m: String| ConfigError::Invalid(m);
        let v: Value = serde_saphyr::from_str(text).map_err(|e| inv(e.to_string()))?;
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
        let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if kind != "EncryptionConfiguration" || api != "apiserver.config.k8s.io/v1" {
            return Err(inv(format!(
                "no kind \"{kind}\" is registered for version \"{api}\""
            )));
        }
        let mut rules = Vec::new();
        let entries = v
            .get("resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if entries.is_empty() {
            return Err(inv("resources: Required value: EncryptionConfiguration.Resources must contain at least one resource".into()));
        }
        for (i, e) in entries.iter().enumerate() {
            let resources: Vec<String> = e
                .get("resources")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if resources.is_empty() {
                return Err(inv(format!(
                    "resources[{i}].resources: Required value: resources is required"
                )));
            }
            let mut providers = Vec::new();
            for (j, p) in e
                .get("providers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let path = format!("resources[{i}].providers[{j}]");
                let obj = p.as_object().cloned().unwrap_or_default();
                if obj.len() != 1 {
                    return Err(inv(format!(
                        "{path}: Invalid value: exactly one provider must be configured"
                    )));
                }
                let (name, body) = obj.into_iter().next().expect("one provider");
                let keys = || -> Result<Vec<NamedKey>, ConfigError> {
                    let list = body
                        .get("keys")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if list.is_empty() {
                        return Err(inv(format!(
                            "{path}.{name}.keys: Required value: keys (list of at least one key) is required"
                        )));
                    }
                    let mut out = Vec::new();
                    for (n, k) in list.iter().enumerate() {
                        let kp = format!("{path}.{name}.keys[{n}]");
                        let key_name = k.get("name").and_then(Value::as_str).unwrap_or("");
                        if key_name.is_empty() {
                            return Err(inv(format!(
                                "{kp}.name: Required value: key name is required"
                            )));
                        }
                        if key_name.contains(':') {
                            return Err(inv(format!(
                                "{kp}.name: Invalid value: \"{key_name}\": should not contain ':'"
                            )));
                        }
                        let secret = base64::engine::general_purpose::STANDARD
                            .decode(k.get("secret").and_then(Value::as_str).unwrap_or(""))
                            .map_err(|_| inv(format!("{kp}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded")))?;
                        let ok = if name == "secretbox" {
                            secret.len() == 32
                        } else {
                            matches!(secret.len(), 16 | 24 | 32)
                        };
                        if !ok {
                            let want = if name == "secretbox" {
                                "[32]"
                            } else {
                                "[16 24 32]"
                            };
                            return Err(inv(format!(
                                "{kp}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of {want}",
                                secret.len()
                            )));
                        }
                        out.push(NamedKey {
                            name: key_name.to_owned(),
                            secret,
                        });
                    }
                    Ok(out)
                };
                providers.push(match name.as_str() {
                    "identity" => Provider::Identity,
                    "aescbc" => Provider::AesCbc(keys()?),
                    "aesgcm" => Provider::AesGcm(keys()?),
                    "secretbox" => Provider::Secretbox(keys()?),
                    "kms" => return Err(inv(format!("{path}.kms: Invalid value: KMS providers are not supported by this server"))),
                    other => return Err(inv(format!("{path}: Invalid value: unknown provider {other:?}"))),
                });
            }
            if providers.is_empty() {
                return Err(inv(format!(
                    "resources[{i}].providers: Required value: providers is required"
                )));
            }
            rules.push(Rule {
                resources,
                providers,
            });
        }
        Ok(EncryptionConfig { rules })
    }

    /// The index of the first rule naming a group and resource.
    fn rule_for(&self, group: &str, resource: &str) -> Option<usize> {
        let exact = if group.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}.{group}")
        };
        let group_wild = format!("*.{group}");
        self.rules.iter().position(|r| {
            r.resources.iter().any(|x| {
                *x == exact || *x == "*.*" || (group.is_empty() && x == "*.") || *x == group_wild
            })
        })
    }
}

/// Which providers each key falls under: the storage paths of the built-in resources
/// (longest first) with their rule; custom resources (stored at
/// `<prefix>/<group>/<plural>/`, a group always with a dot) by the rule naming
/// `<plural>.<group>`, `*.<group>` or `*.*`; anything else by `*.*`.
struct Routes {
    config: EncryptionConfig,
    prefix: String,
    table: Vec<(String, usize)>,
    wildcard: Option<usize>,
}

impl Routes {
    fn new(config: EncryptionConfig, prefix: &str) -> Routes {
        let prefix = prefix.trim_end_matches('/').to_owned();
        let mut table: Vec<(String, usize)> = crate::catalog::catalog()
            .all()
            .iter()
            .filter_map(|r| {
                config
                    .rule_for(r.group, r.plural)
                    .map(|i| (format!("{prefix}/{}/", r.storage), i))
            })
            .collect();
        table.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        table.dedup_by(|a, b| a.0 == b.0);
        let wildcard = config
            .rules
            .iter()
            .position(|r| r.resources.iter().any(|x| x == "*.*"));
        Routes {
            config,
            prefix,
            table,
            wildcard,
        }
    }

    /// The providers a key falls under.
    fn providers(&self, key: &[u8]) -> Option<&[Provider]> {
        let k = std::str::from_utf8(key).ok()?;
        if !k.starts_with(&self.prefix) {
            return None;
        }
        let custom = || {
            let mut parts = k[self.prefix.len()..].trim_start_matches('/').split('/');
            let (group, plural) = (parts.next()?, parts.next()?);
            if !group.contains('.') {
                return None;
            }
            self.config.rule_for(group, plural)
        };
        let rule = self
            .table
            .iter()
            .find(|(p, _)| k.starts_with(p.as_str()))
            .map(|(_, i)| *i)
            .or_else(custom)
            .or(self.wildcard)?;
        Some(self.config.rules[rule].providers.as_slice())
    }
}

/// A store whose values are encrypted per resource.
pub struct EncryptedKv {
    inner: Arc<dyn Kv>,
    routes: Arc<Routes>,
}

impl EncryptedKv {
    /// Wraps `inner`, whose keys start with `prefix` (`/registry`).
    pub fn new(inner: Arc<dyn Kv>, config: EncryptionConfig, prefix: &str) -> Self {
        EncryptedKv {
            inner,
            routes: Arc::new(Routes::new(config, prefix)),
        }
    }
}

fn seal(routes: &Routes, key: &[u8], value: Vec<u8>) -> KvResult<Vec<u8>> {
    match routes.providers(key).and_then(|p| p.first()) {
        Some(p) => p.seal(&value, key).map_err(|e| {
            KvError::Transform(format!(
                "unable to transform key {:?}: {e}",
                String::from_utf8_lossy(key)
            ))
        }),
        None => Ok(value),
    }
}

/// Untransforms a stored value; also says whether a provider other than the first
/// (or the first's non-primary key) read it.
fn open(routes: &Routes, key: &[u8], value: Vec<u8>) -> KvResult<(Vec<u8>, bool)> {
    let Some(ps) = routes.providers(key) else {
        return Ok((value, false));
    };
    for (i, p) in ps.iter().enumerate() {
        if let Provider::Identity = p {
            // Identity reads anything not written by a keyed provider.
            if !value.starts_with(b"k8s:enc:") {
                return Ok((value, i > 0));
            }
            continue;
        }
        if let Some(r) = p.open(&value, key) {
            let primary = p
                .keys()
                .first()
                .is_some_and(|k| value.starts_with(p.prefix(k).as_bytes()));
            return r.map(|v| (v, i > 0 || !primary)).map_err(|e| {
                KvError::Transform(format!(
                    "unable to transform key {:?}: {e}",
                    String::from_utf8_lossy(key)
                ))
            });
        }
    }
    Err(KvError::Transform(format!(
        "unable to transform key {:?}: no matching prefix found",
        String::from_utf8_lossy(key)
    )))
}

fn open_kv(routes: &Routes, mut kv: KeyValue) -> KvResult<KeyValue> {
    let (value, stale) = open(routes, &kv.key, std::mem::take(&mut kv.value))?;
    kv.value = value;
    kv.stale = stale;
    Ok(kv)
}

impl Kv for EncryptedKv {
    fn get(&self, key: &[u8]) -> BoxFuture<'_, KvResult<(Option<KeyValue>, u64)>> {
        let f = self.inner.get(key);
        async move {
            let (kv, rev) = f.await?;
            Ok((kv.map(|kv| open_kv(&self.routes, kv)).transpose()?, rev))
        }
        .boxed()
    }
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
        limit: u64,
    ) -> BoxFuture<'_, KvResult<RangePage>> {
        let f = self.inner.range(start, end, revision, limit);
        async move {
            let mut page = f.await?;
            page.kvs = page
                .kvs
                .into_iter()
                .map(|kv| open_kv(&self.routes, kv))
                .collect::<KvResult<_>>()?;
            Ok(page)
        }
        .boxed()
    }
    fn create(&self, key: &[u8], value: Vec<u8>) -> BoxFuture<'_, KvResult<u64>> {
        match seal(&self.routes, key, value) {
            Ok(v) => self.inner.create(key, v),
            Err(e) => async move { Err(e) }.boxed(),
        }
    }
    fn update(&self, key: &[u8], value: Vec<u8>, expected: u64) -> BoxFuture<'_, KvResult<u64>> {
        let routes = self.routes.clone();
        match seal(&self.routes, key, value) {
            Ok(v) => {
                let f = self.inner.update(key, v, expected);
                async move {
                    match f.await {
                        Err(KvError::CompareFailed(Some(kv))) => {
                            Err(KvError::CompareFailed(Some(open_kv(&routes, kv)?)))
                        }
                        other => other,
                    }
                }
                .boxed()
            }
            Err(e) => async move { Err(e) }.boxed(),
        }
    }
    fn delete(&self, key: &[u8], expected: u64) -> BoxFuture<'_, KvResult<u64>> {
        self.inner.delete(key, expected)
    }
    fn watch(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
    ) -> BoxFuture<'_, KvResult<WatchStream>> {
        let f = self.inner.watch(start, end, revision);
        let routes = self.routes.clone();
        async move {
            let w = f.await?;
            let events = w
                .events
                .map(move |ev| {
                    let ev = ev?;
                    Ok(match ev {
                        WatchEvent::Put { kv, prev } => WatchEvent::Put {
                            kv: open_kv(&routes, kv)?,
                            prev: prev.map(|p| open_kv(&routes, p)).transpose()?,
                        },
                        WatchEvent::Delete {
                            key,
                            prev,
                            revision,
                        } => WatchEvent::Delete {
                            prev: prev.map(|p| open_kv(&routes, p)).transpose()?,
                            key,
                            revision,
                        },
                        p @ WatchEvent::Progress { .. } => p,
                    })
                })
                .boxed();
            Ok(WatchStream {
                events,
                request_progress: w.request_progress,
            })
        }
        .boxed()
    }
    fn current_revision(&self) -> BoxFuture<'_, KvResult<u64>> {
        self.inner.current_revision()
    }
    fn compact(&self, revision: u64) -> BoxFuture<'_, KvResult<()>> {
        self.inner.compact(revision)
    }
}

#[cfg(test)]
mod tests;
