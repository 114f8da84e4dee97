//! Client certificates against a CA bundle, as upstream's x509 authenticator: the
//! chain must verify to the CA with the client-auth usage; the subject's last
//! CommonName is the user and its Organizations are the groups
//! (`CommonNameUserConversion`). Shared by the apiserver's `--client-ca-file` and
//! front-proxy authenticators and the components' delegated authentication.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

/// Verifies client certificate chains against one CA bundle.
pub struct ClientCa {
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

impl ClientCa {
    /// Trusts the certificates in `ca`.
    pub fn new(ca: &Path) -> Result<ClientCa, String> {
        let roots = crate::tls::load_roots(ca).map_err(|e| e.to_string())?;
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ClientCa { verifier })
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

    /// The (user, groups) a verified chain names; `Ok(None)` without a certificate
    /// or without a CommonName.
    pub fn user(
        &self,
        certs: &[CertificateDer<'static>],
    ) -> Result<Option<(String, Vec<String>)>, String> {
        if !self.verify(certs)? {
            return Ok(None);
        }
        let (cn, groups) = subject(&certs[0])?;
        Ok((!cn.is_empty()).then_some((cn, groups)))
    }
}
