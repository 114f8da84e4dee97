//! kube-controller-manager's flags, by upstream's names and defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Upstream's controllers by name (1.33): whether Keelson implements each, and
/// whether it is off unless named (`--controllers=*` leaves it out).
pub const KNOWN_CONTROLLERS: &[(&str, Implemented, DefaultOn)] = &[
    ("bootstrap-signer-controller", false, false),
    (
        "certificatesigningrequest-approving-controller",
        false,
        true,
    ),
    ("certificatesigningrequest-cleaner-controller", false, true),
    ("certificatesigningrequest-signing-controller", false, true),
    ("cloud-node-lifecycle-controller", false, true),
    ("clusterrole-aggregation-controller", true, true),
    ("cronjob-controller", false, true),
    ("daemonset-controller", false, true),
    ("deployment-controller", true, true),
    ("disruption-controller", false, true),
    ("endpoints-controller", false, true),
    ("endpointslice-controller", false, true),
    ("endpointslice-mirroring-controller", false, true),
    ("ephemeral-volume-controller", false, true),
    ("garbage-collector-controller", true, true),
    ("horizontal-pod-autoscaler-controller", false, true),
    ("job-controller", false, true),
    (
        "legacy-serviceaccount-token-cleaner-controller",
        false,
        true,
    ),
    ("namespace-controller", true, true),
    ("node-ipam-controller", false, true),
    ("node-lifecycle-controller", true, true),
    ("node-route-controller", false, true),
    ("persistentvolume-attach-detach-controller", false, true),
    ("persistentvolume-binder-controller", false, true),
    ("persistentvolume-expander-controller", false, true),
    ("persistentvolume-protection-controller", false, true),
    ("persistentvolumeclaim-protection-controller", false, true),
    ("pod-garbage-collector-controller", false, true),
    ("replicaset-controller", true, true),
    ("replicationcontroller-controller", true, true),
    ("resourceclaim-controller", false, false),
    ("resourcequota-controller", true, true),
    ("root-ca-certificate-publisher-controller", true, true),
    ("selinux-warning-controller", false, false),
    ("service-cidr-controller", false, true),
    ("service-lb-controller", false, true),
    ("serviceaccount-controller", true, true),
    ("serviceaccount-token-controller", false, true),
    ("statefulset-controller", false, true),
    ("storageversion-garbage-collector-controller", false, false),
    ("taint-eviction-controller", false, true),
    ("token-cleaner-controller", false, false),
    ("ttl-after-finished-controller", false, true),
    ("ttl-controller", false, true),
    ("validatingadmissionpolicy-status-controller", false, true),
];

/// Whether Keelson implements a controller.
type Implemented = bool;
/// Whether `*` turns a controller on.
type DefaultOn = bool;

