//! Start-up: the store (embedded or remote), serving certificates, the registry and
//! its caches, the bootstrap objects (system namespaces and the `kubernetes`
//! Service), then HTTPS until SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::api::{Api, Config, parse_cidr, parse_port_range};
use crate::authn::{Authenticator, RequestHeader, TokenFile};
use crate::catalog::catalog;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::registry::Registry;
use crate::server::{Server, serve};
use crate::storage::Kv;
use crate::storage::etcd::{EtcdKv, EtcdTls};
use crate::storage::metered::MeteredKv;

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag is wrong.
    #[error("{0}")]
    Config(String),
    /// The embedded store did not start.
    #[error("embedded store: {0}")]
    Store(#[from] store::app::Error),
    /// The store is unreachable.
    #[error("{0}")]
    Kv(#[from] crate::storage::KvError),
    /// Certificates.
    #[error("{0}")]
    Tls(String),
    /// Token file.
    #[error("{0}")]
    Authn(#[from] crate::authn::AuthnError),
    /// Listening.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The address other hosts reach this one at, when none is given: the source address
/// of the default route (found without sending anything), else loopback.
fn default_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:1")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Loads the serving certificate, or generates a self-signed one into `cert_dir` as
/// upstream does (`apiserver.crt`, `apiserver.key`), reusing it on restart.
pub fn serving_cert(opts: &Options, sans: &[String]) -> Result<(PathBuf, PathBuf), Error> {
    if let (Some(c), Some(k)) = (&opts.tls_cert_file, &opts.tls_private_key_file) {
        return Ok((c.clone(), k.clone()));
    }
    component_base::tls::self_signed_files(&opts.cert_dir, "apiserver", sans)
        .map_err(|e| Error::Tls(e.to_string()))
}

/// The authenticator chain from the flags.
fn authenticator(opts: &Options) -> Result<Authenticator, Error> {
    let mut a = Authenticator {
        anonymous: opts.anonymous_auth,
        ..Default::default()
    }
    .with_client_ca(opts.client_ca_file.as_deref())?;
    if let Some(ca) = &opts.requestheader_client_ca_file {
        a.request_header = Some(RequestHeader::new(
            ca,
            opts.requestheader_allowed_names.clone(),
            opts.requestheader_username_headers.clone(),
            opts.requestheader_uid_headers.clone(),
            opts.requestheader_group_headers.clone(),
            opts.requestheader_extra_headers_prefix.clone(),
        )?);
    }
    if let Some(f) = &opts.token_auth_file {
        a.tokens.push(Box::new(TokenFile::load(f)?));
    }
    Ok(a)
}

/// The default service account issuer (upstream has none and requires the flag).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Service account tokens from the flags: the signer, the verification keys and the
/// accepted issuers. Without --service-account-signing-key-file and
/// --service-account-issuer (both required upstream), a P-256 key is generated into
/// --cert-dir (`service-account.key`, kept across restarts) and the issuer is
/// [`DEFAULT_ISSUER`], like the self-signed serving certificate.
fn service_accounts(
    opts: &Options,
) -> Result<
    (
        crate::serviceaccount::Signer,
        Vec<crate::serviceaccount::VerifyingKey>,
        Vec<String>,
    ),
    Error,
> {
    use crate::serviceaccount::{Key, Signer, VerifyingKey};
    let sa_err = |e: crate::serviceaccount::KeyError| Error::Config(e.to_string());
    let issuers = opts.service_account_issuer.clone();
    let (signer, issuers) = match (&opts.service_account_signing_key_file, issuers.first()) {
        (Some(f), Some(iss)) => (Signer::load(f, iss).map_err(sa_err)?, issuers.clone()),
        (Some(_), None) => {
            return Err(Error::Config(
                "service-account-issuer is a required flag".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(Error::Config(
                "service-account-signing-key-file is a required flag".into(),
            ));
        }
        (None, None) => {
            let path = opts.cert_dir.join("service-account.key");
            if !path.exists() {
                std::fs::create_dir_all(&opts.cert_dir)
                    .map_err(|e| Error::Tls(format!("--cert-dir: {e}")))?;
                let pem = crate::serviceaccount::jwt::generate_pem()
                    .map_err(|e| Error::Tls(format!("generating a service account key: {e}")))?;
                write_private(&path, &pem)?;
                tracing::warn!(
                    path = %path.display(),
                    issuer = DEFAULT_ISSUER,
                    "no --service-account-signing-key-file and --service-account-issuer: generated a signing key"
                );
            }
            let key = Key::load_private(&path).map_err(sa_err)?;
            (
                Signer::new(key, DEFAULT_ISSUER),
                vec![DEFAULT_ISSUER.to_owned()],
            )
        }
    };
    let mut keys = Vec::new();
    for f in &opts.service_account_key_file {
        keys.extend(VerifyingKey::load(f).map_err(sa_err)?);
    }
    if keys.is_empty() {
        keys.push(signer.verifying_key());
    }
    Ok((signer, keys, issuers))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))
}

/// Starts the embedded single-member store; returns it and its client URL.
async fn embedded_store(data_dir: &Path) -> Result<(store::app::Member, String), Error> {
    let dir = data_dir.join("store");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Config(format!("--data-dir {}: {e}", data_dir.display())))?;
    let flags = store::config::Flags::parse_from([
        "keelson-store",
        "--name",
        "apiserver",
        "--data-dir",
        &dir.display().to_string(),
        "--listen-client-urls",
        "http://127.0.0.1:0",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-peer-urls",
        "http://127.0.0.1:0",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "apiserver=http://127.0.0.1:2380",
        "--auto-compaction-mode",
        "periodic",
        "--auto-compaction-retention",
        "5m",
    ]);
    let member = store::app::Member::start(flags).await?;
    let addr = member
        .client_addrs
        .first()
        .copied()
        .ok_or_else(|| Error::Config("embedded store has no client listener".into()))?;
    Ok((member, format!("http://{addr}")))
}

/// Creates `obj` of `res` unless it exists.
async fn ensure(api: &Api, group: &str, plural: &str, mut obj: Value) -> Result<(), ApiError> {
    let res = catalog()
        .get(group, "v1", plural)
        .expect("bootstrap resource");
    if api
        .registry
        .get(res, crate::meta::namespace(&obj), crate::meta::name(&obj))
        .await
        .is_ok()
    {
        return Ok(());
    }
    crate::defaults::apply(res.kind, &mut obj);
    crate::strategy::prepare_for_create(res, &mut obj);
    if res.kind == "Service" {
        api.before_create(res, &mut obj, false).await?;
    }
    match api.registry.create(res, &obj).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The bootstrap controller's objects: the system namespaces and the `kubernetes`
/// Service with its Endpoints and EndpointSlice.
pub async fn bootstrap(api: &Api, advertise: IpAddr, port: u16) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(
            api,
            "",
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let ip = api.config.kubernetes_service_ip().to_string();
    ensure(
        api,
        "",
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                "sessionAffinity": "None", "type": "ClusterIP"}}),
    )
    .await?;
    let eps = catalog().get("", "v1", "endpoints").expect("endpoints");
    let want = json!([{"addresses": [{"ip": advertise.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]);
    ensure(
        api,
        "",
        "endpoints",
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": want}),
    )
    .await?;
    // Reconcile the address after a restart on a new address.
    api.registry
        .guaranteed_update(eps, "default", "kubernetes", |mut e| {
            if e.get("subsets") == Some(&want) {
                return Ok(None);
            }
            e["subsets"] = want.clone();
            Ok(Some(e))
        })
        .await?;
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [advertise.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
    ensure(api, "discovery.k8s.io", "endpointslices", slice).await?;
    for pc in crate::admission::system_priority_classes() {
        ensure(api, "scheduling.k8s.io", "priorityclasses", pc).await?;
    }
    Ok(())
}

/// Runs the apiserver until SIGTERM or SIGINT.
pub async fn run(opts: Options) -> Result<(), Error> {
    let service_cidr = parse_cidr(&opts.service_cluster_ip_range).map_err(Error::Config)?;
    let node_ports = parse_port_range(&opts.service_node_port_range).map_err(Error::Config)?;
    let bind_ip: IpAddr = opts
        .bind_address
        .parse()
        .map_err(|_| Error::Config(format!("invalid --bind-address {:?}", opts.bind_address)))?;
    let advertise: IpAddr = match &opts.advertise_address {
        Some(a) => a
            .parse()
            .map_err(|_| Error::Config(format!("invalid --advertise-address {a:?}")))?,
        None if !bind_ip.is_unspecified() => bind_ip,
        None => default_ip(),
    };
    let authn = authenticator(&opts)?;
    let (signer, sa_keys, issuers) = service_accounts(&opts)?;
    let (member, servers) = if opts.etcd_servers.is_empty() {
        let (m, url) = embedded_store(&opts.data_dir).await?;
        tracing::info!(url, data_dir = %opts.data_dir.display(), "started the embedded store");
        (Some(m), vec![url])
    } else {
        (None, opts.etcd_servers.clone())
    };
    let etcd = EtcdKv::connect(
        &servers,
        &EtcdTls {
            ca_file: opts.etcd_cafile.clone(),
            cert_file: opts.etcd_certfile.clone(),
            key_file: opts.etcd_keyfile.clone(),
        },
    )?;
    let mut store: Arc<dyn Kv> = Arc::new(etcd);
    if let Some(path) = &opts.encryption_provider_config {
        let config = crate::storage::encryption::EncryptionConfig::load(path)
            .map_err(|e| Error::Config(e.to_string()))?;
        store = Arc::new(crate::storage::encryption::EncryptedKv::new(
            store,
            config,
            &opts.etcd_prefix,
        ));
    }
    let kv: Arc<dyn Kv> = Arc::new(MeteredKv::new(store, &opts.etcd_prefix));
    // Wait for the store before building caches, with upstream's patience.
    let mut tries = 0;
    while let Err(e) = kv.current_revision().await {
        tries += 1;
        if tries > 60 {
            return Err(Error::Kv(e));
        }
        tracing::warn!(error = %e, "waiting for etcd");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let registry = Registry::new(kv, &opts.etcd_prefix).await;
    let config = Config {
        service_cidr,
        node_ports,
        min_request_timeout: Duration::from_secs(opts.min_request_timeout),
        advertise: format!("{advertise}:{}", opts.secure_port),
        kubelet: crate::nodes::KubeletClient::new(
            opts.kubelet_certificate_authority.as_deref(),
            opts.kubelet_client_certificate.as_deref(),
            opts.kubelet_client_key.as_deref(),
            &opts.kubelet_preferred_address_types,
            opts.kubelet_timeout,
        )
        .map_err(|e| Error::Tls(format!("kubelet client: {e}")))?,
    };
    let service_ip = config.kubernetes_service_ip();
    let mut api = Api::new(registry, config);
    api.authorizer = crate::authz::Authorizer::new(
        &opts.authorization_mode,
        || Box::new(crate::rbac::CacheSource::new(&api.registry)),
        || Box::new(crate::authz::CacheGraph::new(&api.registry)),
    )
    .map_err(Error::Config)?;
    match (
        api.authorizer.has_webhook(),
        &opts.authorization_webhook_config_file,
    ) {
        (true, Some(file)) => api.authorizer.set_webhook(
            crate::authz::webhook::WebhookAuthorizer::new(
                file,
                &opts.authorization_webhook_version,
                opts.authorization_webhook_cache_authorized_ttl,
                opts.authorization_webhook_cache_unauthorized_ttl,
            )
            .map_err(|e| Error::Config(format!("authorization webhook: {e}")))?,
        ),
        (true, None) => {
            return Err(Error::Config(
                "authorization-mode Webhook's authorization config file not passed".into(),
            ));
        }
        (false, Some(_)) => {
            return Err(Error::Config(
                "cannot specify --authorization-webhook-config-file without mode Webhook".into(),
            ));
        }
        (false, None) => {}
    }
    api.authenticator = authn;
    let plugins = crate::admission::enabled(
        &opts.enable_admission_plugins,
        &opts.disable_admission_plugins,
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let configs = crate::admission::plugin_configs(opts.admission_control_config_file.as_deref())
        .map_err(|e| Error::Config(e.to_string()))?;
    api.admission = crate::admission::Chain::build(&plugins, &configs)
        .map_err(|e| Error::Config(e.to_string()))?;
    tracing::info!(plugins = ?api.admission.names(), "admission chain");
    // Auditing needs both a policy and a log, as upstream (either alone logs nothing).
    if let (Some(policy), Some(log)) = (&opts.audit_policy_file, &opts.audit_log_path) {
        let text = std::fs::read_to_string(policy)
            .map_err(|e| Error::Config(format!("loading audit policy file: {e}")))?;
        let policy =
            crate::audit::Policy::parse(&text).map_err(|e| Error::Config(e.to_string()))?;
        let writer = crate::audit::LogWriter::open(
            log,
            opts.audit_log_maxsize,
            opts.audit_log_maxbackup,
            opts.audit_log_maxage,
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        api.auditor = Some(Arc::new(crate::audit::Auditor::new(policy, writer)));
    }
    let audiences = if opts.api_audiences.is_empty() {
        vec![issuers[0].clone()]
    } else {
        opts.api_audiences.clone()
    };
    api.authenticator.api_audiences = audiences.clone();
    api.authenticator
        .tokens
        .push(Box::new(crate::serviceaccount::Authenticator::new(
            sa_keys.clone(),
            issuers.clone(),
            audiences.clone(),
            Box::new(crate::serviceaccount::CacheLookup::new(&api.registry)),
        )));
    if opts.enable_bootstrap_token_auth {
        api.authenticator
            .tokens
            .push(Box::new(crate::authn::bootstrap::BootstrapTokens::new(
                Box::new(crate::serviceaccount::CacheLookup::new(&api.registry)),
            )));
    }
    api.service_account_issuer = Some(crate::serviceaccount::Discovery {
        issuer: issuers[0].clone(),
        jwks_uri: opts
            .service_account_jwks_uri
            .clone()
            .unwrap_or_else(|| format!("{}/openid/v1/jwks", issuers[0].trim_end_matches('/'))),
        keys: sa_keys,
    });
    api.token_issuing = Some(crate::serviceaccount::request::Issuing {
        signer,
        audiences,
        max_seconds: opts
            .service_account_max_token_expiration
            .map(|d| d.as_secs() as i64),
        extend: opts.service_account_extend_token_expiration,
    });
    if api.authenticator.anonymous && api.authorizer.is_always_allow() {
        tracing::warn!(
            "AnonymousAuth is not allowed with the AlwaysAllow authorizer. Resetting AnonymousAuth to false. You should use a different authorizer"
        );
        api.authenticator.anonymous = false;
    }
    let api = Arc::new(api);
    let mut sans = vec![
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        "kubernetes.default.svc.cluster.local".to_owned(),
        "127.0.0.1".to_owned(),
        service_ip.to_string(),
        advertise.to_string(),
    ];
    sans.dedup();
    let (cert, key) = serving_cert(&opts, &sans)?;
    let client_cas: Vec<&Path> = [&opts.client_ca_file, &opts.requestheader_client_ca_file]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect();
    let tls = component_base::tls::request_client_cert_config(
        &cert,
        &key,
        &client_cas,
        &[b"h2", b"http/1.1"],
    )
    .map_err(|e| Error::Tls(e.to_string()))?;
    let addr = SocketAddr::new(bind_ip, opts.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let server = Arc::new(Server {
        api: api.clone(),
        readonly: Semaphore::new(opts.max_requests_inflight.max(1)),
        mutating: Semaphore::new(opts.max_mutating_requests_inflight.max(1)),
        request_timeout: opts.request_timeout,
        metrics: Metrics::new(),
        ready: AtomicBool::new(false),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(serve(server.clone(), listener, tls, stop_rx));
    // Serve what the CustomResourceDefinitions in the store define, and follow them.
    tokio::spawn(crate::crd::run(api.clone()));
    tracing::info!(address = %addr, "Serving securely");
    for attempt in 0.. {
        match bootstrap(&api, advertise, opts.secure_port).await {
            Ok(()) => break,
            Err(e) if attempt < 30 => {
                tracing::warn!(error = %e, "bootstrap; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(Error::Config(format!("bootstrap: {e}"))),
        }
    }
    if api.authorizer.rbac().is_some() {
        for attempt in 0.. {
            match crate::rbac::bootstrap::reconcile(&api).await {
                Ok(()) => break,
                Err(e) if attempt < 30 => {
                    tracing::warn!(error = %e, "bootstrap RBAC policy; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(Error::Config(format!("bootstrap RBAC policy: {e}"))),
            }
        }
        tracing::info!("the bootstrap RBAC policy is reconciled");
    }
    server
        .ready
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!("apiserver is ready");
    component_base::signal::shutdown().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = serving.await;
    if let Some(m) = member {
        m.shutdown().await;
    }
    Ok(())
}
