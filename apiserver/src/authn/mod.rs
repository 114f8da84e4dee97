//! Authentication: who is asking.
//!
//! Upstream's chain, in its order; the first authenticator that recognises the request
//! wins, and an error from one only matters when none succeeds:
//!
//! ```text
//! requestheader (front proxy: a client certificate from --requestheader-client-ca-file,
//!                then X-Remote-User / X-Remote-Group / X-Remote-Extra-*)
//!   -> x509 (--client-ca-file: CN is the user, O the groups)
//!   -> bearer tokens: --token-auth-file, service account JWTs, bootstrap tokens
//!   -> anonymous (--anonymous-auth), only when nothing failed
//! ```
//!
//! Presented but unrecognised credentials are a 401, never anonymous access. Every
//! authenticated user gains `system:authenticated`; the anonymous user is
//! `system:anonymous` in `system:unauthenticated`.
//!
//! The TLS layer requests a client certificate and accepts any
//! ([`component_base::tls::RequestClientCert`]); chains are verified here, so a
//! certificate from the wrong CA is a 401 with upstream's body rather than a failed
//! handshake.

pub mod bootstrap;
mod requestheader;
mod tokenfile;
mod x509;

use std::collections::BTreeMap;
use std::path::Path;

use http::HeaderMap;
use rustls::pki_types::CertificateDer;

pub use requestheader::RequestHeader;
pub use tokenfile::TokenFile;
pub use x509::{X509, subject};

/// `system:authenticated`.
pub const AUTHENTICATED: &str = "system:authenticated";
/// `system:unauthenticated`.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// `system:anonymous`.
pub const ANONYMOUS: &str = "system:anonymous";

/// An authenticated identity, as upstream's `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Groups, including `system:authenticated`.
    pub groups: Vec<String>,
    /// Extra attributes (scopes, the pod a service account token is bound to, ...).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with a name and groups.
    pub fn new(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Default::default()
        }
    }

    /// The anonymous user.
    pub fn anonymous() -> UserInfo {
        UserInfo::new(ANONYMOUS, &[UNAUTHENTICATED])
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Errors loading authenticator configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A malformed token file line, in upstream's words.
    #[error(
        "token file '{path}' must have at least 3 columns (token, user name, user uid), found {found}"
    )]
    Columns {
        /// The file.
        path: String,
        /// Columns found.
        found: usize,
    },
    /// A CA bundle could not be used.
    #[error("{flag}: {message}")]
    Ca {
        /// The flag that named it.
        flag: &'static str,
        /// Why.
        message: String,
    },
}

/// Why a request is not authenticated: both are a 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    /// It carried no credentials and anonymous access is off.
    #[error("no credentials")]
    NoCredentials,
    /// Its credentials were refused.
    #[error("{0}")]
    Rejected(String),
}

/// The credentials a request carries.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    /// The request's headers (`Authorization`, front-proxy headers, WebSocket
    /// subprotocols).
    pub headers: &'a HeaderMap,
    /// The client's certificate chain from the TLS handshake, end entity first.
    pub certs: &'a [CertificateDer<'static>],
}

/// Something that may recognise a bearer token: `Ok(None)` is "not mine".
pub trait TokenAuthenticator: Send + Sync {
    /// Authenticates `token` for the API's own audiences.
    fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, String>;
    /// Authenticates `token` for `audiences` (the API's when empty): the user and the
    /// audiences it is valid for. Authenticators whose tokens carry no audience are
    /// valid for the API's audiences only, as upstream's audience-agnostic wrapper.
    fn authenticate_token_for(
        &self,
        token: &str,
        audiences: &[String],
        api_audiences: &[String],
    ) -> Result<Option<(UserInfo, Vec<String>)>, String> {
        let valid: Vec<String> = if audiences.is_empty() {
            api_audiences.to_vec()
        } else {
            audiences
                .iter()
                .filter(|a| api_audiences.contains(a))
                .cloned()
                .collect()
        };
        if valid.is_empty() {
            return Ok(None);
        }
        Ok(self.authenticate_token(token)?.map(|u| (u, valid)))
    }
}

/// The authenticator chain.
#[derive(Default)]
pub struct Authenticator {
    /// `--requestheader-*`.
    pub request_header: Option<RequestHeader>,
    /// `--client-ca-file`.
    pub x509: Option<X509>,
    /// Bearer-token authenticators in upstream's order: the token file, service
    /// account tokens, bootstrap tokens.
    pub tokens: Vec<Box<dyn TokenAuthenticator>>,
    /// `--anonymous-auth`.
    pub anonymous: bool,
    /// `--api-audiences`: what tokens without an audience of their own are for.
    pub api_audiences: Vec<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("request_header", &self.request_header.is_some())
            .field("x509", &self.x509.is_some())
            .field("tokens", &self.tokens.len())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

/// The WebSocket subprotocol prefix that carries a bearer token.
const PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// The bearer token of a request: `Authorization: Bearer <token>`, or for WebSocket
/// clients that cannot set headers, the `base64url.bearer.authorization.k8s.io.<b64>`
/// subprotocol (with upstream's errors for a malformed one, which is a 401).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, String> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut parts = v.trim().splitn(2, ' ');
        let scheme = parts.next().unwrap_or("");
        let token = parts.next().unwrap_or("").trim();
        if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
            return Ok(Some(token.to_owned()));
        }
        return Ok(None);
    }
    let protocols: Vec<&str> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let tokens: Vec<&str> = protocols
        .iter()
        .filter_map(|p| p.strip_prefix(PROTOCOL_PREFIX))
        .collect();
    match tokens.as_slice() {
        [] => Ok(None),
        [_, _, ..] => Err("multiple base64.bearer.authorization tokens specified".to_owned()),
        [enc] => {
            use base64::Engine;
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(enc.trim_end_matches('='))
                .map_err(|_| "invalid base64.bearer.authorization token encoding".to_owned())?;
            let token = String::from_utf8(raw)
                .map_err(|_| "invalid base64.bearer.authorization token encoding".to_owned())?;
            if token.is_empty() {
                return Err("invalid base64.bearer.authorization token".to_owned());
            }
            if protocols.len() < 2 {
                return Err("missing additional subprotocol".to_owned());
            }
            Ok(Some(token))
        }
    }
}

