use http::{HeaderMap, HeaderValue};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

use super::*;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), issuer.pem()).unwrap();
        Ca { issuer, dir }
    }
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }
    fn client(&self, cn: &str, orgs: &[&str]) -> Vec<CertificateDer<'static>> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            p.distinguished_name.push(DnType::OrganizationName, *o);
        }
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p
            .signed_by(&KeyPair::generate().unwrap(), &self.issuer)
            .unwrap();
        vec![cert.der().clone()]
    }
}

fn chain(tokens: &str, ca: Option<&Ca>, anonymous: bool) -> Authenticator {
    let mut a = Authenticator {
        anonymous,
        ..Default::default()
    }
    .with_client_ca(ca.map(|c| c.path()).as_deref())
    .unwrap();
    a.tokens
        .push(Box::new(TokenFile::parse(tokens, "tokens.csv").unwrap()));
    a
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn client_certificates_name_the_user_and_groups() {
    let ca = Ca::new("ca");
    let a = chain("", Some(&ca), false);
    let h = HeaderMap::new();
    // rcgen keeps one value per attribute type, so one Organization here.
    let certs = ca.client("alice", &["system:masters"]);
    let u = a
        .authenticate(Credentials {
            headers: &h,
            certs: &certs,
        })
        .unwrap();
    assert_eq!(u.name, "alice");
    assert_eq!(u.groups, ["system:masters", AUTHENTICATED]);
}

#[test]
fn a_certificate_from_another_ca_is_refused_even_with_anonymous_on() {
    let ca = Ca::new("ca");
    let other = Ca::new("other");
    let a = chain("", Some(&ca), true);
    let h = HeaderMap::new();
    let certs = other.client("mallory", &["system:masters"]);
    let e = a
        .authenticate(Credentials {
            headers: &h,
            certs: &certs,
        })
        .unwrap_err();
    assert!(e.to_string().contains("mallory"), "{e}");
}

#[test]
fn a_good_token_wins_over_a_bad_certificate() {
    let ca = Ca::new("ca");
    let other = Ca::new("other");
    let a = chain("tok,bob,42\n", Some(&ca), false);
    let h = headers(&[("authorization", "Bearer tok")]);
    let certs = other.client("mallory", &[]);
    let u = a
        .authenticate(Credentials {
            headers: &h,
            certs: &certs,
        })
        .unwrap();
    assert_eq!((u.name.as_str(), u.uid.as_str()), ("bob", "42"));
}

#[test]
fn anonymous_only_without_credentials() {
    let a = chain("tok,bob,1\n", None, true);
    let none = HeaderMap::new();
    let creds = |h| Credentials {
        headers: h,
        certs: &[],
    };
    assert_eq!(a.authenticate(creds(&none)).unwrap(), UserInfo::anonymous());
    let bad = headers(&[("authorization", "Bearer nope")]);
    assert_eq!(
        a.authenticate(creds(&bad)).unwrap_err(),
        Unauthenticated::Rejected("invalid bearer token".to_owned())
    );
    let off = chain("tok,bob,1\n", None, false);
    assert!(off.authenticate(creds(&none)).is_err());
    let ok = headers(&[("authorization", "bearer tok")]);
    assert_eq!(off.authenticate(creds(&ok)).unwrap().name, "bob");
}

#[test]
fn websocket_subprotocol_tokens() {
    use base64::Engine;
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("tok");
    let h = headers(&[(
        "sec-websocket-protocol",
        &format!("v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.{enc}"),
    )]);
    assert_eq!(bearer_token(&h).unwrap().as_deref(), Some("tok"));
    assert_eq!(
        bearer_token(&headers(&[("authorization", "Basic x")])),
        Ok(None)
    );
    // Malformed, alone or repeated: refused (a 401, never anonymous).
    let alone = headers(&[(
        "sec-websocket-protocol",
        &format!("base64url.bearer.authorization.k8s.io.{enc}"),
    )]);
    assert_eq!(
        bearer_token(&alone).unwrap_err(),
        "missing additional subprotocol"
    );
    let bad = headers(&[(
        "sec-websocket-protocol",
        "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.!!!",
    )]);
    assert_eq!(
        bearer_token(&bad).unwrap_err(),
        "invalid base64.bearer.authorization token encoding"
    );
    let a = chain("tok,bob,1\n", None, true);
    assert!(
        a.authenticate(Credentials {
            headers: &bad,
            certs: &[]
        })
        .is_err()
    );
    // The token protocol is not forwarded.
    let mut fwd = h.clone();
    strip_token_protocol(&mut fwd);
    assert_eq!(
        fwd.get("sec-websocket-protocol").unwrap(),
        "v5.channel.k8s.io"
    );
}

#[test]
fn front_proxy_headers() {
    let proxy_ca = Ca::new("front-proxy-ca");
    let rh = RequestHeader::new(
        &proxy_ca.path(),
        vec!["front-proxy-client".into()],
        vec!["X-Remote-User".into()],
        Vec::new(),
        vec!["X-Remote-Group".into()],
        vec!["X-Remote-Extra-".into()],
    )
    .unwrap();
    let a = Authenticator {
        request_header: Some(rh),
        ..Default::default()
    };
    let h = headers(&[
        ("x-remote-user", "carol"),
        ("x-remote-group", "g1"),
        ("x-remote-group", "g2"),
        ("x-remote-extra-scopes%2fa", "s"),
    ]);
    let certs = proxy_ca.client("front-proxy-client", &[]);
    let u = a
        .authenticate(Credentials {
            headers: &h,
            certs: &certs,
        })
        .unwrap();
    assert_eq!(u.name, "carol");
    assert_eq!(u.groups, ["g1", "g2", AUTHENTICATED]);
    assert_eq!(u.extra["scopes/a"], ["s"]);
    // The proxy's headers are reported, and cleared, once they have been used.
    let (_, by_proxy) = a
        .authenticate_request(Credentials {
            headers: &h,
            certs: &certs,
        })
        .unwrap();
    assert!(by_proxy);
    let mut cleared = h.clone();
    cleared.insert("accept", "application/json".parse().unwrap());
    a.clear_request_headers(&mut cleared);
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    // A proxy certificate with a name outside the allowed list is refused.
    let certs = proxy_ca.client("someone-else", &[]);
    assert!(
        a.authenticate(Credentials {
            headers: &h,
            certs: &certs,
        })
        .unwrap_err()
        .to_string()
        .contains("not in the allowed list")
    );
}
