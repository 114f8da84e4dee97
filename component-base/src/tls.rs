//! Loading PEM files into rustls configurations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("open {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file held no usable PEM block of the expected kind.
    #[error("{path}: no {what} found")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// rustls refused the material.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("tls: client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A self-signed serving certificate could not be generated or written.
    #[error("{0}")]
    Generate(String),
}

/// Accepts any server certificate (the handshake signature is still checked): what
/// upstream does when it is told not to verify, e.g. the apiserver reaching kubelets
/// without `--kubelet-certificate-authority`, or pods through the proxy.
#[derive(Debug)]
pub struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl AnyServerCert {
    /// With the process's crypto provider.
    pub fn new() -> Arc<Self> {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        Arc::new(AnyServerCert(provider))
    }
}

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Asks the client for a certificate and takes any (or none) at the TLS layer, with
/// `hints` (the CA subjects) sent in the request: upstream's `tls.RequestClientCert`.
/// The handshake signature is still checked, so the client holds the key; whether the
/// chain is trusted is the authenticator's question, answered with a 401 rather than
/// a failed handshake.
#[derive(Debug)]
pub struct RequestClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
    hints: Vec<rustls::DistinguishedName>,
}

impl RequestClientCert {
    /// Hints the subjects of every certificate in `cas`.
    pub fn new(cas: &[&Path]) -> Result<Arc<Self>, Error> {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let mut roots = RootCertStore::empty();
        for ca in cas {
            for cert in load_certs(ca)? {
                roots.add(cert)?;
            }
        }
        Ok(Arc::new(RequestClientCert {
            provider,
            hints: roots.subjects(),
        }))
    }
}

impl rustls::server::danger::ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A server config that requests (never requires) a client certificate, hinting the
/// subjects of `client_cas`, and leaves verifying it to the caller.
pub fn request_client_cert_config(
    cert: &Path,
    key: &Path,
    client_cas: &[&Path],
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    let builder = ServerConfig::builder();
    let builder = if client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(RequestClientCert::new(client_cas)?)
    };
    let mut config = builder.with_single_cert(load_certs(cert)?, load_key(key)?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client that does not verify the server, speaking HTTP/1.1.
pub fn unverified_client_config() -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(AnyServerCert::new())
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let data = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(Error::Empty {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let data = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| Error::Empty {
            path: path.to_owned(),
            what: "private key",
        })
}

/// Builds a root store from a CA bundle.
pub fn load_roots(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A server config. With `client_ca`, clients must present a certificate that chains to it
/// when `require_client_cert` is set; otherwise one is verified if offered.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    require_client_cert: bool,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, Error> {
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = if require_client_cert {
                WebPkiClientVerifier::builder(roots).build()?
            } else {
                WebPkiClientVerifier::builder(roots)
                    .allow_unauthenticated()
                    .build()?
            };
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(load_certs(cert)?, load_key(key)?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client config trusting `ca` (or nothing extra if `None`), presenting `cert`/`key`
/// when both are given.
pub fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<ClientConfig>, Error> {
    let roots = match ca {
        Some(ca) => load_roots(ca)?,
        None => RootCertStore::empty(),
    };
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(c), Some(k)) => builder.with_client_auth_cert(load_certs(c)?, load_key(k)?)?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Returns `dir/<name>.crt` and `dir/<name>.key`, generating a self-signed pair for
/// `sans` there first if either is missing, as upstream's components do with
/// `--cert-dir` when no `--tls-cert-file` is given. The key is written 0600 and
/// renamed into place, so a crash never leaves half a key behind.
pub fn self_signed_files(
    dir: &Path,
    name: &str,
    sans: &[String],
) -> Result<(PathBuf, PathBuf), Error> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Generate(format!("unable to create {}: {e}", dir.display())))?;
    let mut params =
        rcgen::CertificateParams::new(sans.to_vec()).map_err(|e| Error::Generate(e.to_string()))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{}@{secs}", sans.first().cloned().unwrap_or_default()),
    );
    let kp = rcgen::KeyPair::generate().map_err(|e| Error::Generate(e.to_string()))?;
    let c = params
        .self_signed(&kp)
        .map_err(|e| Error::Generate(e.to_string()))?;
    write_private(&key, kp.serialize_pem().as_bytes())?;
    std::fs::write(&cert, c.pem())
        .map_err(|e| Error::Generate(format!("{}: {e}", cert.display())))?;
    tracing::info!(cert = %cert.display(), "generated self-signed cert");
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::Generate(format!("{}: {e}", tmp.display())))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Generate(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Generate(format!("{}: {e}", path.display())))
}

/// A server config with a self-signed certificate for `sans` generated in memory, as
/// upstream's components do when neither `--tls-cert-file` nor `--cert-dir` is set.
pub fn self_signed_config(sans: &[String]) -> Result<Arc<ServerConfig>, Error> {
    self_signed_requesting(sans, &[])
}

/// [`self_signed_config`] that also requests (never requires) client certificates,
/// hinting `client_cas`, as [`request_client_cert_config`].
pub fn self_signed_requesting(
    sans: &[String],
    client_cas: &[&Path],
) -> Result<Arc<ServerConfig>, Error> {
    let params =
        rcgen::CertificateParams::new(sans.to_vec()).map_err(|e| Error::Generate(e.to_string()))?;
    let kp = rcgen::KeyPair::generate().map_err(|e| Error::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&kp)
        .map_err(|e| Error::Generate(e.to_string()))?;
    let key =
        PrivateKeyDer::try_from(kp.serialize_der()).map_err(|e| Error::Generate(e.to_owned()))?;
    let builder = ServerConfig::builder();
    let builder = if client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_cert_verifier(RequestClientCert::new(client_cas)?)
    };
    let mut config = builder.with_single_cert(vec![cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The serving certificate flags of the components' secure port (upstream's
/// `SecureServingOptions`, minus the port and address, whose defaults differ).
#[derive(Clone, Debug, Default, clap::Args)]
#[group(id = "serving-certs")]
pub struct ServingCertFlags {
    /// The directory where the TLS certs are located. If --tls-cert-file and
    /// --tls-private-key-file are provided, this flag will be ignored. Empty (the
    /// default): a self-signed certificate is generated in memory.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// File containing the default x509 Certificate for HTTPS.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// File containing the default x509 private key matching --tls-cert-file.
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
}

impl ServingCertFlags {
    /// The secure port's TLS config for component `name` (the file stem under
    /// --cert-dir), requesting client certificates from `client_cas`.
    pub fn server_config(
        &self,
        name: &str,
        client_cas: &[&Path],
    ) -> Result<Arc<ServerConfig>, Error> {
        let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
        if let (Some(c), Some(k)) = (&self.tls_cert_file, &self.tls_private_key_file) {
            return request_client_cert_config(c, k, client_cas, alpn);
        }
        let sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        match &self.cert_dir {
            None => self_signed_requesting(&sans, client_cas),
            Some(dir) => {
                let (c, k) = self_signed_files(dir, name, &sans)?;
                request_client_cert_config(&c, &k, client_cas, alpn)
            }
        }
    }
}