/// Removes the bearer-token subprotocol from `Sec-WebSocket-Protocol` once it has
/// been read, so that it is never forwarded to a kubelet or a pod.
pub fn strip_token_protocol(headers: &mut HeaderMap) {
    let protocols: Vec<String> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if !protocols.iter().any(|p| p.starts_with(PROTOCOL_PREFIX)) {
        return;
    }
    headers.remove(http::header::SEC_WEBSOCKET_PROTOCOL);
    let kept: Vec<String> = protocols
        .into_iter()
        .filter(|p| !p.starts_with(PROTOCOL_PREFIX))
        .collect();
    if let Ok(v) = http::HeaderValue::from_str(&kept.join(", "))
        && !kept.is_empty()
    {
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
}

/// Undoes the percent-encoding of an extra key (`X-Remote-Extra-Scopes%2fa`,
/// `Impersonate-Extra-...`).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Authenticator {
    /// Builds the x509 and requestheader authenticators from their flags.
    pub fn with_client_ca(mut self, client_ca: Option<&Path>) -> Result<Self, AuthnError> {
        if let Some(ca) = client_ca {
            self.x509 = Some(X509::new(ca, "--client-ca-file")?);
        }
        Ok(self)
    }

    /// TokenReview: who `token` is, for `audiences` (the API's when empty), and the
    /// audiences it is valid for.
    pub fn review_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(UserInfo, Vec<String>), String> {
        let mut errors = Vec::new();
        for t in &self.tokens {
            match t.authenticate_token_for(token, audiences, &self.api_audiences) {
                Ok(Some((mut u, auds))) => {
                    if !u.in_group(AUTHENTICATED) {
                        u.groups.push(AUTHENTICATED.to_owned());
                    }
                    return Ok((u, auds));
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        errors.push("invalid bearer token".to_owned());
        Err(format!("[{}]", errors.join(", ")))
    }

    /// Authenticates a request. `Err` is a 401 (with the reasons, for the log).
    pub fn authenticate(&self, creds: Credentials<'_>) -> Result<UserInfo, Unauthenticated> {
        self.authenticate_request(creds).map(|(u, _)| u)
    }

    /// [`Authenticator::authenticate`], also telling whether a front proxy vouched
    /// for the user (its headers are then removed from the request, as upstream's
    /// `ClearAuthenticationHeaders`, so that nothing passes them on).
    pub fn authenticate_request(
        &self,
        creds: Credentials<'_>,
    ) -> Result<(UserInfo, bool), Unauthenticated> {
        let mut errors = Vec::new();
        if let Some(rh) = &self.request_header {
            match rh.authenticate(creds) {
                Ok(Some(u)) => return Ok((Self::finish(u), true)),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        let found = self.identify(creds, &mut errors);
        match found {
            Some(user) => Ok((Self::finish(user), false)),
            None if errors.is_empty() && self.anonymous => Ok((UserInfo::anonymous(), false)),
            None if errors.is_empty() => Err(Unauthenticated::NoCredentials),
            None => Err(Unauthenticated::Rejected(errors.join("; "))),
        }
    }

    /// Every authenticated user is in system:authenticated.
    fn finish(mut user: UserInfo) -> UserInfo {
        if !user.in_group(AUTHENTICATED) && user.name != ANONYMOUS {
            user.groups.push(AUTHENTICATED.to_owned());
        }
        user
    }

    /// The headers the front proxy authenticator reads, to remove once it has.
    pub fn clear_request_headers(&self, headers: &mut http::HeaderMap) {
        if let Some(rh) = &self.request_header {
            rh.clear(headers);
        }
    }

    fn identify(&self, creds: Credentials<'_>, errors: &mut Vec<String>) -> Option<UserInfo> {
        if let Some(x) = &self.x509 {
            match x.authenticate(creds.certs) {
                Ok(Some(u)) => return Some(u),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        match bearer_token(creds.headers) {
            Ok(Some(token)) => {
                for t in &self.tokens {
                    match t.authenticate_token(&token) {
                        Ok(Some(u)) => return Some(u),
                        Ok(None) => {}
                        Err(e) => errors.push(e),
                    }
                }
                errors.push("invalid bearer token".to_owned());
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
        None
    }
}

#[cfg(test)]
mod tests;
