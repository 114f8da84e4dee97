//! kube-scheduler's flags, by upstream's names and defaults. Without `--config`,
//! the deprecated client flags (`--kubeconfig`, `--master`, `--kube-api-qps`,
//! `--kube-api-burst`) fill the configuration's `clientConnection`; with it, only
//! the `--leader-elect*` flags given override the file, as upstream's `ApplyTo`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{self, Configuration};

/// kube-scheduler's command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-scheduler",
    about = "The Kubernetes scheduler is a control plane process which assigns Pods to Nodes. The scheduler determines which Nodes are valid placements for each Pod in the scheduling queue according to constraints and available resources. The scheduler then ranks each valid Node and binds the Pod to a suitable Node."
)]
pub struct Options {
    /// The path to the configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// If set, write the configuration values to this file and exit.
    #[arg(long)]
    pub write_config_to: Option<PathBuf>,
    /// DEPRECATED: path to kubeconfig file with authorization and master location
    /// information. This parameter is ignored if a config file is specified in --config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The address of the Kubernetes API server (overrides any value in kubeconfig).
    #[arg(long)]
    pub master: Option<String>,
    /// DEPRECATED: QPS to use while talking with kubernetes apiserver. This parameter
    /// is ignored if a config file is specified in --config. (default 50)
    #[arg(long)]
    pub kube_api_qps: Option<f32>,
    /// DEPRECATED: burst to use while talking with kubernetes apiserver. This
    /// parameter is ignored if a config file is specified in --config. (default 100)
    #[arg(long)]
    pub kube_api_burst: Option<i32>,
    /// DEPRECATED: content type of requests sent to apiserver. This parameter is
    /// ignored if a config file is specified in --config.
    #[arg(long)]
    pub kube_api_content_type: Option<String>,

    /// The `--leader-elect*` flags (Lease `kube-system/kube-scheduler`).
    #[command(flatten)]
    pub leader_election: client_base::leaderelection::Flags,

    /// The port on which to serve HTTPS with authentication and authorization. If 0,
    /// don't serve HTTPS at all.
    #[arg(long, default_value_t = 10259)]
    pub secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The serving certificate flags.
    #[command(flatten)]
    pub serving: component_base::tls::ServingCertFlags,
    /// Delegated authentication and authorization of the secure port.
    #[command(flatten)]
    pub delegation: client_base::delegated::Flags,
    /// Log verbosity (klog's `-v`); use RUST_LOG for Keelson's levels.
    #[arg(long = "v", short = 'v')]
    pub verbosity: Option<u32>,
}

impl Options {
    /// The effective configuration, validated.
    pub fn configuration(&self) -> Result<Configuration, config::Error> {
        let mut cfg = match &self.config {
            Some(path) => Configuration::load(path)?,
            None => {
                let mut cfg = Configuration::defaults();
                if let Some(k) = &self.kubeconfig {
                    cfg.client_connection.kubeconfig = k.display().to_string();
                }
                if let Some(q) = self.kube_api_qps {
                    cfg.client_connection.qps = q;
                }
                if let Some(b) = self.kube_api_burst {
                    cfg.client_connection.burst = b;
                }
                if let Some(c) = &self.kube_api_content_type {
                    cfg.client_connection.content_type = c.clone();
                }
                cfg
            }
        };
        self.leader_election.apply(&mut cfg.leader_election);
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        Options::parse_from(std::iter::once("kube-scheduler").chain(args.iter().copied()))
    }

    #[test]
    fn flags_apply_as_upstream() {
        let o = parse(&[
            "--kubeconfig=/etc/kubernetes/scheduler.conf",
            "--leader-elect=false",
            "--kube-api-qps=5000",
            "--kube-api-burst=5000",
        ]);
        let c = o.configuration().unwrap();
        assert_eq!(
            c.client_connection.kubeconfig,
            "/etc/kubernetes/scheduler.conf"
        );
        assert_eq!(c.client_connection.qps, 5000.0);
        assert!(!c.leader_election.leader_elect);
        assert_eq!(o.secure_port, 10259);
        // kubeadm's manifest.
        parse(&[
            "--authentication-kubeconfig=/etc/kubernetes/scheduler.conf",
            "--authorization-kubeconfig=/etc/kubernetes/scheduler.conf",
            "--bind-address=127.0.0.1",
            "--kubeconfig=/etc/kubernetes/scheduler.conf",
            "--leader-elect=true",
        ])
        .configuration()
        .unwrap();
        let e = parse(&["--leader-elect-lease-duration=5s"])
            .configuration()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "leaderElection.leaseDuration: Invalid value: \"5s\": LeaseDuration must be greater than RenewDeadline"
        );
    }
}
