//! `--client-ca-file`: client certificates. The chain must verify to the CA with the
//! client-auth usage; the subject's CommonName is the user and its Organizations are
//! the groups, as upstream's `CommonNameUserConversion`.

use std::path::Path;

use rustls::pki_types::CertificateDer;

use super::{AuthnError, UserInfo};

pub use component_base::x509::subject;

/// Verifies client certificate chains against one CA bundle.
pub struct X509 {
    ca: component_base::x509::ClientCa,
}

impl X509 {
    /// Trusts the certificates in `ca` (named by `flag` in errors).
    pub fn new(ca: &Path, flag: &'static str) -> Result<X509, AuthnError> {
        let ca = component_base::x509::ClientCa::new(ca)
            .map_err(|message| AuthnError::Ca { flag, message })?;
        Ok(X509 { ca })
    }

    /// Verifies the chain; `Ok(false)` when there is none.
    pub fn verify(&self, certs: &[CertificateDer<'static>]) -> Result<bool, String> {
        self.ca.verify(certs)
    }

    /// The user a verified chain names; `Ok(None)` without a certificate or without a
    /// CommonName.
    pub fn authenticate(
        &self,
        certs: &[CertificateDer<'static>],
    ) -> Result<Option<UserInfo>, String> {
        Ok(self.ca.user(certs)?.map(|(name, groups)| UserInfo {
            name,
            groups,
            ..Default::default()
        }))
    }
}
