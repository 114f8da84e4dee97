use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

use super::*;

#[derive(Default)]
struct Objects(HashMap<(String, String, String), Value>);

impl Objects {
    fn with(mut self, kind: &str, ns: &str, name: &str, extra: Value) -> Self {
        let mut o =
            json!({"metadata": {"name": name, "namespace": ns, "uid": format!("{name}-uid")}});
        if let (Some(m), Some(e)) = (o["metadata"].as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        self.0.insert((kind.into(), ns.into(), name.into()), o);
        self
    }
}

impl Lookup for Objects {
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.0
            .get(&(kind.into(), namespace.into(), name.into()))
            .cloned()
            .map(Arc::new)
    }
}

const ISS: &str = "https://kubernetes.default.svc.cluster.local";

fn ec_key() -> Key {
    let k = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    Key::Ec(Arc::new(k))
}

fn rsa_key() -> Key {
    Key::Rsa(Arc::new(
        RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
    ))
}

fn now() -> i64 {
    1_800_000_000
}

fn objects() -> Objects {
    Objects::default()
        .with("ServiceAccount", "dev", "builder", json!({}))
        .with("Pod", "dev", "p", json!({}))
        .with(
            "Pod",
            "dev",
            "dying",
            json!({"deletionTimestamp": "2020-01-01T00:00:00Z"}),
        )
        .with("Node", "", "n1", json!({}))
}

fn sa() -> Value {
    json!({"metadata": {"name": "builder", "namespace": "dev", "uid": "builder-uid"}})
}

fn authn(key: &Key, lookup: Objects) -> Authenticator {
    Authenticator::new(
        vec![key.verifying_key()],
        vec![ISS.into()],
        vec![ISS.into()],
        Box::new(lookup),
    )
    .with_clock(now)
}

fn pod(name: &str) -> Binding {
    Binding {
        kind: "Pod".into(),
        name: name.into(),
        uid: format!("{name}-uid"),
    }
}

#[test]
fn issued_tokens_verify_as_the_service_account() {
    for key in [ec_key(), rsa_key()] {
        let signer = Signer::new(key.clone(), ISS);
        let node = Binding {
            kind: "Node".into(),
            name: "n1".into(),
            uid: "n1-uid".into(),
        };
        let (token, exp) = signer.issue(
            "dev",
            &sa(),
            &[ISS.into()],
            3600,
            true,
            Some(&pod("p")),
            Some(&node),
            now(),
        );
        assert_eq!(exp, now() + 3600);
        let u = authn(&key, objects()).verify(&token, &[]).unwrap().unwrap();
        assert_eq!(u.name, "system:serviceaccount:dev:builder");
        assert_eq!(u.uid, "builder-uid");
        assert_eq!(
            u.groups,
            ["system:serviceaccounts", "system:serviceaccounts:dev"]
        );
        assert_eq!(u.extra["authentication.kubernetes.io/pod-name"], ["p"]);
        assert_eq!(u.extra["authentication.kubernetes.io/node-name"], ["n1"]);
        assert!(u.extra["authentication.kubernetes.io/credential-id"][0].starts_with("JTI="));
        let (h, c, _, _) = jwt::split(&token).unwrap();
        assert_eq!(h["kid"], json!(key.verifying_key().kid));
        assert_eq!(c["sub"], "system:serviceaccount:dev:builder");
        assert_eq!(
            c["kubernetes.io"]["pod"],
            json!({"name": "p", "uid": "p-uid"})
        );
    }
}

