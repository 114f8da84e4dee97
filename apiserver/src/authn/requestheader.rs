//! `--requestheader-*`: a front proxy (an HA load balancer, an aggregated server's
//! caller) that authenticated the user itself presents a client certificate from
//! `--requestheader-client-ca-file`, whose CommonName is in
//! `--requestheader-allowed-names` (any, when the list is empty), and names the user
//! in headers.

use std::collections::BTreeMap;
use std::path::Path;

use super::x509::{X509, subject};
use super::{AuthnError, Credentials, UserInfo, unescape};

/// The front-proxy authenticator.
pub struct RequestHeader {
    ca: X509,
    /// `--requestheader-allowed-names`.
    pub allowed_names: Vec<String>,
    /// `--requestheader-username-headers`.
    pub username_headers: Vec<String>,
    /// `--requestheader-uid-headers`.
    pub uid_headers: Vec<String>,
    /// `--requestheader-group-headers`.
    pub group_headers: Vec<String>,
    /// `--requestheader-extra-headers-prefix`.
    pub extra_prefixes: Vec<String>,
}

impl RequestHeader {
    /// Trusts front proxies with certificates from `ca`.
    pub fn new(
        ca: &Path,
        allowed_names: Vec<String>,
        username_headers: Vec<String>,
        uid_headers: Vec<String>,
        group_headers: Vec<String>,
        extra_prefixes: Vec<String>,
    ) -> Result<RequestHeader, AuthnError> {
        Ok(RequestHeader {
            ca: X509::new(ca, "--requestheader-client-ca-file")?,
            allowed_names,
            username_headers,
            uid_headers,
            group_headers,
            extra_prefixes,
        })
    }

    /// Removes the headers it reads (names, uids, groups, extras).
    pub fn clear(&self, headers: &mut http::HeaderMap) {
        for h in self
            .username_headers
            .iter()
            .chain(&self.uid_headers)
            .chain(&self.group_headers)
        {
            headers.remove(h.as_str());
        }
        let prefixes: Vec<String> = self
            .extra_prefixes
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect();
        let extras: Vec<http::HeaderName> = headers
            .keys()
            .filter(|k| prefixes.iter().any(|p| k.as_str().starts_with(p.as_str())))
            .cloned()
            .collect();
        for k in extras {
            headers.remove(k);
        }
    }

    /// The user the proxy names; `Ok(None)` without a proxy certificate or user header.
    pub fn authenticate(&self, creds: Credentials<'_>) -> Result<Option<UserInfo>, String> {
        if !self.ca.verify(creds.certs)? {
            return Ok(None);
        }
        let (cn, _) = subject(&creds.certs[0])?;
        if !self.allowed_names.is_empty() && !self.allowed_names.contains(&cn) {
            return Err(format!(
                "x509: subject with cn={cn} is not in the allowed list"
            ));
        }
        let h = creds.headers;
        let first = |names: &[String]| {
            names
                .iter()
                .filter_map(|n| h.get(n.as_str()).and_then(|v| v.to_str().ok()))
                .map(str::trim)
                .find(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let Some(name) = first(&self.username_headers) else {
            return Ok(None);
        };
        let mut groups = Vec::new();
        for g in &self.group_headers {
            for v in h.get_all(g.as_str()) {
                if let Ok(v) = v.to_str() {
                    groups.push(v.to_owned());
                }
            }
        }
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in h {
            for p in &self.extra_prefixes {
                let p = p.to_ascii_lowercase();
                if let Some(key) = k.as_str().strip_prefix(p.as_str())
                    && let Ok(v) = v.to_str()
                {
                    extra.entry(unescape(key)).or_default().push(v.to_owned());
                }
            }
        }
        Ok(Some(UserInfo {
            name,
            uid: first(&self.uid_headers).unwrap_or_default(),
            groups,
            extra,
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn extra_keys_are_unescaped() {
        assert_eq!(crate::authn::unescape("scopes%2fa"), "scopes/a");
        assert_eq!(crate::authn::unescape("plain"), "plain");
        assert_eq!(crate::authn::unescape("bad%2"), "bad%2");
    }
}
