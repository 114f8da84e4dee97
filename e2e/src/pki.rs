//! [`Pki`]: the certificates a test cluster with a kubelet needs.

use std::path::{Path, PathBuf};

/// Certificates for a test cluster: a CA, a kubelet serving pair and the
/// apiserver's kubelet client pair, written as PEM files into a directory.
pub struct Pki {
    /// `ca.crt`.
    pub ca: PathBuf,
    /// `kubelet.crt`, `kubelet.key` (SANs 127.0.0.1 and localhost).
    pub kubelet: (PathBuf, PathBuf),
    /// `apiserver-kubelet-client.crt`, `.key` (CN kube-apiserver-kubelet-client).
    pub client: (PathBuf, PathBuf),
}

impl Pki {
    /// Generates the certificates into `dir`.
    pub fn generate(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "keelson-test-ca");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write pem");
            p
        };
        let leaf = |cn: &str, sans: Vec<String>, name: &str| {
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca).expect("sign");
            (
                write(&format!("{name}.crt"), cert.pem()),
                write(&format!("{name}.key"), key.serialize_pem()),
            )
        };
        Pki {
            ca: write("ca.crt", ca.pem()),
            kubelet: leaf(
                "node1",
                vec!["127.0.0.1".into(), "localhost".into()],
                "kubelet",
            ),
            client: leaf(
                "kube-apiserver-kubelet-client",
                Vec::new(),
                "apiserver-kubelet-client",
            ),
        }
    }

    /// The apiserver flags that make it reach kubelets with these certificates.
    pub fn apiserver_flags(&self) -> Vec<String> {
        vec![
            format!("--kubelet-client-certificate={}", self.client.0.display()),
            format!("--kubelet-client-key={}", self.client.1.display()),
            format!("--kubelet-certificate-authority={}", self.ca.display()),
        ]
    }
}
