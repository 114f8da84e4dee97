//! A pod's resolver configuration, as upstream's `pkg/kubelet/network/dns`:
//! `dnsPolicy` over the cluster DNS settings and the node's resolv.conf, then the
//! pod's `dnsConfig` merged in.

use k8s_openapi::api::core::v1::Pod;

use crate::cri::v1::DnsConfig;

/// The node's resolver settings (its resolv.conf).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostDns {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// `search` domains.
    pub searches: Vec<String>,
    /// `options`.
    pub options: Vec<String>,
}

impl HostDns {
    /// Parses resolv.conf text.
    pub fn parse(text: &str) -> HostDns {
        let mut d = HostDns::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut f = line.split_whitespace();
            match f.next() {
                Some("nameserver") => d.servers.extend(f.next().map(str::to_owned)),
                Some("search") => d.searches = f.map(str::to_owned).collect(),
                Some("options") => d.options.extend(f.map(str::to_owned)),
                _ => {}
            }
        }
        d
    }
}

/// The cluster's DNS settings from the kubelet configuration.
#[derive(Clone, Debug, Default)]
pub struct ClusterDns {
    /// `clusterDNS`.
    pub servers: Vec<String>,
    /// `clusterDomain`.
    pub domain: String,
}

/// Upstream caps search paths at 32 domains.
const MAX_SEARCH: usize = 32;

/// What a pod's DNS policy resolves to. `Err` carries the warning upstream records
/// as a `MissingClusterDNS` event when ClusterFirst has no cluster DNS to use.
pub fn pod_dns(pod: &Pod, cluster: &ClusterDns, host: &HostDns) -> (DnsConfig, Option<String>) {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.clone())
        .unwrap_or_else(|| "ClusterFirst".into());
    let mut warning = None;
    let cluster_first = match policy.as_str() {
        "None" => None,
        "Default" => Some(false),
        "ClusterFirstWithHostNet" => Some(true),
        // ClusterFirst: host-network pods fall back to the node's resolver.
        _ => Some(!host_network),
    };
    let mut cfg = DnsConfig::default();
    match cluster_first {
        None => {}
        Some(true) if cluster.servers.is_empty() => {
            warning = Some(format!(
                "pod: {:?}. kubelet does not have ClusterDNS IP configured and cannot create Pod using \"{policy}\" policy. Falling back to \"Default\" policy.",
                format!(
                    "{}_{}({})",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.uid.as_deref().unwrap_or_default()
                )
            ));
            cfg.servers = host.servers.clone();
            cfg.searches = host.searches.clone();
            cfg.options = host.options.clone();
        }
        Some(true) => {
            cfg.servers = cluster.servers.clone();
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            if !cluster.domain.is_empty() {
                cfg.searches = vec![
                    format!("{ns}.svc.{}", cluster.domain),
                    format!("svc.{}", cluster.domain),
                    cluster.domain.clone(),
                ];
            }
            cfg.searches.extend(host.searches.iter().cloned());
            cfg.options = vec!["ndots:5".into()];
        }
        Some(false) => {
            cfg.servers = host.servers.clone();
            cfg.searches = host.searches.clone();
            cfg.options = host.options.clone();
        }
    }
    if let Some(pc) = spec.and_then(|s| s.dns_config.as_ref()) {
        for s in pc.nameservers.iter().flatten() {
            if !cfg.servers.contains(s) {
                cfg.servers.push(s.clone());
            }
        }
        for s in pc.searches.iter().flatten() {
            if !cfg.searches.contains(s) {
                cfg.searches.push(s.clone());
            }
        }
        // Options merge by name; the pod's value wins.
        for o in pc.options.iter().flatten() {
            let text = match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let name = o.name.as_deref().unwrap_or_default();
            cfg.options
                .retain(|x| x.split(':').next().unwrap_or_default() != name);
            cfg.options.push(text);
        }
    }
    cfg.searches.truncate(MAX_SEARCH);
    (cfg, warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str, host_network: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "team", "uid": "u1"},
            "spec": {"dnsPolicy": policy, "hostNetwork": host_network, "containers": [],
                     "dnsConfig": {"options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
                                   "searches": ["extra.example"]}}
        }))
        .unwrap()
    }

    #[test]
    fn policies_as_upstream() {
        let host =
            HostDns::parse("# comment\nnameserver 1.1.1.1\nsearch corp.example\noptions rotate\n");
        let cluster = ClusterDns {
            servers: vec!["10.96.0.10".into()],
            domain: "cluster.local".into(),
        };
        let (c, w) = pod_dns(&pod("ClusterFirst", false), &cluster, &host);
        assert!(w.is_none());
        assert_eq!(c.servers, ["10.96.0.10"]);
        assert_eq!(
            c.searches,
            [
                "team.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "extra.example"
            ]
        );
        assert_eq!(c.options, ["ndots:2", "edns0"]);
        let (c, _) = pod_dns(&pod("ClusterFirst", true), &cluster, &host);
        assert_eq!(c.servers, ["1.1.1.1"]);
        let (c, w) = pod_dns(&pod("ClusterFirst", false), &ClusterDns::default(), &host);
        assert_eq!(c.servers, ["1.1.1.1"]);
        assert!(w.unwrap().contains("Falling back to \"Default\" policy"));
        let (c, _) = pod_dns(&pod("None", false), &cluster, &host);
        assert!(c.servers.is_empty());
        assert_eq!(c.searches, ["extra.example"]);
    }
}
