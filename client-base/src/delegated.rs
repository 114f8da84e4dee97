//! Delegated authentication and authorization for the components' secure port, as
//! upstream's `DelegatingAuthenticationOptions` and `DelegatingAuthorizationOptions`:
//! the component asks the apiserver who a caller is (TokenReview) and whether it may
//! read a path (SubjectAccessReview), and caches the answers.
//!
//! ```text
//!  request ─▶ authenticate: client cert (--client-ca-file) ─▶ bearer token
//!             (TokenReview via --authentication-kubeconfig, cached) ─▶ anonymous
//!          ─▶ authorize: --authorization-always-allow-paths, system:masters,
//!             else SubjectAccessReview {nonResourceAttributes: path, verb}
//!             via --authorization-kubeconfig (cached) ─▶ 401 / 403 / serve
//! ```
//!
//! Without an authentication kubeconfig tokens cannot be reviewed and callers are
//! anonymous; without an authorization kubeconfig only the always-allowed paths and
//! `system:masters` are served, as upstream's optional-kubeconfig components do.
//! Looking up the client CA in the cluster's `extension-apiserver-authentication`
//! ConfigMap is not done: pass `--client-ca-file`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use component_base::status::{Caller, Guard, Refusal};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use tokio::time::Instant;

/// Failures setting delegation up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kubeconfig could not be loaded.
    #[error("{flag}: {source}")]
    Kubeconfig {
        /// The flag that named it.
        flag: &'static str,
        /// Why.
        source: crate::config::Error,
    },
    /// The client CA could not be read.
    #[error("unable to load client CA file {path}: {message}")]
    ClientCa {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The serving certificate could not be loaded or generated.
    #[error("unable to load server certificate: {0}")]
    Tls(#[from] component_base::tls::Error),
    /// The secure port could not be bound.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The delegation flags, by upstream's names and defaults.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "delegation")]
pub struct Flags {
    /// kubeconfig file pointing at the 'core' kubernetes server with enough rights to
    /// create tokenreviews.authentication.k8s.io. This is optional. If empty, all
    /// token requests are considered to be anonymous and no client CA is looked up in
    /// the cluster.
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,
    /// If false, the authentication-kubeconfig will be used to lookup missing
    /// authentication configuration from the cluster. Accepted; Keelson does not look
    /// it up (use --client-ca-file).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub authentication_skip_lookup: bool,
    /// The duration to cache responses from the webhook token authenticator.
    #[arg(long, default_value = "10s", value_parser = component_base::duration::parse_duration)]
    pub authentication_token_webhook_cache_ttl: Duration,
    /// If true, failures to look up missing authentication configuration from the
    /// cluster are not considered fatal.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub authentication_tolerate_lookup_failure: bool,
    /// If set, any request presenting a client certificate signed by one of the
    /// authorities in the client-ca-file is authenticated with an identity
    /// corresponding to the CommonName of the client certificate.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// kubeconfig file pointing at the 'core' kubernetes server with enough rights to
    /// create subjectaccessreviews.authorization.k8s.io. This is optional. If empty,
    /// all requests not skipped by authorization are forbidden.
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,
    /// A list of HTTP paths to skip during authorization, i.e. these are authorized
    /// without contacting the 'core' kubernetes server.
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,
    /// The duration to cache 'authorized' responses from the webhook authorizer.
    #[arg(long, default_value = "10s", value_parser = component_base::duration::parse_duration)]
    pub authorization_webhook_cache_authorized_ttl: Duration,
    /// The duration to cache 'unauthorized' responses from the webhook authorizer.
    #[arg(long, default_value = "10s", value_parser = component_base::duration::parse_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: Duration,
}

/// Who a caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub name: String,
    /// Its UID.
    pub uid: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }
}

/// Whether `path` is in the always-allowed list (a trailing `*` is a prefix).
fn always_allowed(paths: &[String], path: &str) -> bool {
    paths.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => p == path,
    })
}

/// Asks the apiserver, with caches.
pub struct Delegated {
    ca: Option<component_base::x509::ClientCa>,
    authn: Option<kube::Client>,
    authz: Option<kube::Client>,
    always: Vec<String>,
    token_ttl: Duration,
    allow_ttl: Duration,
    deny_ttl: Duration,
    tokens: Mutex<HashMap<String, (Option<User>, Instant)>>,
    decisions: Mutex<HashMap<String, (bool, Instant)>>,
}

async fn client(path: &Path, flag: &'static str) -> Result<kube::Client, Error> {
    let cfg = crate::config::load(Some(path), None)
        .await
        .map_err(|source| Error::Kubeconfig { flag, source })?;
    crate::config::client(cfg, 0.0, 0).map_err(|source| Error::Kubeconfig { flag, source })
}

