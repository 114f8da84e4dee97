//! kube-controller-manager's flags, by upstream's names and defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The controllers this controller-manager knows, by upstream's names, and whether
/// each runs when `--controllers` selects `*`.
pub const KNOWN_CONTROLLERS: &[(&str, bool)] = &[("garbage-collector-controller", true)];

/// Upstream's aliases, still accepted in `--controllers`.
const ALIASES: &[(&str, &str)] = &[("garbagecollector", "garbage-collector-controller")];

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

    /// Start a leader election client and gain leadership before executing the main loop.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// The duration that non-leader candidates will wait after observing a leadership
    /// renewal until attempting to acquire leadership of a led but unrenewed leader slot.
    #[arg(long, default_value = "15s", value_parser = component_base::duration::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// The interval between attempts by the acting master to renew a leadership slot
    /// before it stops leading.
    #[arg(long, default_value = "10s", value_parser = component_base::duration::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// The duration the clients should wait between attempting acquisition and renewal
    /// of a leadership.
    #[arg(long, default_value = "2s", value_parser = component_base::duration::parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// The type of resource object that is used for locking during leader election.
    /// Only `leases` is supported, as in upstream since 1.24.
    #[arg(long, default_value = "leases")]
    pub leader_elect_resource_lock: String,
    /// The name of resource object that is used for locking during leader election.
    #[arg(long, default_value = "kube-controller-manager")]
    pub leader_elect_resource_name: String,
    /// The namespace of resource object that is used for locking during leader election.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,

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

    /// The port on which to serve HTTPS with authentication and authorization.
    #[arg(long, default_value_t = 10257)]
    pub secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
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

impl Options {
    /// Checks the flags together, as upstream's `Validate`.
    pub fn validate(&self) -> Result<(), Error> {
        if self.leader_elect_resource_lock != "leases" {
            return Err(Error::Invalid(format!(
                "--leader-elect-resource-lock: unsupported resource lock {:?}; only \"leases\" is supported",
                self.leader_elect_resource_lock
            )));
        }
        if self.leader_elect {
            if self.leader_elect_lease_duration <= self.leader_elect_renew_deadline {
                return Err(Error::Invalid(
                    "leaseDuration must be greater than renewDeadline".into(),
                ));
            }
            if self.leader_elect_renew_deadline.as_secs_f64()
                <= 1.2 * self.leader_elect_retry_period.as_secs_f64()
            {
                return Err(Error::Invalid(
                    "renewDeadline must be greater than retryPeriod*JitterFactor".into(),
                ));
            }
        }
        if self.concurrent_gc_syncs == 0 {
            return Err(Error::Invalid(
                "--concurrent-gc-syncs must be greater than 0".into(),
            ));
        }
        self.enabled_controllers().map(|_| ())
    }

    /// The controllers to run: `--controllers` resolved against the known ones.
    pub fn enabled_controllers(&self) -> Result<Vec<&'static str>, Error> {
        let canonical = |n: &str| -> Result<&'static str, Error> {
            let n = ALIASES.iter().find(|(a, _)| *a == n).map_or(n, |(_, c)| *c);
            KNOWN_CONTROLLERS
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(k, _)| *k)
                .ok_or_else(|| Error::UnknownController(n.to_owned()))
        };
        let mut star = false;
        let mut on = Vec::new();
        let mut off = Vec::new();
        for c in self
            .controllers
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
        {
            if c == "*" {
                star = true;
            } else if let Some(n) = c.strip_prefix('-') {
                off.push(canonical(n)?);
            } else {
                on.push(canonical(c)?);
            }
        }
        Ok(KNOWN_CONTROLLERS
            .iter()
            .filter(|(name, default)| {
                !off.contains(name) && (on.contains(name) || (star && *default))
            })
            .map(|(name, _)| *name)
            .collect())
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
        assert!(o.leader_elect);
        assert_eq!(o.leader_elect_lease_duration, Duration::from_secs(15));
        assert_eq!(o.leader_elect_renew_deadline, Duration::from_secs(10));
        assert_eq!(o.leader_elect_retry_period, Duration::from_secs(2));
        assert_eq!(o.secure_port, 10257);
        assert_eq!(o.concurrent_gc_syncs, 20);
        o.validate().unwrap();
        assert_eq!(
            o.enabled_controllers().unwrap(),
            ["garbage-collector-controller"]
        );
    }

    #[test]
    fn controllers_selection_and_errors() {
        assert!(
            parse(&["--controllers=*,-garbagecollector"])
                .enabled_controllers()
                .unwrap()
                .is_empty()
        );
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