/// Upstream's older names, still accepted in `--controllers` (kubeadm writes
/// `--controllers=*,bootstrapsigner,tokencleaner`).
const ALIASES: &[(&str, &str)] = &[
    ("attachdetach", "persistentvolume-attach-detach-controller"),
    ("bootstrapsigner", "bootstrap-signer-controller"),
    ("cloud-node-lifecycle", "cloud-node-lifecycle-controller"),
    (
        "clusterrole-aggregation",
        "clusterrole-aggregation-controller",
    ),
    ("cronjob", "cronjob-controller"),
    (
        "csrapproving",
        "certificatesigningrequest-approving-controller",
    ),
    ("csrcleaner", "certificatesigningrequest-cleaner-controller"),
    ("csrsigning", "certificatesigningrequest-signing-controller"),
    ("daemonset", "daemonset-controller"),
    ("deployment", "deployment-controller"),
    ("disruption", "disruption-controller"),
    ("endpoint", "endpoints-controller"),
    ("endpointslice", "endpointslice-controller"),
    (
        "endpointslicemirroring",
        "endpointslice-mirroring-controller",
    ),
    ("ephemeral-volume", "ephemeral-volume-controller"),
    ("garbagecollector", "garbage-collector-controller"),
    (
        "horizontalpodautoscaling",
        "horizontal-pod-autoscaler-controller",
    ),
    ("job", "job-controller"),
    (
        "legacy-service-account-token-cleaner",
        "legacy-serviceaccount-token-cleaner-controller",
    ),
    ("namespace", "namespace-controller"),
    ("nodeipam", "node-ipam-controller"),
    ("nodelifecycle", "node-lifecycle-controller"),
    (
        "persistentvolume-binder",
        "persistentvolume-binder-controller",
    ),
    (
        "persistentvolume-expander",
        "persistentvolume-expander-controller",
    ),
    ("podgc", "pod-garbage-collector-controller"),
    ("pv-protection", "persistentvolume-protection-controller"),
    (
        "pvc-protection",
        "persistentvolumeclaim-protection-controller",
    ),
    ("replicaset", "replicaset-controller"),
    ("replicationcontroller", "replicationcontroller-controller"),
    ("resource-claim-controller", "resourceclaim-controller"),
    ("resourcequota", "resourcequota-controller"),
    (
        "root-ca-cert-publisher",
        "root-ca-certificate-publisher-controller",
    ),
    ("route", "node-route-controller"),
    ("service", "service-lb-controller"),
    ("serviceaccount", "serviceaccount-controller"),
    ("serviceaccount-token", "serviceaccount-token-controller"),
    ("statefulset", "statefulset-controller"),
    (
        "storage-version-gc",
        "storageversion-garbage-collector-controller",
    ),
    ("tokencleaner", "token-cleaner-controller"),
    ("ttl", "ttl-controller"),
    ("ttl-after-finished", "ttl-after-finished-controller"),
];

/// Flag errors, in upstream's words.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--controllers` names something unknown.
    #[error("{0:?} is not in the list of known controllers")]
    UnknownController(String),
    /// A flag value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// kube-controller-manager's command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-controller-manager",
    about = "The Kubernetes controller manager is a daemon that embeds the core control loops shipped with Kubernetes."
)]
pub struct Options {
    /// Path to kubeconfig file with authorization and master location information.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The address of the Kubernetes API server (overrides any value in kubeconfig).
    #[arg(long)]
    pub master: Option<String>,

    /// The `--leader-elect*` flags (Lease `kube-system/kube-controller-manager`).
    #[command(flatten)]
    pub leader_election: client_base::leaderelection::Flags,

    /// QPS to use while talking with kubernetes apiserver.
    #[arg(long, default_value_t = 20.0)]
    pub kube_api_qps: f32,
    /// Burst to use while talking with kubernetes apiserver.
    #[arg(long, default_value_t = 30)]
    pub kube_api_burst: u32,

    /// A list of controllers to enable. '*' enables all on-by-default controllers,
    /// 'foo' enables the controller named 'foo', '-foo' disables the controller named 'foo'.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Enables the generic garbage collector. MUST be synced with the corresponding
    /// flag of the kube-apiserver.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_garbage_collector: bool,
    /// The number of garbage collector workers that are allowed to sync concurrently.
    #[arg(long, default_value_t = 20)]
    pub concurrent_gc_syncs: usize,

    /// The period for syncing NodeStatus in cloud-node-lifecycle-controller and
    /// node-lifecycle-controller.
    #[arg(long, default_value = "5s", value_parser = component_base::duration::parse_duration)]
    pub node_monitor_period: Duration,
    /// Amount of time which we allow running Node to be unresponsive before
    /// marking it unhealthy.
    #[arg(long, default_value = "50s", value_parser = component_base::duration::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// Amount of time which we allow starting Node to be unresponsive before
    /// marking it unhealthy.
    #[arg(long, default_value = "1m0s", value_parser = component_base::duration::parse_duration)]
    pub node_startup_grace_period: Duration,
    /// Number of nodes per second on which pods are deleted in case of node failure
    /// when a zone is healthy.
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f32,
    /// The number of namespace objects that are allowed to sync concurrently.
    /// Larger number = more responsive namespace termination, but more CPU (and
    /// network) load.
    #[arg(long, default_value_t = 10)]
    pub concurrent_namespace_syncs: usize,
    /// The number of deployment objects that are allowed to sync concurrently.
    /// Larger number = more responsive deployments, but more CPU (and network) load.
    #[arg(long, default_value_t = 5)]
    pub concurrent_deployment_syncs: usize,
    /// The number of replication controllers that are allowed to sync
    /// concurrently. Larger number = more responsive replica management, but more
    /// CPU (and network) load.
    #[arg(long, default_value_t = 5)]
    pub concurrent_rc_syncs: usize,
    /// The number of replica sets that are allowed to sync concurrently. Larger
    /// number = more responsive replica management, but more CPU (and network) load.
    #[arg(long, default_value_t = 5)]
    pub concurrent_replicaset_syncs: usize,

