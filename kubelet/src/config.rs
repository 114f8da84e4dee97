//! `KubeletConfiguration` (`kubelet.config.k8s.io/v1beta1`): the `--config` file,
//! its fields by upstream's names, and upstream's v1beta1 defaults. Decoding is
//! lenient about unknown fields, as upstream's kubelet (it logs them and goes on).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use component_base::duration::GoDuration;
use serde::{Deserialize, Serialize};

/// What a configuration file failed with, in upstream's words.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error(
        "failed to load Kubelet config file {path}, error failed to read kubelet config file {path:?}, error: {message}"
    )]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The file is not a KubeletConfiguration.
    #[error("failed to load Kubelet config file {path}, error {message}")]
    Decode {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A field's value is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// `authentication.x509`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct X509Authentication {
    /// CA bundle client certificates are verified against.
    #[serde(rename = "clientCAFile", skip_serializing_if = "String::is_empty")]
    pub client_ca_file: String,
}

/// `authentication.webhook`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookAuthentication {
    /// Bearer tokens are checked with TokenReview.
    pub enabled: bool,
    /// How long TokenReview answers are cached.
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: GoDuration,
}

impl Default for WebhookAuthentication {
    fn default() -> Self {
        WebhookAuthentication {
            enabled: true,
            cache_ttl: GoDuration(Duration::from_secs(120)),
        }
    }
}

/// `authentication.anonymous`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AnonymousAuthentication {
    /// Unauthenticated requests are `system:anonymous`.
    pub enabled: bool,
}

/// `authentication`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Authentication {
    /// Client certificates.
    pub x509: X509Authentication,
    /// Bearer tokens.
    pub webhook: WebhookAuthentication,
    /// Anonymous requests.
    pub anonymous: AnonymousAuthentication,
}

/// `authorization.webhook`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookAuthorization {
    /// How long allowed answers are cached.
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: GoDuration,
    /// How long denied answers are cached.
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: GoDuration,
}

impl Default for WebhookAuthorization {
    fn default() -> Self {
        WebhookAuthorization {
            cache_authorized_ttl: GoDuration(Duration::from_secs(300)),
            cache_unauthorized_ttl: GoDuration(Duration::from_secs(30)),
        }
    }
}

/// `authorization`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Authorization {
    /// `AlwaysAllow` or `Webhook`.
    pub mode: String,
    /// The webhook's caches.
    pub webhook: WebhookAuthorization,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization {
            mode: "Webhook".into(),
            webhook: WebhookAuthorization::default(),
        }
    }
}

/// The kubelet's configuration. Fields not listed here are accepted and ignored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeletConfiguration {
    /// `kubelet.config.k8s.io/v1beta1`.
    pub api_version: String,
    /// `KubeletConfiguration`.
    pub kind: String,
    /// Directory of static pod manifests.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub static_pod_path: String,
    /// How often running pods are synced.
    pub sync_frequency: GoDuration,
    /// How often the static pod path is checked.
    pub file_check_frequency: GoDuration,
    /// The IP the kubelet API serves on.
    pub address: String,
    /// The kubelet API's port.
    pub port: u16,
    /// The serving certificate (self-signed under `--cert-dir` when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_cert_file: String,
    /// The serving key.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tls_private_key_file: String,
    /// Rotate the client certificate through CSRs.
    pub rotate_certificates: bool,
    /// Request the serving certificate through a `kubelet-serving` CSR.
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: bool,
    /// Who may call the kubelet API.
    pub authentication: Authentication,
    /// What they may do there.
    pub authorization: Authorization,
    /// The port of the localhost healthz endpoint (0 disables it).
    pub healthz_port: u16,
    /// Its address.
    pub healthz_bind_address: String,
    /// The cluster's DNS domain, searched by pods.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_domain: String,
    /// The cluster DNS servers' IPs.
    #[serde(rename = "clusterDNS", skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    /// How often the node status is computed (and posted when changed).
    pub node_status_update_frequency: GoDuration,
    /// How often an unchanged node status is posted anyway.
    pub node_status_report_frequency: GoDuration,
    /// The node Lease's duration.
    pub node_lease_duration_seconds: i32,
    /// The cgroup all pods live under.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cgroup_root: String,
    /// Per-QoS cgroups (`kubepods/burstable`, `kubepods/besteffort`).
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: bool,
    /// `cgroupfs` (the only driver here) or `systemd`.
    pub cgroup_driver: String,
    /// Timeout of runtime calls but pulls.
    pub runtime_request_timeout: GoDuration,
    /// The CRI endpoint.
    pub container_runtime_endpoint: String,
    /// Pods the node runs at most.
    pub max_pods: i64,
    /// The pod CIDR (standalone mode only; the cluster's comes from the Node spec).
    #[serde(rename = "podCIDR", skip_serializing_if = "String::is_empty")]
    pub pod_cidr: String,
    /// Pull one image at a time.
    pub serialize_image_pulls: bool,
    /// Hard eviction thresholds (`memory.available: 100Mi`, `nodefs.available: 10%`).
    pub eviction_hard: BTreeMap<String, String>,
    /// Resources kept for system daemons.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub system_reserved: BTreeMap<String, String>,
    /// Resources kept for Kubernetes daemons.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kube_reserved: BTreeMap<String, String>,
    /// Image GC starts above this disk usage percentage.
    pub image_g_c_high_threshold_percent: i32,
    /// ... and frees down to this one.
    pub image_g_c_low_threshold_percent: i32,
    /// A container log file is rotated at this size.
    pub container_log_max_size: String,
    /// Log files kept per container.
    pub container_log_max_files: i32,
    /// Where container logs live (`/var/log/pods`).
    pub pod_logs_dir: String,
    /// The resolver configuration pods with `dnsPolicy: Default` get.
    pub resolv_conf: String,
    /// Register the node with the apiserver.
    pub register_node: bool,
    /// Taints the node registers with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,
}

