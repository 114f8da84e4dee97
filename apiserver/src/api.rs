//! The server's shared state ([`Api`]) and the per-kind hooks around storage that are
//! more than a strategy: Service ClusterIP and NodePort allocation.
//!
//! Allocation reads the used addresses and ports from the services watch cache, so it
//! is repaired after a restart by construction; addresses handed out but not yet in
//! the cache are held in a short-lived reservation set.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::admission::{AdmissionRequest, Chain};
use crate::catalog::{Resource, catalog};
use crate::error::{ApiError, FieldError};
use crate::registry::Registry;
use crate::schema::Schema;

/// Settings from the flags that handlers need.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--service-cluster-ip-range` (IPv4).
    pub service_cidr: (Ipv4Addr, u8),
    /// `--service-node-port-range`.
    pub node_ports: (u16, u16),
    /// `--min-request-timeout`.
    pub min_request_timeout: Duration,
    /// The address clients reach this server at (`host:port`).
    pub advertise: String,
    /// How kubelets are reached (`--kubelet-*`).
    pub kubelet: crate::nodes::KubeletClient,
}

/// Everything a request handler may use.
pub struct Api {
    /// Objects.
    pub registry: Registry,
    /// The OpenAPI definitions.
    pub schema: &'static Schema,
    /// The admission chain.
    pub admission: Chain,
    /// The authenticators.
    pub authenticator: crate::authn::Authenticator,
    /// The authorizers.
    pub authorizer: crate::authz::Authorizer,
    /// Service account token issuing (TokenRequest).
    pub token_issuing: Option<crate::serviceaccount::request::Issuing>,
    /// `--audit-policy-file` and its log.
    pub auditor: Option<std::sync::Arc<crate::audit::Auditor>>,
    /// OIDC discovery of the service account issuer.
    pub service_account_issuer: Option<crate::serviceaccount::Discovery>,
    /// Settings.
    pub config: Config,
    reserved_ips: Mutex<HashMap<Ipv4Addr, Instant>>,
    reserved_ports: Mutex<HashMap<u16, Instant>>,
}

/// Parses `10.0.0.0/24`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, bits) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("invalid CIDR address: {s}"))?;
    let bits: u8 = bits
        .parse()
        .map_err(|_| format!("invalid CIDR address: {s}"))?;
    if bits > 30 {
        return Err(format!(
            "specified --service-cluster-ip-range is too small: {s}"
        ));
    }
    let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
    Ok((Ipv4Addr::from(u32::from(ip) & mask), bits))
}

/// Parses `30000-32767`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("invalid port range: {s}"))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("invalid port range: {s}"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("invalid port range: {s}"))?;
    if a > b {
        return Err(format!("invalid port range: {s}"));
    }
    Ok((a, b))
}

impl Config {
    /// The first address of the service range: the `kubernetes` Service's ClusterIP.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_cidr.0) + 1)
    }
    fn in_range(&self, ip: Ipv4Addr) -> bool {
        let (base, bits) = self.service_cidr;
        let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
        u32::from(ip) & mask == u32::from(base)
            && ip != base
            && u32::from(ip) != u32::from(base) | !mask
    }
}

fn services_in_use(api: &Api) -> (Vec<Ipv4Addr>, Vec<u16>) {
    let svc = catalog().get("", "v1", "services").expect("services");
    let (items, _) = api
        .registry
        .cache(svc)
        .map(|c| c.snapshot(""))
        .unwrap_or_default();
    let mut ips = Vec::new();
    let mut ports = Vec::new();
    for s in items {
        for ip in s
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            if let Some(ip) = ip.as_str().and_then(|x| x.parse().ok()) {
                ips.push(ip);
            }
        }
        if let Some(ip) = s
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|x| x.parse().ok())
        {
            ips.push(ip);
        }
        for p in s
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            if let Some(n) = p.get("nodePort").and_then(Value::as_u64) {
                ports.push(n as u16);
            }
        }
    }
    (ips, ports)
}

impl Api {
    /// Builds the state.
    pub fn new(registry: Registry, config: Config) -> Api {
        Api {
            authenticator: crate::authn::Authenticator::default(),
            authorizer: crate::authz::Authorizer::default(),
            token_issuing: None,
            auditor: None,
            service_account_issuer: None,
            registry,
            schema: crate::schema::schema(),
            admission: Chain::default(),
            config,
            reserved_ips: Mutex::new(HashMap::new()),
            reserved_ports: Mutex::new(HashMap::new()),
        }
    }

    /// Runs the validating admission plugins.
    pub async fn validate_admission(&self, req: AdmissionRequest) -> Result<(), ApiError> {
        self.admission.validate(self, req).await
    }