impl Delegated {
    /// Sets delegation up from the flags.
    pub async fn new(flags: &Flags) -> Result<Self, Error> {
        let ca =
            match &flags.client_ca_file {
                Some(p) => Some(component_base::x509::ClientCa::new(p).map_err(|message| {
                    Error::ClientCa {
                        path: p.display().to_string(),
                        message,
                    }
                })?),
                None => None,
            };
        let authn = match &flags.authentication_kubeconfig {
            Some(p) => Some(client(p, "--authentication-kubeconfig").await?),
            None => {
                tracing::warn!(
                    "No authentication-kubeconfig provided in order to lookup client-ca-file in configmap/extension-apiserver-authentication in kube-system, so client certificate authentication won't work."
                );
                None
            }
        };
        let authz = match &flags.authorization_kubeconfig {
            Some(p) => Some(client(p, "--authorization-kubeconfig").await?),
            None => {
                tracing::warn!(
                    "No authorization-kubeconfig provided, so SubjectAccessReview of authorization tokens won't work."
                );
                None
            }
        };
        Ok(Delegated {
            ca,
            authn,
            authz,
            always: flags.authorization_always_allow_paths.clone(),
            token_ttl: flags.authentication_token_webhook_cache_ttl,
            allow_ttl: flags.authorization_webhook_cache_authorized_ttl,
            deny_ttl: flags.authorization_webhook_cache_unauthorized_ttl,
            tokens: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        })
    }

    /// The client CA files to hint in the TLS handshake.
    pub fn client_cas(flags: &Flags) -> Vec<&Path> {
        flags.client_ca_file.as_deref().into_iter().collect()
    }

    async fn review_token(&self, token: &str) -> Result<Option<User>, Refusal> {
        let Some(client) = &self.authn else {
            return Ok(None);
        };
        if let Some((user, at)) = self.tokens.lock().get(token).cloned()
            && at.elapsed() < self.token_ttl
        {
            return Ok(user);
        }
        let api: Api<TokenReview> = Api::all(client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        let out = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::info!(error = %e, "TokenReview failed");
                Refusal::Unauthorized
            })?;
        let status = out.status.unwrap_or_default();
        let user = if status.authenticated == Some(true) {
            status.user.map(|u| User {
                name: u.username.unwrap_or_default(),
                uid: u.uid.unwrap_or_default(),
                groups: u.groups.unwrap_or_default(),
                extra: u.extra.unwrap_or_default(),
            })
        } else {
            None
        };
        self.tokens
            .lock()
            .insert(token.to_owned(), (user.clone(), Instant::now()));
        Ok(user)
    }

    /// Who the caller is; `Unauthorized` for credentials that do not check out.
    pub async fn authenticate(&self, caller: &Caller<'_>) -> Result<User, Refusal> {
        if let Some(ca) = &self.ca
            && !caller.certs.is_empty()
        {
            match ca.user(caller.certs) {
                Ok(Some((name, mut groups))) => {
                    groups.push("system:authenticated".into());
                    return Ok(User {
                        name,
                        uid: String::new(),
                        groups,
                        extra: BTreeMap::new(),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!(error = %e, "client certificate rejected");
                    return Err(Refusal::Unauthorized);
                }
            }
        }
        if let Some(token) = caller.bearer
            && self.authn.is_some()
        {
            return match self.review_token(token).await? {
                Some(mut u) => {
                    if !u.groups.iter().any(|g| g == "system:authenticated") {
                        u.groups.push("system:authenticated".into());
                    }
                    Ok(u)
                }
                None => Err(Refusal::Unauthorized),
            };
        }
        Ok(User::anonymous())
    }

    /// Whether `user` may `verb` `path`.
    pub async fn authorize(&self, user: &User, verb: &str, path: &str) -> Result<(), Refusal> {
        if always_allowed(&self.always, path) {
            return Ok(());
        }
        let key = format!("{}|{}|{:?}|{verb}|{path}", user.name, user.uid, user.groups);
        let attrs = Attributes::NonResource(NonResourceAttributes {
            path: Some(path.to_owned()),
            verb: Some(verb.to_owned()),
        });
        let message = format!(
            "forbidden: User {:?} cannot {verb} path {path:?}",
            user.name
        );
        self.review(user, key, attrs, message).await
    }

    /// Whether `user` may act on `attrs` (a resource request: the kubelet's
    /// `nodes/proxy`, `nodes/log`, ...), refused with `message`.
    pub async fn authorize_resource(
        &self,
        user: &User,
        attrs: ResourceAttributes,
        message: String,
    ) -> Result<(), Refusal> {
        let key = format!("{}|{}|{:?}|{attrs:?}", user.name, user.uid, user.groups);
        self.review(user, key, Attributes::Resource(Box::new(attrs)), message)
            .await
    }

    async fn review(
        &self,
        user: &User,
        key: String,
        attrs: Attributes,
        message: String,
    ) -> Result<(), Refusal> {
        if user.groups.iter().any(|g| g == "system:masters") {
            return Ok(());
        }
        let forbidden = || Refusal::Forbidden(message.clone());
        let Some(client) = &self.authz else {
            return Err(forbidden());
        };
        if let Some((allowed, at)) = self.decisions.lock().get(&key).copied() {
            let ttl = if allowed {
                self.allow_ttl
            } else {
                self.deny_ttl
            };
            if at.elapsed() < ttl {
                return if allowed { Ok(()) } else { Err(forbidden()) };
            }
        }
        let (resource_attributes, non_resource_attributes) = match attrs {
            Attributes::Resource(r) => (Some(*r), None),
            Attributes::NonResource(n) => (None, Some(n)),
        };
        let api: Api<SubjectAccessReview> = Api::all(client.clone());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes,
                non_resource_attributes,
            },
            ..Default::default()
        };
        let allowed = match api.create(&PostParams::default(), &review).await {
            Ok(r) => r.status.is_some_and(|s| s.allowed),
            Err(e) => {
                tracing::info!(error = %e, "SubjectAccessReview failed");
                return Err(forbidden());
            }
        };
        self.decisions.lock().insert(key, (allowed, Instant::now()));
        if allowed { Ok(()) } else { Err(forbidden()) }
    }
}

