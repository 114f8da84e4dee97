//! The CertificateSigningRequest plugins, as upstream's:
//!
//! - CertificateApproval: approving or denying (`certificatesigningrequests/approval`)
//!   needs the `approve` verb on `signers` in `certificates.k8s.io`, named by the
//!   request's `signerName` or its domain wildcard (`kubernetes.io/*`).
//! - CertificateSigning: changing `status.certificate` or the conditions
//!   (`.../status`) needs `sign` on the signer likewise.
//! - CertificateSubjectRestriction: nobody may ask the
//!   `kubernetes.io/kube-apiserver-client` signer for a certificate in
//!   `system:masters`.

use futures::future::BoxFuture;
use serde_json::Value;

use super::pods::forbidden;
use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::authz::Attributes;
use crate::error::ApiError;

/// The signer for client certificates the apiserver trusts.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

fn is_csr(req: &AdmissionRequest, subresource: Option<&str>) -> bool {
    req.resource.group == "certificates.k8s.io"
        && req.resource.plural == "certificatesigningrequests"
        && req.subresource.as_deref() == subresource
}

fn signer(obj: Option<&Value>) -> String {
    obj.and_then(|o| o.pointer("/spec/signerName"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// Upstream's `IsAuthorizedForSignerName`: `verb` on `signers/<name>`, else on
/// `signers/<domain>/*`.
fn authorized_for_signer(api: &Api, req: &AdmissionRequest, verb: &str, signer: &str) -> bool {
    let ask = |name: &str| {
        let mut a = Attributes::resource(verb, "certificates.k8s.io", "signers", "", name);
        a.version = "*".into();
        api.authorizer.authorize(&req.user, &a).allowed()
    };
    if ask(signer) {
        return true;
    }
    let domain = signer.split('/').next().unwrap_or(signer);
    ask(&format!("{domain}/*"))
}

/// CertificateApproval.
pub struct CertificateApproval;

impl Plugin for CertificateApproval {
    fn name(&self) -> &'static str {
        "CertificateApproval"
    }
    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if !is_csr(req, Some("approval")) {
                return Ok(());
            }
            let signer = signer(req.object.as_ref());
            if authorized_for_signer(api, req, "approve", &signer) {
                return Ok(());
            }
            Err(forbidden(
                req,
                &format!("user not permitted to approve requests with signerName {signer:?}"),
            ))
        })
    }
}

/// CertificateSigning.
pub struct CertificateSigning;

impl Plugin for CertificateSigning {
    fn name(&self) -> &'static str {
        "CertificateSigning"
    }
    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if !is_csr(req, Some("status")) {
                return Ok(());
            }
            // Only a change to the certificate or the conditions is a signer's act.
            let at = |o: Option<&Value>, p: &str| o.and_then(|o| o.pointer(p)).cloned();
            let unchanged = |p: &str| at(req.object.as_ref(), p) == at(req.old_object.as_ref(), p);
            if unchanged("/status/certificate") && unchanged("/status/conditions") {
                return Ok(());
            }
            let signer = signer(req.old_object.as_ref().or(req.object.as_ref()));
            if authorized_for_signer(api, req, "sign", &signer) {
                return Ok(());
            }
            Err(forbidden(
                req,
                &format!("user not permitted to sign requests with signerName {signer:?}"),
            ))
        })
    }
}

/// The subject organizations (groups) of a PEM certificate request.
pub fn requested_groups(pem: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(pem).map_err(|e| e.to_string())?;
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE REQUEST-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if b64.is_empty() {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| e.to_string())?;
    use x509_parser::prelude::FromDer as _;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| e.to_string())?;
    Ok(csr
        .certification_request_info
        .subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect())
}

/// CertificateSubjectRestriction.
pub struct CertificateSubjectRestriction;

impl Plugin for CertificateSubjectRestriction {
    fn name(&self) -> &'static str {
        "CertificateSubjectRestriction"
    }
    fn validate<'a>(
        &'a self,
        _api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if req.operation != Operation::Create || !is_csr(req, None) {
                return Ok(());
            }
            let signer = signer(req.object.as_ref());
            if signer != KUBE_APISERVER_CLIENT {
                return Ok(());
            }
            use base64::Engine as _;
            let pem = req
                .object
                .as_ref()
                .and_then(|o| o.pointer("/spec/request"))
                .and_then(Value::as_str)
                .map(|b| base64::engine::general_purpose::STANDARD.decode(b))
                .unwrap_or(Ok(Vec::new()))
                .map_err(|e| forbidden(req, &format!("failed to parse CSR: {e}")))?;
            let groups = requested_groups(&pem)
                .map_err(|e| forbidden(req, &format!("failed to parse CSR: {e}")))?;
            if groups.iter().any(|g| g == crate::authz::MASTERS) {
                return Err(forbidden(
                    req,
                    &format!("use of {signer} signer with system:masters group is not allowed"),
                ));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requested_groups_are_read_from_the_csr() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mallory");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        assert_eq!(
            requested_groups(csr.as_bytes()).unwrap(),
            ["system:masters"]
        );
        assert!(
            requested_groups(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
