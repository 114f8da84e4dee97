//! Controller credentials, as upstream's `ControllerClientBuilder`s.
//!
//! Without `--use-service-account-credentials`, every controller talks as the
//! controller manager itself (`--kubeconfig`). With it, each controller gets its own
//! service account in kube-system (created if missing, with the manager's identity)
//! and a bound token from the TokenRequest API, so that it holds exactly its
//! `system:controller:<name>` role. Tokens live an hour and are renewed at 80% of
//! their life into a file the controller's client rereads (kube-rs reloads token
//! files every minute). Leader election always uses the manager's own identity.
//!
//! Every client gets its own rate limiter with the component's QPS and burst, as
//! client-go's builders copy the `rest.Config` (and its limits) per controller.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

/// How long requested tokens live, as upstream's default.
const TOKEN_SECONDS: i64 = 3600;
/// The namespace controller service accounts live in.
const NAMESPACE: &str = "kube-system";

/// Failures building a controller's client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service account could not be read or created.
    #[error("failed to get or create service account {name}: {source}")]
    ServiceAccount {
        /// The account.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// No token was issued.
    #[error("failed to get token for service account {name}: {message}")]
    Token {
        /// The account.
        name: String,
        /// Why.
        message: String,
    },
    /// The client could not be built.
    #[error("client for {name}: {message}")]
    Client {
        /// The account.
        name: String,
        /// Why.
        message: String,
    },
}

/// Builds clients for controllers.
pub struct ClientBuilder {
    root_config: kube::Config,
    root: kube::Client,
    use_service_accounts: bool,
    qps: f32,
    burst: u32,
    dir: tempfile::TempDir,
}

impl ClientBuilder {
    /// With the component's own `config`; clients are limited to `qps` and `burst`
    /// (see [`crate::config::client`]).
    pub fn new(
        root_config: kube::Config,
        use_service_accounts: bool,
        qps: f32,
        burst: u32,
    ) -> Result<Self, Error> {
        let root =
            crate::config::client(root_config.clone(), qps, burst).map_err(|e| Error::Client {
                name: "kube-controller-manager".into(),
                message: e.to_string(),
            })?;
        let dir = tempfile::Builder::new()
            .prefix("kube-controller-manager-tokens")
            .tempdir()
            .map_err(|e| Error::Client {
                name: "kube-controller-manager".into(),
                message: e.to_string(),
            })?;
        Ok(ClientBuilder {
            root_config,
            root,
            use_service_accounts,
            qps,
            burst,
            dir,
        })
    }

    /// The manager's own client configuration (from `--kubeconfig`).
    pub fn root_config(&self) -> &kube::Config {
        &self.root_config
    }

    /// The manager's own client.
    pub fn root(&self) -> kube::Client {
        self.root.clone()
    }

    /// A fresh client with the component's own identity and its own rate limiter,
    /// as upstream's `SimpleControllerClientBuilder` (and the separate
    /// leader-election client, so that renewals never wait behind controllers).
    pub fn own(&self, name: &str) -> Result<kube::Client, Error> {
        crate::config::client(self.root_config.clone(), self.qps, self.burst).map_err(|e| {
            Error::Client {
                name: name.to_owned(),
                message: e.to_string(),
            }
        })
    }

    /// The client controller `service_account` runs with: its own limiter, and its
    /// own identity with `--use-service-account-credentials`.
    pub async fn client_for(&self, service_account: &str) -> Result<kube::Client, Error> {
        if !self.use_service_accounts {
            return self.own(service_account);
        }
        ensure_account(&self.root, service_account).await?;
        let (token, expires_in) = request_token(&self.root, service_account).await?;
        let path = self.dir.path().join(format!("{service_account}.token"));
        write_token(&path, &token, service_account)?;
        let mut config = self.root_config.clone();
        config.auth_info = kube::config::AuthInfo {
            token_file: Some(path.display().to_string()),
            ..Default::default()
        };
        let client =
            crate::config::client(config, self.qps, self.burst).map_err(|e| Error::Client {
                name: service_account.to_owned(),
                message: e.to_string(),
            })?;
        tokio::spawn(renew(
            self.root.clone(),
            service_account.to_owned(),
            path,
            expires_in,
        ));
        Ok(client)
    }
}

async fn ensure_account(root: &kube::Client, name: &str) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(root.clone(), NAMESPACE);
    let err = |source| Error::ServiceAccount {
        name: name.to_owned(),
        source,
    };
    if api.get_opt(name).await.map_err(err)?.is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Requests a token; returns it and its life.
async fn request_token(root: &kube::Client, name: &str) -> Result<(String, Duration), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(root.clone(), NAMESPACE);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(TOKEN_SECONDS),
            ..Default::default()
        },
        ..Default::default()
    };
    let out = api
        .create_token_request(name, &PostParams::default(), &req)
        .await
        .map_err(|e| Error::Token {
            name: name.to_owned(),
            message: e.to_string(),
        })?;
    let status = out.status.ok_or_else(|| Error::Token {
        name: name.to_owned(),
        message: "no status in the TokenRequest reply".into(),
    })?;
    let life = out.spec.expiration_seconds.unwrap_or(TOKEN_SECONDS).max(60) as u64;
    Ok((status.token, Duration::from_secs(life)))
}

fn write_token(path: &PathBuf, token: &str, name: &str) -> Result<(), Error> {
    // Written beside and renamed, so that a reader never sees half a token.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Token {
            name: name.to_owned(),
            message: e.to_string(),
        })
}

/// Renews the token at 80% of its life, retrying every 10 seconds on failure.
async fn renew(root: kube::Client, name: String, path: PathBuf, mut life: Duration) {
    loop {
        tokio::time::sleep(life.mul_f64(0.8)).await;
        match request_token(&root, &name).await {
            Ok((token, l)) => match write_token(&path, &token, &name) {
                Ok(()) => life = l,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing a controller token");
                    life = Duration::from_secs(12);
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "renewing a controller token");
                life = Duration::from_secs(12);
            }
        }
    }
}