    fn allocate_ip(&self, want: Option<Ipv4Addr>, name: &str) -> Result<Ipv4Addr, ApiError> {
        let (used, _) = services_in_use(self);
        let mut res = self.reserved_ips.lock();
        res.retain(|_, t| t.elapsed() < Duration::from_secs(30));
        let taken = |ip: &Ipv4Addr| used.contains(ip) || res.contains_key(ip);
        let invalid = |ip: Ipv4Addr, why: String| ApiError::Invalid {
            group: String::new(),
            kind: "Service".into(),
            name: name.to_owned(),
            causes: vec![FieldError::invalid(
                "spec.clusterIPs",
                json!([ip.to_string()]),
                why,
            )],
        };
        if let Some(ip) = want {
            if !self.config.in_range(ip) {
                let (b, bits) = self.config.service_cidr;
                return Err(invalid(
                    ip,
                    format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {b}/{bits}"
                    ),
                ));
            }
            if taken(&ip) {
                return Err(invalid(
                    ip,
                    format!("failed to allocate IP {ip}: provided IP is already allocated"),
                ));
            }
            res.insert(ip, Instant::now());
            return Ok(ip);
        }
        let (base, bits) = self.config.service_cidr;
        let size = 1u32 << (32 - bits as u32);
        use rand::Rng;
        let start = rand::rng().random_range(2..size - 1);
        for i in 0..size {
            let off = 2 + (start + i - 2) % (size - 3);
            let ip = Ipv4Addr::from(u32::from(base) + off);
            if !taken(&ip) {
                res.insert(ip, Instant::now());
                return Ok(ip);
            }
        }
        Err(ApiError::Internal(
            "failed to allocate a serviceIP: range is full".into(),
        ))
    }

    fn allocate_port(&self, want: Option<u16>, name: &str, field: &str) -> Result<u16, ApiError> {
        let (_, used) = services_in_use(self);
        let mut res = self.reserved_ports.lock();
        res.retain(|_, t| t.elapsed() < Duration::from_secs(30));
        let (lo, hi) = self.config.node_ports;
        if let Some(p) = want {
            let invalid = |why: String| ApiError::Invalid {
                group: String::new(),
                kind: "Service".into(),
                name: name.to_owned(),
                causes: vec![FieldError::invalid(field, json!(p), why)],
            };
            if p < lo || p > hi {
                return Err(invalid(format!(
                    "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                )));
            }
            if used.contains(&p) || res.contains_key(&p) {
                return Err(invalid("provided port is already allocated".into()));
            }
            res.insert(p, Instant::now());
            return Ok(p);
        }
        use rand::Rng;
        let span = (hi - lo) as u32 + 1;
        let start = rand::rng().random_range(0..span);
        for i in 0..span {
            let p = lo + ((start + i) % span) as u16;
            if !used.contains(&p) && !res.contains_key(&p) {
                res.insert(p, Instant::now());
                return Ok(p);
            }
        }
        Err(ApiError::Internal("range is full".into()))
    }

    fn service_allocations(&self, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        let name = crate::meta::name(obj).to_owned();
        let ty = obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_owned();
        if ty == "ExternalName" {
            return Ok(());
        }
        let old_ip = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let asked = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let ip = match (asked.as_deref(), old_ip.as_deref()) {
            (Some("None"), _) => "None".to_owned(),
            (_, Some(o)) if asked.as_deref().is_none_or(|a| a.is_empty() || a == o) => o.to_owned(),
            (Some(a), _) if !a.is_empty() => {
                let parsed: Ipv4Addr = a.parse().map_err(|_| ApiError::Invalid {
                    group: String::new(),
                    kind: "Service".into(),
                    name: name.clone(),
                    causes: vec![FieldError::invalid(
                        "spec.clusterIPs[0]",
                        json!(a),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )],
                })?;
                self.allocate_ip(Some(parsed), &name)?.to_string()
            }
            _ => self.allocate_ip(None, &name)?.to_string(),
        };
        let spec = obj["spec"].as_object_mut().expect("service spec");
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
        spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        if ty == "NodePort" || ty == "LoadBalancer" {
            let old_ports = old
                .and_then(|o| o.pointer("/spec/ports"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for (i, p) in ports.iter_mut().enumerate() {
                    let asked = p.get("nodePort").and_then(Value::as_u64).map(|n| n as u16);
                    let prev = old_ports
                        .iter()
                        .find(|o| {
                            o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol")
                        })
                        .and_then(|o| o.get("nodePort"))
                        .and_then(Value::as_u64)
                        .map(|n| n as u16);
                    let n = match (asked, prev) {
                        (Some(a), Some(b)) if a == b => a,
                        (None, Some(b)) => b,
                        (a, _) => {
                            self.allocate_port(a, &name, &format!("spec.ports[{i}].nodePort"))?
                        }
                    };
                    p["nodePort"] = json!(n);
                }
            }
        }
        Ok(())
    }

    /// Hook before a new object is stored.
    pub async fn before_create(
        &self,
        res: &Resource,
        obj: &mut Value,
        _dry_run: bool,
    ) -> Result<(), ApiError> {
        if res.kind == "Service" && res.group.is_empty() {
            self.service_allocations(obj, None)?;
        }
        Ok(())
    }

    /// Hook after an object was stored.
    pub async fn after_create(&self, _res: &Resource, _obj: &Value) {}

    /// Hook when a create failed after `before_create`: frees reservations.
    pub async fn release(&self, res: &Resource, obj: &Value) {
        if res.kind == "Service"
            && let Some(ip) = obj
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .and_then(|x| x.parse().ok())
        {
            self.reserved_ips.lock().remove(&ip);
        }
    }

    /// Hook before an update is stored.
    pub async fn before_update(
        &self,
        res: &Resource,
        obj: &mut Value,
        old: &Value,
        _dry_run: bool,
    ) -> Result<(), ApiError> {
        if res.kind == "Service" && res.group.is_empty() {
            self.service_allocations(obj, Some(old))?;
        }
        Ok(())
    }

    /// Hook after an object is gone.
    pub async fn after_delete(&self, res: &Resource, obj: &Value) {
        if res.kind == "CustomResourceDefinition" && res.group == "apiextensions.k8s.io" {
            crate::crd::cleanup(self, obj).await;
        }
    }
}
