//! The kubelet's flags, by upstream's names. Flags that are also configuration
//! fields override the `--config` file when given, as upstream's kubelet does.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{self, KubeletConfiguration};

/// The kubelet's command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kubelet",
    about = "The kubelet is the primary \"node agent\" that runs on each node. It can register the node with the apiserver using one of: the hostname; a flag to override the hostname; or specific logic for a cloud provider."
)]
pub struct Options {
    /// The Kubelet will load its initial configuration from this file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Path to a kubeconfig file, specifying how to connect to the API server.
    /// Providing --kubeconfig enables API server mode, omitting it enables
    /// standalone mode.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Path to a kubeconfig file used to get client certificates for the kubelet.
    /// If the file specified by --kubeconfig does not exist, the bootstrap kubeconfig
    /// is used to request a client certificate from the API server.
    #[arg(long)]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// The endpoint of the container runtime service (`unix:///run/containerd/containerd.sock`).
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// If non-empty, will use this string as identification instead of the actual hostname.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// IP address of the node. If set, kubelet will use this IP address for the node.
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Labels to add when registering the node in the cluster (`key=value,...`).
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Register the node with the given list of taints (`<key>=<value>:<effect>`).
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// Directory path for managing kubelet files (volume mounts, etc).
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub root_dir: PathBuf,
    /// The directory where the TLS certs are located.
    #[arg(long, default_value = "/var/lib/kubelet/pki")]
    pub cert_dir: PathBuf,
    /// The provider for cloud services; `external` leaves node initialization to a
    /// cloud controller (the node registers with the uninitialized taint).
    #[arg(long, default_value = "")]
    pub cloud_provider: String,
    /// The maximum number of pods (overrides `maxPods`).
    #[arg(long)]
    pub max_pods: Option<i64>,
    /// Directory path of static pod manifests (overrides `staticPodPath`).
    #[arg(long)]
    pub pod_manifest_path: Option<String>,
    /// Log verbosity (klog's `-v`); use RUST_LOG for Keelson's levels.
    #[arg(long = "v", short = 'v')]
    pub verbosity: Option<u32>,
}

impl Options {
    /// The effective configuration: the file (or the defaults), then the flags.
    pub fn configuration(&self) -> Result<KubeletConfiguration, config::Error> {
        let mut cfg = match &self.config {
            Some(path) => KubeletConfiguration::load(path)?,
            None => KubeletConfiguration::default(),
        };
        if let Some(e) = &self.container_runtime_endpoint {
            cfg.container_runtime_endpoint = e.clone();
        }
        if let Some(m) = self.max_pods {
            cfg.max_pods = m;
        }
        if let Some(p) = &self.pod_manifest_path {
            cfg.static_pod_path = p.clone();
        }
        for t in &self.register_with_taints {
            cfg.register_with_taints.push(parse_taint(t)?);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The node's name: `--hostname-override`, else the host's name, lowercased.
    pub fn node_name(&self) -> String {
        self.hostname_override
            .clone()
            .unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()
            })
            .trim()
            .to_lowercase()
    }

    /// `--node-labels` as pairs.
    pub fn labels(&self) -> Result<Vec<(String, String)>, config::Error> {
        self.node_labels
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| {
                        config::Error::Invalid(format!(
                            "invalid label {l:?}: must be of the form key=value"
                        ))
                    })
            })
            .collect()
    }
}

/// `<key>=<value>:<effect>` or `<key>:<effect>`, as `--register-with-taints` takes them.
fn parse_taint(s: &str) -> Result<k8s_openapi::api::core::v1::Taint, config::Error> {
    let invalid = || config::Error::Invalid(format!("invalid taint spec: {s}"));
    let (kv, effect) = s.rsplit_once(':').ok_or_else(invalid)?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(config::Error::Invalid(format!(
            "invalid taint effect: {effect}, unsupported taint effect"
        )));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(invalid());
    }
    Ok(k8s_openapi::api::core::v1::Taint {
        key: key.to_owned(),
        value,
        effect: effect.to_owned(),
        time_added: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let o = Options::parse_from([
            "kubelet",
            "--hostname-override=Worker-1",
            "--node-labels=a=b,role=x",
            "--register-with-taints=dedicated=gpu:NoSchedule",
            "--container-runtime-endpoint=unix:///tmp/c.sock",
            "--max-pods=20",
        ]);
        assert_eq!(o.node_name(), "worker-1");
        let c = o.configuration().unwrap();
        assert_eq!(c.container_runtime_endpoint, "unix:///tmp/c.sock");
        assert_eq!(c.max_pods, 20);
        assert_eq!(c.register_with_taints[0].key, "dedicated");
        assert_eq!(c.register_with_taints[0].value.as_deref(), Some("gpu"));
        assert_eq!(o.labels().unwrap()[1], ("role".into(), "x".into()));
        let bad = Options::parse_from(["kubelet", "--register-with-taints=a=b:Sometimes"]);
        assert_eq!(
            bad.configuration().unwrap_err().to_string(),
            "invalid configuration: invalid taint effect: Sometimes, unsupported taint effect"
        );
    }
}