/// What a SubjectAccessReview asks about.
enum Attributes {
    Resource(Box<ResourceAttributes>),
    NonResource(NonResourceAttributes),
}

impl Guard for Delegated {
    fn admit<'a>(
        &'a self,
        caller: Caller<'a>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<(), Refusal>> + Send + 'a>> {
        Box::pin(async move {
            let user = self.authenticate(&caller).await?;
            let verb = caller.method.to_ascii_lowercase();
            self.authorize(&user, &verb, caller.path).await
        })
    }
}

/// A guard for `flags`, ready for [`component_base::status::Status::guard`].
pub async fn guard(flags: &Flags) -> Result<Arc<dyn Guard>, Error> {
    Ok(Arc::new(Delegated::new(flags).await?))
}

/// Binds a component's secure port at `addr` and serves its health `checks` and
/// `registry` there in the background, behind delegated authentication and
/// authorization; `name` names the self-signed certificate under `--cert-dir`.
pub async fn serve_secure(
    name: &str,
    addr: std::net::SocketAddr,
    serving: &component_base::tls::ServingCertFlags,
    delegation: &Flags,
    registry: prometheus::Registry,
    checks: Vec<(&'static str, component_base::status::Check)>,
) -> Result<(), Error> {
    let tls = serving.server_config(name, &Delegated::client_cas(delegation))?;
    let guard = guard(delegation).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let status = component_base::status::Status {
        registry,
        checks,
        guard: Some(guard),
    };
    tracing::info!(%addr, "serving securely");
    tokio::spawn(component_base::status::serve(
        listener,
        tls,
        status,
        std::future::pending(),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_kubeconfigs_only_health_and_masters_pass() {
        let flags = Flags {
            authentication_kubeconfig: None,
            authentication_skip_lookup: false,
            authentication_token_webhook_cache_ttl: Duration::from_secs(10),
            authentication_tolerate_lookup_failure: true,
            client_ca_file: None,
            authorization_kubeconfig: None,
            authorization_always_allow_paths: vec![
                "/healthz".into(),
                "/readyz".into(),
                "/livez".into(),
            ],
            authorization_webhook_cache_authorized_ttl: Duration::from_secs(10),
            authorization_webhook_cache_unauthorized_ttl: Duration::from_secs(10),
        };
        let d = Delegated::new(&flags).await.unwrap();
        let caller = |path| Caller {
            method: "GET",
            path,
            bearer: Some("whatever"),
            certs: &[],
        };
        assert_eq!(d.admit(caller("/healthz")).await, Ok(()));
        assert_eq!(
            d.admit(caller("/metrics")).await,
            Err(Refusal::Forbidden(
                "forbidden: User \"system:anonymous\" cannot get path \"/metrics\"".into()
            ))
        );
        let master = User {
            name: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
            extra: BTreeMap::new(),
        };
        assert_eq!(d.authorize(&master, "get", "/metrics").await, Ok(()));
        assert!(always_allowed(&["/debug/*".to_owned()], "/debug/pprof"));
    }
}
