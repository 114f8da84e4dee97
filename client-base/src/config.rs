//! Client configuration, as client-go's `clientcmd` and `rest.Config`: where the
//! apiserver is and who we are (`--kubeconfig`, `--master`, else in-cluster or the
//! default kubeconfig), and how fast we may talk to it (`--kube-api-qps`,
//! `--kube-api-burst`, enforced by [`crate::ratelimit`]).

use std::path::Path;

use crate::ratelimit::RateLimitLayer;

/// client-go's defaults for a zero QPS or burst (`rest.DefaultQPS`, `DefaultBurst`).
const DEFAULT_QPS: f32 = 5.0;
const DEFAULT_BURST: u32 = 10;

/// Failures loading a configuration or building a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig file could not be read or used.
    #[error("invalid kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Neither a kubeconfig nor an in-cluster configuration is available.
    #[error("invalid configuration: {0}")]
    Infer(String),
    /// `--master` is not a URL.
    #[error("--master {master:?}: {message}")]
    Master {
        /// The value.
        master: String,
        /// Why.
        message: String,
    },
    /// The HTTP client could not be built (TLS material, proxy).
    #[error("unable to build the API client: {0}")]
    Client(String),
    /// A burst below one with a positive QPS, as client-go refuses it.
    #[error(
        "burst is required to be greater than 0 when RateLimiter is not set and QPS is set to greater than 0"
    )]
    Burst,
}

/// Loads the configuration from `kubeconfig` (its current context), else
/// in-cluster or `$KUBECONFIG`/`~/.kube/config`; `master` overrides the server.
pub async fn load(kubeconfig: Option<&Path>, master: Option<&str>) -> Result<kube::Config, Error> {
    let mut config = match kubeconfig {
        Some(path) => {
            let err = |message: String| Error::Kubeconfig {
                path: path.display().to_string(),
                message,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| err(e.to_string()))?
        }
        None => {
            if master.is_none() {
                tracing::warn!(
                    "Neither --kubeconfig nor --master was specified. Using the inClusterConfig. This might not work."
                );
            }
            kube::Config::infer()
                .await
                .map_err(|e| Error::Infer(e.to_string()))?
        }
    };
    if let Some(master) = master {
        config.cluster_url = master
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::Master {
                master: master.to_owned(),
                message: e.to_string(),
            })?;
    }
    Ok(config)
}

/// A client for `config` limited to `qps` requests per second with bursts of
/// `burst`: zero means client-go's defaults (5 and 10), a negative QPS no limit.
pub fn client(config: kube::Config, qps: f32, burst: u32) -> Result<kube::Client, Error> {
    let (qps, burst) = if qps == 0.0 {
        (DEFAULT_QPS, if burst == 0 { DEFAULT_BURST } else { burst })
    } else {
        (qps, burst)
    };
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| Error::Client(e.to_string()))?;
    if qps < 0.0 {
        return Ok(builder.build());
    }
    if burst == 0 {
        return Err(Error::Burst);
    }
    Ok(builder.with_layer(&RateLimitLayer::new(qps, burst)).build())
}
