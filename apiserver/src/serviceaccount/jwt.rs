//! Compact JWS (RFC 7515) with RS256 and ES256 over aws-lc-rs, and the PEM key files
//! upstream accepts: PKCS#1, PKCS#8 and SEC1 private keys, SPKI public keys and
//! certificates.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rustls_pemfile::Item;
use serde_json::{Value, json};
use sha2::Digest;

/// Errors loading keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Unreadable file.
    #[error("failed to read service account key file {path:?}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing usable in it.
    #[error("failed to parse service account key file {path:?}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// A signing key.
#[derive(Clone)]
pub enum Key {
    /// RS256.
    Rsa(Arc<RsaKeyPair>),
    /// ES256.
    Ec(Arc<EcdsaKeyPair>),
}

/// A key that verifies, with its JWK identity.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    /// `kid`: base64url(SHA-256(SPKI DER)).
    pub kid: String,
    /// `RS256` or `ES256`.
    pub alg: &'static str,
    /// The SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
}

fn kid(spki: &[u8]) -> String {
    B64.encode(sha2::Sha256::digest(spki))
}

fn pem_items(path: &Path) -> Result<Vec<Item>, KeyError> {
    let text = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    rustls_pemfile::read_all(&mut text.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KeyError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

impl Key {
    /// Parses one private key item.
    fn from_item(item: &Item) -> Option<Key> {
        let ec = |der: &[u8]| {
            EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .ok()
                .map(|k| Key::Ec(Arc::new(k)))
        };
        match item {
            Item::Pkcs1Key(k) => RsaKeyPair::from_der(k.secret_pkcs1_der())
                .ok()
                .map(|k| Key::Rsa(Arc::new(k))),
            Item::Pkcs8Key(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
                .ok()
                .map(|k| Key::Rsa(Arc::new(k)))
                .or_else(|| ec(k.secret_pkcs8_der())),
            Item::Sec1Key(k) => ec(k.secret_sec1_der()),
            _ => None,
        }
    }

    /// Loads the private key in a PEM file.
    pub fn load_private(path: &Path) -> Result<Key, KeyError> {
        pem_items(path)?
            .iter()
            .find_map(Key::from_item)
            .ok_or_else(|| KeyError::Parse {
                path: path.display().to_string(),
                message: "no RSA or ECDSA (P-256) private key found".into(),
            })
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        let (alg, spki) = match self {
            Key::Rsa(k) => (
                "RS256",
                k.public_key()
                    .as_der()
                    .map(|d| d.as_ref().to_vec())
                    .unwrap_or_default(),
            ),
            Key::Ec(k) => (
                "ES256",
                k.public_key()
                    .as_der()
                    .map(|d| d.as_ref().to_vec())
                    .unwrap_or_default(),
            ),
        };
        VerifyingKey {
            kid: kid(&spki),
            alg,
            spki,
        }
    }

    /// Signs `claims` into a compact JWS.
    pub fn sign(&self, claims: &Value) -> String {
        let vk = self.verifying_key();
        let header = json!({"alg": vk.alg, "kid": vk.kid});
        let signed = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(&header).unwrap_or_default()),
            B64.encode(serde_json::to_vec(claims).unwrap_or_default())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    signed.as_bytes(),
                    &mut sig,
                )
                .map(|()| sig)
                .unwrap_or_default()
            }
            Key::Ec(k) => k
                .sign(&rng, signed.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
        };
        format!("{signed}.{}", B64.encode(sig))
    }
}

impl VerifyingKey {
    /// Loads every public key in a PEM file: public keys, certificates' keys and the
    /// public halves of private keys (`--service-account-key-file`).
    pub fn load(path: &Path) -> Result<Vec<VerifyingKey>, KeyError> {
        let mut out = Vec::new();
        for item in pem_items(path)? {
            let spki = match &item {
                Item::SubjectPublicKeyInfo(k) => Some(k.as_ref().to_vec()),
                Item::X509Certificate(c) => x509_parser::parse_x509_certificate(c)
                    .ok()
                    .map(|(_, c)| c.public_key().raw.to_vec()),
                other => Key::from_item(other).map(|k| k.verifying_key().spki),
            };
            if let Some(spki) = spki
                && let Some(k) = VerifyingKey::from_spki(spki)
            {
                out.push(k);
            }
        }
        if out.is_empty() {
            return Err(KeyError::Parse {
                path: path.display().to_string(),
                message: "data does not contain any valid RSA or ECDSA public keys".into(),
            });
        }
        Ok(out)
    }

    /// A key from its SPKI DER (RSA or P-256).
    pub fn from_spki(spki: Vec<u8>) -> Option<VerifyingKey> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).ok()?;
        let alg = match info.parsed().ok()? {
            PublicKey::RSA(_) => "RS256",
            PublicKey::EC(p) if p.key_size() == 256 => "ES256",
            _ => return None,
        };
        Some(VerifyingKey {
            kid: kid(&spki),
            alg,
            spki,
        })
    }

    /// Checks a signature made with `alg`.
    pub fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> bool {
        if alg != self.alg {
            return false;
        }
        let scheme: &dyn signature::VerificationAlgorithm = match alg {
            "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
            "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
            _ => return false,
        };
        signature::UnparsedPublicKey::new(scheme, &self.spki)
            .verify(message, sig)
            .is_ok()
    }

    /// The JWK (RFC 7517) of this key, as `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> Value {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let info = x509_parser::x509::SubjectPublicKeyInfo::from_der(&self.spki)
            .ok()
            .map(|(_, i)| i);
        let parsed = info.as_ref().and_then(|i| i.parsed().ok());
        let trim = |b: &[u8]| {
            let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
            B64.encode(&b[i..])
        };
        match parsed {
            Some(PublicKey::RSA(r)) => json!({
                "use": "sig", "kty": "RSA", "kid": self.kid, "alg": self.alg,
                "n": trim(r.modulus), "e": trim(r.exponent),
            }),
            Some(PublicKey::EC(p)) => {
                let d = p.data();
                let (x, y) = d
                    .get(1..)
                    .map(|xy| xy.split_at(xy.len() / 2))
                    .unwrap_or((&[], &[]));
                json!({
                    "use": "sig", "kty": "EC", "kid": self.kid, "alg": self.alg,
                    "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y),
                })
            }
            _ => json!({"kid": self.kid}),
        }
    }
}

/// A new P-256 key as a PKCS#8 PEM (`PRIVATE KEY`).
pub fn generate_pem() -> Result<String, aws_lc_rs::error::Unspecified> {
    let k = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)?;
    let der = k.to_pkcs8v1()?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

/// Splits a compact JWS into (header, claims, signed part, signature); `None` when it
/// is not one.
pub fn split(token: &str) -> Option<(Value, Value, String, Vec<u8>)> {
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
    let claims: Value = serde_json::from_slice(&B64.decode(c).ok()?).ok()?;
    if !header.is_object() || !claims.is_object() {
        return None;
    }
    Some((header, claims, format!("{h}.{c}"), B64.decode(s).ok()?))
}
