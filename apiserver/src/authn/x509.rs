//! `--client-ca-file`: client certificates. The chain must verify to the CA with the
//! client-auth usage; the subject's CommonName is the user and its Organizations are
//! the groups, as upstream's `CommonNameUserConversion`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use super::{AuthnError, UserInfo};

/// Verifies client certificate chains against one CA bundle.
pub struct X509 {
    verifier: Arc<dyn ClientCertVerifier>,
}

/// A certificate's subject: (CommonName, Organizations).
pub fn subject(der: &[u8]) -> Result<(String, Vec<String>), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("x509: malformed certificate: {e}"))?;
    let subject = cert.subject();
    // Go's pkix.Name keeps the last CommonName attribute when there are several.
    let cn = subject
        .iter_common_name()
        .last()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("")
        .to_owned();
    let orgs = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_owned)
        .collect();
    Ok((cn, orgs))
}

impl X509 {
    /// Trusts the certificates in `ca` (named by `flag` in errors).
    pub fn new(ca: &Path, flag: &'static str) -> Result<X509, AuthnError> {
        let err = |message: String| AuthnError::Ca { flag, message };
        let roots = component_base::tls::load_roots(ca).map_err(|e| err(e.to_string()))?;
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| err(e.to_string()))?;
        Ok(X509 { verifier })
    }

    /// Verifies the chain; `Ok(false)` when there is none.
    pub fn verify(&self, certs: &[CertificateDer<'static>]) -> Result<bool, String> {
        let Some((leaf, intermediates)) = certs.split_first() else {
            return Ok(false);
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| {
                let who = subject(leaf).map(|s| s.0).unwrap_or_default();
                format!("verifying certificate with CN {who:?}: {e}")
            })?;
        Ok(true)
    }

    /// The user a verified chain names; `Ok(None)` without a certificate or without a
    /// CommonName.
    pub fn authenticate(
        &self,
        certs: &[CertificateDer<'static>],
    ) -> Result<Option<UserInfo>, String> {
        if !self.verify(certs)? {
            return Ok(None);
        }
        let (cn, groups) = subject(&certs[0])?;
        if cn.is_empty() {
            return Ok(None);
        }
        Ok(Some(UserInfo {
            name: cn,
            groups,
            ..Default::default()
        }))
    }
}