    /// The number of resource quotas that are allowed to sync concurrently. Larger
    /// number = more responsive quota management, but more CPU (and network) load.
    #[arg(long, default_value_t = 5)]
    pub concurrent_resource_quota_syncs: usize,
    /// The period for syncing quota usage status in the system.
    #[arg(long, default_value = "5m0s", value_parser = component_base::duration::parse_duration)]
    pub resource_quota_sync_period: Duration,

    /// The port on which to serve HTTPS with authentication and authorization.
    #[arg(long, default_value_t = 10257)]
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

    /// Flags kubeadm's manifest and common deployments pass for controllers and
    /// delegated authentication Keelson does not have yet: accepted, so that those
    /// command lines start, and otherwise unused until the controllers that read
    /// them exist.
    #[command(flatten)]
    pub accepted: Accepted,
    /// If true, use individual service account credentials for each controller.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_service_account_credentials: bool,
    /// If set, this root certificate authority will be included in service account's
    /// token secret and in every namespace's kube-root-ca.crt ConfigMap. This must be
    /// a valid PEM-encoded CA bundle. Unset: the CA the --kubeconfig trusts.
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,
}

/// Upstream flags accepted for compatibility; see [`Options::accepted`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Accepted {
    /// CA bundle for request-header (front-proxy) client certificates.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// The key that signs service account tokens.
    #[arg(long)]
    pub service_account_private_key_file: Option<PathBuf>,
    /// The CA certificate the CSR signing controller signs with.
    #[arg(long)]
    pub cluster_signing_cert_file: Option<PathBuf>,
    /// The CA key the CSR signing controller signs with.
    #[arg(long)]
    pub cluster_signing_key_file: Option<PathBuf>,
    /// The instance prefix for the cluster.
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// CIDR range for pods in the cluster.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Whether pod CIDRs are allocated to nodes.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allocate_node_cidrs: Option<bool>,
    /// CIDR range for services.
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,
    /// Log verbosity (klog's `-v`); use RUST_LOG for Keelson's levels.
    #[arg(long = "v", short = 'v')]
    pub verbosity: Option<u32>,
}