#[test]
fn bad_tokens_are_refused() {
    let key = ec_key();
    let signer = Signer::new(key.clone(), ISS);
    let a = authn(&key, objects());
    // Another audience.
    let (t, _) = signer.issue(
        "dev",
        &sa(),
        &["vault".into()],
        3600,
        false,
        None,
        None,
        now(),
    );
    assert_eq!(
        a.verify(&t, &[]).unwrap_err(),
        "token audiences is invalid for the target audiences"
    );
    assert!(a.verify(&t, &["vault".into()]).unwrap().is_some());
    // Expired, beyond the leeway.
    let (t, _) = signer.issue(
        "dev",
        &sa(),
        &[ISS.into()],
        600,
        false,
        None,
        None,
        now() - 700,
    );
    assert_eq!(
        a.verify(&t, &[]).unwrap_err(),
        "service account token has expired"
    );
    // Signed by another key.
    let (t, _) = Signer::new(ec_key(), ISS).issue(
        "dev",
        &sa(),
        &[ISS.into()],
        3600,
        false,
        None,
        None,
        now(),
    );
    assert!(a.verify(&t, &[]).is_err());
    // Tampered claims.
    let (t, _) = signer.issue("dev", &sa(), &[ISS.into()], 3600, false, None, None, now());
    let parts: Vec<&str> = t.split('.').collect();
    let (_, mut claims, _, _) = jwt::split(&t).unwrap();
    claims["sub"] = json!("system:serviceaccount:kube-system:root");
    use base64::Engine;
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert!(a.verify(&forged, &[]).is_err());
    // Bound to a pod that is gone, or going.
    let (t, _) = signer.issue(
        "dev",
        &sa(),
        &[ISS.into()],
        3600,
        false,
        Some(&pod("gone")),
        None,
        now(),
    );
    assert_eq!(a.verify(&t, &[]).unwrap_err(), "pods \"gone\" not found");
    let (t, _) = signer.issue(
        "dev",
        &sa(),
        &[ISS.into()],
        3600,
        false,
        Some(&pod("dying")),
        None,
        now(),
    );
    assert_eq!(a.verify(&t, &[]).unwrap_err(), "Token has been invalidated");
    // The service account was recreated.
    let mut other = sa();
    other["metadata"]["uid"] = json!("old-uid");
    let (t, _) = signer.issue("dev", &other, &[ISS.into()], 3600, false, None, None, now());
    assert!(
        a.verify(&t, &[])
            .unwrap_err()
            .contains("does not match claim")
    );
    // Not ours: another issuer, or not a JWT at all.
    let (t, _) = Signer::new(key.clone(), "https://elsewhere").issue(
        "dev",
        &sa(),
        &[ISS.into()],
        3600,
        false,
        None,
        None,
        now(),
    );
    assert!(a.verify(&t, &[]).unwrap().is_none());
    assert!(a.verify("abc", &[]).unwrap().is_none());
    assert!(a.verify("a.b.c", &[]).unwrap().is_none());
}

#[test]
fn kubelet_requests_are_extended() {
    let key = ec_key();
    let signer = Signer::new(key, ISS);
    let (t, exp) = signer.issue(
        "dev",
        &sa(),
        &[ISS.into()],
        EXTENDED_REQUEST_SECS,
        true,
        None,
        None,
        now(),
    );
    assert_eq!(exp, now() + EXTENDED_SECS);
    let (_, c, _, _) = jwt::split(&t).unwrap();
    assert_eq!(
        c["kubernetes.io"]["warnafter"],
        json!(now() + EXTENDED_REQUEST_SECS)
    );
}

#[test]
fn pem_keys_and_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let k = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let pkcs8 = k.to_pkcs8v1().unwrap();
    let spki = k.public_key().as_der().unwrap();
    let pem = |label: &str, der: &[u8]| {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    std::fs::write(
        dir.path().join("sa.key"),
        pem("PRIVATE KEY", pkcs8.as_ref()),
    )
    .unwrap();
    std::fs::write(dir.path().join("sa.pub"), pem("PUBLIC KEY", spki.as_ref())).unwrap();
    let key = Key::load_private(&dir.path().join("sa.key")).unwrap();
    let public = VerifyingKey::load(&dir.path().join("sa.pub")).unwrap();
    assert_eq!(public[0].kid, key.verifying_key().kid);
    // The private key file also yields its public half.
    assert_eq!(
        VerifyingKey::load(&dir.path().join("sa.key")).unwrap()[0].kid,
        public[0].kid
    );
    std::fs::write(dir.path().join("junk"), "not pem").unwrap();
    assert!(Key::load_private(&dir.path().join("junk")).is_err());
    assert!(VerifyingKey::load(&dir.path().join("junk")).is_err());

    let jwk = public[0].jwk();
    assert_eq!(
        (
            jwk["kty"].as_str(),
            jwk["crv"].as_str(),
            jwk["alg"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
    let rsa = rsa_key().verifying_key().jwk();
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["e"], "AQAB");
    let conf = openid_configuration(ISS, &format!("{ISS}/openid/v1/jwks"), &public);
    assert_eq!(
        conf["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(jwks(&public)["keys"][0]["use"], "sig");
}
