//! Client certificates: arbitrary DER as a presented chain. Subject parsing and chain
//! verification against a CA never panic, and garbage never authenticates.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

use apiserver::authn::{X509, subject};

fn verifier() -> &'static X509 {
    static V: OnceLock<X509> = OnceLock::new();
    V.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "kubernetes");
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca");
        let path = std::env::temp_dir().join(format!("keelson-fuzz-ca-{}.crt", std::process::id()));
        std::fs::write(&path, ca.pem()).expect("write ca");
        X509::new(&path, "--client-ca-file").expect("ca loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = subject(data);
    // Two certificates: the first byte says where the leaf ends.
    let (leaf, rest) = match data.split_first() {
        Some((&n, rest)) if (n as usize) < rest.len() => rest.split_at(n as usize),
        _ => (data, &[][..]),
    };
    let chain = vec![
        CertificateDer::from(leaf.to_vec()),
        CertificateDer::from(rest.to_vec()),
    ];
    assert!(
        !matches!(verifier().authenticate(&chain), Ok(Some(_))),
        "a chain not signed by the CA authenticated"
    );
});