impl Default for KubeletConfiguration {
    /// Upstream's v1beta1 defaults.
    fn default() -> Self {
        let s = |secs| GoDuration(Duration::from_secs(secs));
        KubeletConfiguration {
            api_version: "kubelet.config.k8s.io/v1beta1".into(),
            kind: "KubeletConfiguration".into(),
            static_pod_path: String::new(),
            sync_frequency: s(60),
            file_check_frequency: s(20),
            address: "0.0.0.0".into(),
            port: 10250,
            tls_cert_file: String::new(),
            tls_private_key_file: String::new(),
            rotate_certificates: false,
            server_tls_bootstrap: false,
            authentication: Authentication::default(),
            authorization: Authorization::default(),
            healthz_port: 10248,
            healthz_bind_address: "127.0.0.1".into(),
            cluster_domain: String::new(),
            cluster_dns: Vec::new(),
            node_status_update_frequency: s(10),
            node_status_report_frequency: s(300),
            node_lease_duration_seconds: 40,
            cgroup_root: String::new(),
            cgroups_per_qos: true,
            cgroup_driver: "cgroupfs".into(),
            runtime_request_timeout: s(120),
            container_runtime_endpoint: "unix:///run/containerd/containerd.sock".into(),
            max_pods: 110,
            pod_cidr: String::new(),
            serialize_image_pulls: true,
            eviction_hard: [
                ("memory.available", "100Mi"),
                ("nodefs.available", "10%"),
                ("nodefs.inodesFree", "5%"),
                ("imagefs.available", "15%"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            system_reserved: BTreeMap::new(),
            kube_reserved: BTreeMap::new(),
            image_g_c_high_threshold_percent: 85,
            image_g_c_low_threshold_percent: 80,
            container_log_max_size: "10Mi".into(),
            container_log_max_files: 5,
            pod_logs_dir: "/var/log/pods".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            register_node: true,
            register_with_taints: Vec::new(),
        }
    }
}

impl KubeletConfiguration {
    /// Reads and decodes `path`, defaulting what it leaves out.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: shown.clone(),
            message: match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".into(),
                _ => e.to_string(),
            },
        })?;
        Self::decode(&text).map_err(|message| Error::Decode {
            path: shown,
            message,
        })
    }

    /// Decodes a YAML or JSON document.
    pub fn decode(text: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| format!("failed to decode: {e}"))?;
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        let api_version = v
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if kind.is_empty() {
            return Err(format!(
                "failed to decode: Object 'Kind' is missing in '{}'",
                text.trim()
            ));
        }
        if kind != "KubeletConfiguration" || api_version != "kubelet.config.k8s.io/v1beta1" {
            return Err(format!(
                "failed to decode: no kind \"{kind}\" is registered for version \"{api_version}\" in scheme \"pkg/kubelet/apis/config/scheme/scheme.go:35\""
            ));
        }
        let cfg: KubeletConfiguration =
            serde_json::from_value(v).map_err(|e| format!("failed to decode: {e}"))?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    /// Upstream's ValidateKubeletConfiguration, for the fields read here.
    pub fn validate(&self) -> Result<(), Error> {
        let mut errs = Vec::new();
        if self.max_pods < 0 {
            errs.push(
                "invalid configuration: maxPods (--max-pods) must not be a negative number"
                    .to_owned(),
            );
        }
        if !(0..=100).contains(&self.image_g_c_high_threshold_percent) {
            errs.push(format!(
                "invalid configuration: imageGCHighThresholdPercent ({}) must be between 0 and 100",
                self.image_g_c_high_threshold_percent
            ));
        }
        if !(0..=100).contains(&self.image_g_c_low_threshold_percent) {
            errs.push(format!(
                "invalid configuration: imageGCLowThresholdPercent ({}) must be between 0 and 100",
                self.image_g_c_low_threshold_percent
            ));
        }
        if self.image_g_c_low_threshold_percent >= self.image_g_c_high_threshold_percent {
            errs.push(format!("invalid configuration: imageGCLowThresholdPercent ({}) must be less than imageGCHighThresholdPercent ({})", self.image_g_c_low_threshold_percent, self.image_g_c_high_threshold_percent));
        }
        if self.node_lease_duration_seconds <= 0 {
            errs.push(
                "invalid configuration: nodeLeaseDurationSeconds must be greater than 0".to_owned(),
            );
        }
        if self.container_log_max_files < 2 {
            errs.push(format!(
                "invalid configuration: containerLogMaxFiles must be greater than 1 (got {})",
                self.container_log_max_files
            ));
        }
        if self.cgroup_driver != "cgroupfs" && self.cgroup_driver != "systemd" {
            errs.push(format!(
                "invalid configuration: cgroupDriver ({:?}) must be cgroupfs or systemd",
                self.cgroup_driver
            ));
        }
        if !["Webhook", "AlwaysAllow"].contains(&self.authorization.mode.as_str()) {
            errs.push(format!("invalid configuration: authorization.mode ({:?}) must be one of AlwaysAllow, Webhook", self.authorization.mode));
        }
        if self.node_status_update_frequency.0.is_zero() {
            errs.push("invalid configuration: nodeStatusUpdateFrequency (--node-status-update-frequency) must be positive".to_owned());
        }
        match errs.len() {
            0 => Ok(()),
            1 => Err(Error::Invalid(
                errs.remove(0)
                    .trim_start_matches("invalid configuration: ")
                    .to_owned(),
            )),
            _ => Err(Error::Invalid(format!(
                "[{}]",
                errs.iter()
                    .map(|e| e.trim_start_matches("invalid configuration: "))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = KubeletConfiguration::decode(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\nnodeStatusUpdateFrequency: 2s\nmaxPods: 30\nfailSwapOn: false\nauthentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\nimageGCHighThresholdPercent: 90\n",
        )
        .unwrap();
        assert_eq!(
            c.authentication.x509.client_ca_file,
            "/etc/kubernetes/pki/ca.crt"
        );
        assert_eq!(c.image_g_c_high_threshold_percent, 90);
        assert_eq!(c.cluster_dns, ["10.96.0.10"]);
        assert_eq!(c.node_status_update_frequency.0, Duration::from_secs(2));
        assert_eq!(c.max_pods, 30);
        assert_eq!(c.port, 10250);
        assert_eq!(c.eviction_hard["memory.available"], "100Mi");
        assert_eq!(c.authorization.mode, "Webhook");
        assert!(c.authentication.webhook.enabled);
        assert!(!c.authentication.anonymous.enabled);
    }

    #[test]
    fn upstream_errors() {
        let e = KubeletConfiguration::decode("apiVersion: v1\nkind: Pod\n").unwrap_err();
        assert_eq!(
            e,
            "failed to decode: no kind \"Pod\" is registered for version \"v1\" in scheme \"pkg/kubelet/apis/config/scheme/scheme.go:35\""
        );
        let e = KubeletConfiguration::decode(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nsyncFrequency: soon\n",
        )
        .unwrap_err();
        assert!(e.contains("time: invalid duration \"soon\""), "{e}");
        let e = KubeletConfiguration::decode(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nimageGCLowThresholdPercent: 90\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "invalid configuration: imageGCLowThresholdPercent (90) must be less than imageGCHighThresholdPercent (85)"
        );
    }
}