impl Options {
    /// Checks the flags together, as upstream's `Validate`.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(e) = self.leader_election_config().validate().into_iter().next() {
            return Err(Error::Invalid(e));
        }
        if self.concurrent_gc_syncs == 0 {
            return Err(Error::Invalid(
                "--concurrent-gc-syncs must be greater than 0".into(),
            ));
        }
        self.enabled_controllers().map(|_| ())
    }

    /// The controllers to run, as upstream's `IsControllerEnabled`: the first
    /// mention of a controller (`name` or `-name`) wins; otherwise `*` enables the
    /// default-on ones. Unknown names are an error; known but unimplemented ones are
    /// returned too (the caller logs that they do not run).
    pub fn enabled_controllers(&self) -> Result<Vec<&'static str>, Error> {
        let canonical = |n: &str| -> Result<&'static str, Error> {
            let n = ALIASES.iter().find(|(a, _)| *a == n).map_or(n, |(_, c)| *c);
            KNOWN_CONTROLLERS
                .iter()
                .find(|(k, _, _)| *k == n)
                .map(|(k, _, _)| *k)
                .ok_or_else(|| Error::UnknownController(n.to_owned()))
        };
        let mut star = false;
        let mut decided: Vec<(&'static str, bool)> = Vec::new();
        for c in self
            .controllers
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
        {
            if c == "*" {
                star = true;
                continue;
            }
            let (name, on) = match c.strip_prefix('-') {
                Some(n) => (canonical(n)?, false),
                None => (canonical(c)?, true),
            };
            if !decided.iter().any(|(d, _)| *d == name) {
                decided.push((name, on));
            }
        }
        Ok(KNOWN_CONTROLLERS
            .iter()
            .filter(
                |(name, _, default_on)| match decided.iter().find(|(d, _)| d == name) {
                    Some((_, on)) => *on,
                    None => star && *default_on,
                },
            )
            .map(|(name, _, _)| *name)
            .collect())
    }

    /// Leader election: upstream's defaults for the `kube-controller-manager` Lease,
    /// overridden by the flags given.
    pub fn leader_election_config(&self) -> client_base::leaderelection::Config {
        let mut cfg = client_base::leaderelection::Config::defaults("kube-controller-manager");
        self.leader_election.apply(&mut cfg);
        cfg
    }

    /// Whether Keelson implements controller `name`.
    pub fn implemented(name: &str) -> bool {
        KNOWN_CONTROLLERS
            .iter()
            .any(|(n, implemented, _)| *n == name && *implemented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Options {
        Options::parse_from(std::iter::once("kube-controller-manager").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_upstreams() {
        let o = parse(&[]);
        let le = o.leader_election_config();
        assert!(le.leader_elect);
        assert_eq!(le.lease_duration, Duration::from_secs(15));
        assert_eq!(le.renew_deadline, Duration::from_secs(10));
        assert_eq!(le.retry_period, Duration::from_secs(2));
        assert_eq!(le.resource_name, "kube-controller-manager");
        assert_eq!((o.kube_api_qps, o.kube_api_burst), (20.0, 30));
        assert_eq!(o.secure_port, 10257);
        assert_eq!(o.concurrent_gc_syncs, 20);
        o.validate().unwrap();
        assert!(
            o.enabled_controllers()
                .unwrap()
                .contains(&"garbage-collector-controller")
        );
    }

    #[test]
    fn controllers_selection_and_errors() {
        let star = parse(&[]).enabled_controllers().unwrap();
        assert!(star.contains(&"garbage-collector-controller"));
        assert!(star.contains(&"deployment-controller"));
        assert!(
            !star.contains(&"bootstrap-signer-controller"),
            "off by default"
        );
        assert!(
            !parse(&["--controllers=*,-garbagecollector"])
                .enabled_controllers()
                .unwrap()
                .contains(&"garbage-collector-controller")
        );
        // kubeadm's list, and upstream's first-match-wins.
        let kubeadm = parse(&["--controllers=*,bootstrapsigner,tokencleaner"])
            .enabled_controllers()
            .unwrap();
        assert!(kubeadm.contains(&"bootstrap-signer-controller"));
        assert!(kubeadm.contains(&"token-cleaner-controller"));
        assert!(
            parse(&["--controllers=deployment,-deployment"])
                .enabled_controllers()
                .unwrap()
                .contains(&"deployment-controller")
        );
        assert!(Options::implemented("garbage-collector-controller"));
        assert!(Options::implemented("deployment-controller"));
        assert!(!Options::implemented("statefulset-controller"));
        assert!(
            parse(&["--leader-elect-retry-period=0s"])
                .validate()
                .is_err()
        );
        // kubeadm's manifest flags are accepted.
        parse(&[
            "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
            "--use-service-account-credentials=true",
            "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
            "--allocate-node-cidrs=true",
            "--v=2",
        ])
        .validate()
        .unwrap();
        assert_eq!(
            parse(&["--controllers=garbage-collector-controller"])
                .enabled_controllers()
                .unwrap(),
            ["garbage-collector-controller"]
        );
        assert_eq!(
            parse(&["--controllers=*,bogus"])
                .validate()
                .unwrap_err()
                .to_string(),
            "\"bogus\" is not in the list of known controllers"
        );
        assert_eq!(
            parse(&["--leader-elect-renew-deadline=20s"])
                .validate()
                .unwrap_err()
                .to_string(),
            "leaseDuration must be greater than renewDeadline"
        );
        assert!(
            parse(&["--leader-elect=false", "--leader-elect-renew-deadline=20s"])
                .validate()
                .is_ok()
        );
    }
}
