//! [`TestWebhook`]: an HTTPS admission webhook server for the tests.

/// An HTTPS server for admission webhook tests: a certificate for 127.0.0.1 from its
/// own CA, and `handler(path, AdmissionReview) -> response body` answering every POST.
/// Stopped on drop.
pub struct TestWebhook {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The CA bundle to put in `clientConfig.caBundle` (base64 PEM).
    pub ca_bundle: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestWebhook {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TestWebhook {
    /// Starts serving `handler`.
    pub fn start<F>(handler: F) -> TestWebhook
    where
        F: Fn(&str, serde_json::Value) -> serde_json::Value + Send + Sync + 'static,
    {
        use base64::Engine;
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "webhook-ca");
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("sign");
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
            )
            .expect("tls config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handler = std::sync::Arc::new(handler);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                component_base::serve::serve_tls(
                    listener,
                    std::sync::Arc::new(tls),
                    async {
                        let _ = stop_rx.await;
                    },
                    move |req: http::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let review: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let out = handler(&path, review);
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from(
                                    serde_json::to_vec(&out).unwrap_or_default(),
                                )))
                                .expect("response")
                        }
                    },
                )
                .await;
            });
        });
        TestWebhook {
            port,
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca.pem()),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}
