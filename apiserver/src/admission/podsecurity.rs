//! PodSecurity: the Pod Security Standards (privileged, baseline, restricted), as
//! upstream's pod-security-admission.
//!
//! A namespace chooses its level per mode with labels:
//! `pod-security.kubernetes.io/enforce` (refuse), `.../warn` (warn the client) and
//! `.../audit` (recorded for audit), each with a `-version` label. Levels missing from
//! a namespace come from the plugin's `PodSecurityConfiguration` defaults
//! (`--admission-control-config-file`), privileged when none; its exemptions
//! (usernames, runtime classes, namespaces) skip the checks.
//!
//! Enforcement applies to pods (create, and updates other than the few fields that
//! may change). Each check is upstream's, with its words; violations are joined the
//! way upstream's are: `violates PodSecurity "restricted:latest": <check> (<detail>),
//! ...`. Each check applies from the version upstream introduced it in (a
//! `-version` label of `v1.22` skips what came later). The audit level's findings go
//! into the request's audit event as `pod-security.kubernetes.io/audit-violations`, with the
//! enforced policy (`.../enforce-policy`) or the exemption (`.../exempt`).

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::pods::{cached, forbidden};
use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::error::ApiError;

/// A Pod Security level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No restrictions.
    Privileged,
    /// Known privilege escalations prevented.
    Baseline,
    /// Hardening best practices.
    Restricted,
}

impl Level {
    /// Parses a label value.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// Every container of a pod spec with its list name.
fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec.get(*k).and_then(Value::as_array).into_iter().flatten())
        .collect()
}

fn cname(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

/// `container "a"` or `containers "a", "b"`.
fn subjects(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    if names.len() == 1 {
        format!("container {}", quoted[0])
    } else {
        format!("containers {}", quoted.join(", "))
    }
}

/// One failed check: its name and detail, upstream's `forbiddenReason` and
/// `forbiddenDetail`.
type Violation = (String, String);

const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Baseline's safe sysctls, with the minor version that allowed each.
const SAFE_SYSCTLS: &[(&str, u32)] = &[
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
];

/// The latest Pod Security Standards version.
pub const LATEST: u32 = u32::MAX;

/// A `-version` label's minor version: `v1.<minor>`, `latest` (or anything else, or
/// a version newer than this server's) as the latest.
pub fn minor_version(version: &str) -> u32 {
    version
        .strip_prefix("v1.")
        .and_then(|m| m.parse::<u32>().ok())
        .filter(|m| *m < 33)
        .unwrap_or(LATEST)
}

const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn sc<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    v.pointer(&format!("/securityContext{path}"))
}

/// The baseline checks.
fn baseline(meta: &Value, spec: &Value, minor: u32) -> Vec<Violation> {
    let mut out: Vec<Violation> = Vec::new();
    let cs = containers(spec);
    // HostProcess
    let hp: Vec<String> = cs
        .iter()
        .filter(|c| sc(c, "/windowsOptions/hostProcess") == Some(&json!(true)))
        .map(|c| cname(c).to_owned())
        .collect();
    if !hp.is_empty() || sc(spec, "/windowsOptions/hostProcess") == Some(&json!(true)) {
        out.push((
            "hostProcess".into(),
            "pod or containers must not set securityContext.windowsOptions.hostProcess=true".into(),
        ));
    }
    // Host namespaces
    let hosts: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|k| spec.get(**k) == Some(&json!(true)))
        .map(|k| format!("{k}=true"))
        .collect();
    if !hosts.is_empty() {
        out.push(("host namespaces".into(), hosts.join(", ")));
    }
    // Privileged
    let privileged: Vec<String> = cs
        .iter()
        .filter(|c| sc(c, "/privileged") == Some(&json!(true)))
        .map(|c| cname(c).to_owned())
        .collect();
    if !privileged.is_empty() {
        out.push((
            "privileged".into(),
            format!(
                "{} must not set securityContext.privileged=true",
                subjects(&privileged)
            ),
        ));
    }
    // Capabilities beyond the default set
    let mut caps_names = Vec::new();
    let mut caps = Vec::new();
    for c in &cs {
        for cap in sc(c, "/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cap = cap.as_str().unwrap_or("");
            if !BASELINE_CAPS.contains(&cap) {
                if !caps_names.contains(&cname(c).to_owned()) {
                    caps_names.push(cname(c).to_owned());
                }
                if !caps.contains(&format!("{cap:?}")) {
                    caps.push(format!("{cap:?}"));
                }
            }
        }
    }
    if !caps.is_empty() {
        out.push((
            "non-default capabilities".into(),
            format!(
                "{} must not include {} in securityContext.capabilities.add",
                subjects(&caps_names),
                caps.join(", ")
            ),
        ));
    }
    // hostPath volumes
    let host_paths: Vec<String> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| format!("{:?}", v.get("name").and_then(Value::as_str).unwrap_or("")))
        .collect();
    if !host_paths.is_empty() {
        let noun = if host_paths.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        out.push((
            "hostPath volumes".into(),
            format!("{noun} {}", host_paths.join(", ")),
        ));
    }
    // Host ports
    let mut port_names = Vec::new();
    let mut ports = Vec::new();
    for c in &cs {
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(hp) = p
                .get("hostPort")
                .and_then(Value::as_i64)
                .filter(|p| *p != 0)
            {
                if !port_names.contains(&cname(c).to_owned()) {
                    port_names.push(cname(c).to_owned());
                }
                ports.push(hp.to_string());
            }
        }
    }
    if !ports.is_empty() {
        let noun = if ports.len() == 1 {
            "hostPort"
        } else {
            "hostPorts"
        };
        out.push((
            "hostPort".into(),
            format!("{} uses {noun} {}", subjects(&port_names), ports.join(", ")),
        ));
    }
    // AppArmor (fields and annotations)
    let bad_apparmor = |p: Option<&Value>| {
        p.and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t != "RuntimeDefault" && t != "Localhost")
    };
    let mut aa = Vec::new();
    if bad_apparmor(sc(spec, "/appArmorProfile")) {
        aa.push("pod".to_owned());
    }
    for c in &cs {
        if bad_apparmor(sc(c, "/appArmorProfile")) {
            aa.push(format!("container {:?}", cname(c)));
        }
    }
    for (k, v) in meta
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let (Some(_), Some(v)) = (
            k.strip_prefix("container.apparmor.security.beta.kubernetes.io/"),
            v.as_str(),
        ) && v != "runtime/default"
            && !v.starts_with("localhost/")
        {
            aa.push(format!("{k}={v:?}"));
        }
    }
    if !aa.is_empty() {
        out.push(("forbidden AppArmor profile".into(), aa.join(", ")));
    }
    // SELinux
    let bad_selinux = |o: Option<&Value>| {
        o.is_some_and(|o| {
            let t = o.get("type").and_then(Value::as_str).unwrap_or("");
            !(t.is_empty()
                || t == "container_t"
                || t == "container_init_t"
                || t == "container_kvm_t"
                || t == "container_engine_t")
                || o.get("user")
                    .and_then(Value::as_str)
                    .is_some_and(|u| !u.is_empty())
                || o.get("role")
                    .and_then(Value::as_str)
                    .is_some_and(|r| !r.is_empty())
        })
    };
    if bad_selinux(sc(spec, "/seLinuxOptions"))
        || cs.iter().any(|c| bad_selinux(sc(c, "/seLinuxOptions")))
    {
        out.push((
            "seLinuxOptions".into(),
            "pod or containers must not set forbidden securityContext.seLinuxOptions".into(),
        ));
    }
    // /proc mount
    let procs: Vec<String> = cs
        .iter()
        .filter(|c| {
            sc(c, "/procMount")
                .and_then(Value::as_str)
                .is_some_and(|p| p != "Default")
        })
        .map(|c| cname(c).to_owned())
        .collect();
    if !procs.is_empty() {
        out.push((
            "procMount".into(),
            format!(
                "{} must not set securityContext.procMount to \"Unmasked\"",
                subjects(&procs)
            ),
        ));
    }
    // Seccomp: Unconfined forbidden
    let unconfined = |o: Option<&Value>| {
        o.and_then(|o| o.get("type")).and_then(Value::as_str) == Some("Unconfined")
    };
    let mut sec = Vec::new();
    if unconfined(sc(spec, "/seccompProfile")) {
        sec.push("pod".to_owned());
    }
    let sec_c: Vec<String> = cs
        .iter()
        .filter(|c| unconfined(sc(c, "/seccompProfile")))
        .map(|c| cname(c).to_owned())
        .collect();
    if !sec_c.is_empty() {
        sec.push(subjects(&sec_c));
    }
    if !sec.is_empty() {
        out.push((
            "seccompProfile".into(),
            format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                sec.join(" and ")
            ),
        ));
    }
    // Sysctls
    let sysctls: Vec<String> = sc(spec, "/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| {
            !SAFE_SYSCTLS
                .iter()
                .any(|(s, since)| s == n && *since <= minor)
        })
        .map(str::to_owned)
        .collect();
    if !sysctls.is_empty() {
        out.push(("forbidden sysctls".into(), sysctls.join(", ")));
    }
    out
}

/// The restricted checks (on top of baseline).
fn restricted(spec: &Value) -> Vec<Violation> {
    let mut out: Vec<Violation> = Vec::new();
    let cs = containers(spec);
    // Volume types
    let mut vols = Vec::new();
    let mut kinds = Vec::new();
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .find(|k| *k != "name");
        if let Some(k) = kind
            && !RESTRICTED_VOLUMES.contains(&k)
        {
            vols.push(format!(
                "{:?}",
                v.get("name").and_then(Value::as_str).unwrap_or("")
            ));
            if !kinds.contains(&format!("{k:?}")) {
                kinds.push(format!("{k:?}"));
            }
        }
    }
    if !vols.is_empty() {
        let (vn, tn) = if vols.len() == 1 {
            ("volume", "type")
        } else {
            ("volumes", "types")
        };
        out.push((
            "restricted volume types".into(),
            format!(
                "{vn} {} {} restricted volume {tn} {}",
                vols.join(", "),
                if vols.len() == 1 { "uses" } else { "use" },
                kinds.join(", ")
            ),
        ));
    }
    // Privilege escalation
    let esc: Vec<String> = cs
        .iter()
        .filter(|c| sc(c, "/allowPrivilegeEscalation") != Some(&json!(false)))
        .map(|c| cname(c).to_owned())
        .collect();
    if !esc.is_empty() {
        out.push((
            "allowPrivilegeEscalation != false".into(),
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                subjects(&esc)
            ),
        ));
    }
    // Capabilities: drop ALL, add only NET_BIND_SERVICE
    let no_drop: Vec<String> = cs
        .iter()
        .filter(|c| {
            !sc(c, "/capabilities/drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        })
        .map(|c| cname(c).to_owned())
        .collect();
    let mut add_names = Vec::new();
    let mut adds = Vec::new();
    for c in &cs {
        for cap in sc(c, "/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cap = cap.as_str().unwrap_or("");
            if cap != "NET_BIND_SERVICE" {
                if !add_names.contains(&cname(c).to_owned()) {
                    add_names.push(cname(c).to_owned());
                }
                if !adds.contains(&format!("{cap:?}")) {
                    adds.push(format!("{cap:?}"));
                }
            }
        }
    }
    let mut caps = Vec::new();
    if !no_drop.is_empty() {
        caps.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            subjects(&no_drop)
        ));
    }
    if !adds.is_empty() {
        caps.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            subjects(&add_names),
            adds.join(", ")
        ));
    }
    if !caps.is_empty() {
        out.push(("unrestricted capabilities".into(), caps.join("; ")));
    }
    // runAsNonRoot
    let pod_non_root = sc(spec, "/runAsNonRoot");
    if pod_non_root == Some(&json!(false)) {
        out.push((
            "runAsNonRoot != true".into(),
            "pod must not set securityContext.runAsNonRoot=false".into(),
        ));
    } else {
        let bad: Vec<String> = cs
            .iter()
            .filter(|c| match sc(c, "/runAsNonRoot") {
                Some(v) => v != &json!(true),
                None => pod_non_root != Some(&json!(true)),
            })
            .map(|c| cname(c).to_owned())
            .collect();
        if !bad.is_empty() {
            let detail = if pod_non_root.is_none() && bad.len() == cs.len() {
                format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    subjects(&bad)
                )
            } else {
                format!(
                    "{} must not set securityContext.runAsNonRoot=false",
                    subjects(&bad)
                )
            };
            out.push(("runAsNonRoot != true".into(), detail));
        }
    }
    // runAsUser=0
    let mut root = Vec::new();
    if sc(spec, "/runAsUser") == Some(&json!(0)) {
        root.push("pod".to_owned());
    }
    let root_c: Vec<String> = cs
        .iter()
        .filter(|c| sc(c, "/runAsUser") == Some(&json!(0)))
        .map(|c| cname(c).to_owned())
        .collect();
    if !root_c.is_empty() {
        root.push(subjects(&root_c));
    }
    if !root.is_empty() {
        out.push((
            "runAsUser=0".into(),
            format!("{} must not set runAsUser=0", root.join(" and ")),
        ));
    }
    // Seccomp: RuntimeDefault or Localhost required
    let ok = |o: Option<&Value>| {
        matches!(
            o.and_then(|o| o.get("type")).and_then(Value::as_str),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let pod_ok = ok(sc(spec, "/seccompProfile"));
    let bad: Vec<String> = cs
        .iter()
        .filter(|c| {
            let own = sc(c, "/seccompProfile");
            if own.is_some() { !ok(own) } else { !pod_ok }
        })
        .map(|c| cname(c).to_owned())
        .collect();
    if !bad.is_empty() {
        let who = if sc(spec, "/seccompProfile").is_none() && bad.len() == cs.len() {
            format!("pod or {}", subjects(&bad))
        } else {
            subjects(&bad)
        };
        out.push((
            "seccompProfile".into(),
            format!("{who} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\""),
        ));
    }
    out
}

/// The violations of a pod (its metadata and spec) at `level` as of version
/// `v1.<minor>` ([`LATEST`] for `latest`): the seccomp checks start at 1.19 (older
/// versions' annotation checks are not evaluated), restricted's capability check
/// replaces baseline's at 1.22, `runAsUser` starts at 1.23, and the safe sysctls
/// grow at 1.27, 1.29 and 1.32, as upstream's check registry.
pub fn check(level: Level, minor: u32, meta: &Value, spec: &Value) -> Vec<Violation> {
    let mut v = match level {
        Level::Privileged => Vec::new(),
        Level::Baseline => baseline(meta, spec, minor),
        Level::Restricted => {
            let mut v = baseline(meta, spec, minor);
            // Restricted's capability check supersedes baseline's.
            if minor >= 22 {
                v.retain(|(name, _)| name != "non-default capabilities");
            }
            v.extend(restricted(spec));
            v
        }
    };
    v.retain(|(name, _)| match name.as_str() {
        "seccompProfile" => minor >= 19,
        "runAsUser=0" => minor >= 23,
        "unrestricted capabilities" => minor >= 22,
        _ => true,
    });
    v
}

/// Upstream's joined violation text.
pub fn describe(v: &[Violation]) -> String {
    v.iter()
        .map(|(n, d)| {
            if d.is_empty() {
                n.clone()
            } else {
                format!("{n} ({d})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plugin, with its `PodSecurityConfiguration`.
pub struct PodSecurity {
    defaults: [(Level, String); 3],
    exempt_users: Vec<String>,
    exempt_namespaces: Vec<String>,
    exempt_runtime_classes: Vec<String>,
}

impl PodSecurity {
    /// From the plugin's configuration (`PodSecurityConfiguration`), or defaults.
    pub fn new(config: &Value) -> Result<PodSecurity, String> {
        let default = |mode: &str| -> Result<(Level, String), String> {
            let level = config
                .pointer(&format!("/defaults/{mode}"))
                .and_then(Value::as_str)
                .unwrap_or("privileged");
            let version = config
                .pointer(&format!("/defaults/{mode}-version"))
                .and_then(Value::as_str)
                .unwrap_or("latest")
                .to_owned();
            Level::parse(level)
                .map(|l| (l, version))
                .ok_or_else(|| format!("defaults.{mode}: Invalid value: {level:?}: must be one of privileged, baseline, restricted"))
        };
        let list = |p: &str| -> Vec<String> {
            config
                .pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(PodSecurity {
            defaults: [default("enforce")?, default("warn")?, default("audit")?],
            exempt_users: list("/exemptions/usernames"),
            exempt_namespaces: list("/exemptions/namespaces"),
            exempt_runtime_classes: list("/exemptions/runtimeClasses"),
        })
    }

    /// The namespace's (level, version) for `mode` (0 enforce, 1 warn, 2 audit).
    fn policy(&self, labels: &serde_json::Map<String, Value>, mode: usize) -> (Level, String) {
        let name = ["enforce", "warn", "audit"][mode];
        let key = format!("pod-security.kubernetes.io/{name}");
        let level = labels
            .get(&key)
            .and_then(Value::as_str)
            .map(|l| Level::parse(l).unwrap_or(Level::Restricted))
            .unwrap_or(self.defaults[mode].0);
        let version = labels
            .get(&format!("{key}-version"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.defaults[mode].1.clone());
        (level, version)
    }
}

impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }
    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if req.operation == Operation::Delete || req.subresource.is_some() {
                return Ok(());
            }
            let Some(obj) = &req.object else {
                return Ok(());
            };
            // Pods are enforced; workloads' pod templates are only warned about, as
            // upstream does.
            let template = match (req.resource.group, req.resource.kind) {
                ("", "Pod") => None,
                ("", "ReplicationController")
                | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
                | ("batch", "Job") => Some("/spec/template"),
                ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template"),
                ("", "PodTemplate") => Some("/template"),
                _ => return Ok(()),
            };
            let pod = match template {
                None => obj,
                Some(p) => match obj.pointer(p) {
                    Some(t) => t,
                    None => return Ok(()),
                },
            };
            const EXEMPT: &str = "pod-security.kubernetes.io/exempt";
            if self.exempt_namespaces.contains(&req.namespace) {
                req.annotate(EXEMPT, "namespace".into());
                return Ok(());
            }
            if self.exempt_users.contains(&req.user.name) {
                req.annotate(EXEMPT, "user".into());
                return Ok(());
            }
            if pod
                .pointer("/spec/runtimeClassName")
                .and_then(Value::as_str)
                .is_some_and(|rc| self.exempt_runtime_classes.iter().any(|x| x == rc))
            {
                req.annotate(EXEMPT, "runtimeClass".into());
                return Ok(());
            }
            // Updates are checked only when the pod's security-relevant spec changed
            // (upstream ignores metadata-only and image updates).
            if req.operation == Operation::Update
                && let Some(old) = &req.old_object
            {
                let strip = |p: &Value| {
                    let mut s = p.get("spec").cloned().unwrap_or(Value::Null);
                    for c in ["initContainers", "containers", "ephemeralContainers"] {
                        if let Some(list) = s.get_mut(c).and_then(Value::as_array_mut) {
                            for x in list {
                                if let Some(o) = x.as_object_mut() {
                                    o.remove("image");
                                }
                            }
                        }
                    }
                    s
                };
                if strip(pod) == strip(old) {
                    return Ok(());
                }
            }
            let labels = cached(api, "", "v1", "namespaces", "", &req.namespace)
                .and_then(|ns| {
                    ns.pointer("/metadata/labels")
                        .and_then(Value::as_object)
                        .cloned()
                })
                .unwrap_or_default();
            let meta = pod.get("metadata").cloned().unwrap_or(Value::Null);
            let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
            let (level, version) = self.policy(&labels, 0);
            let warn_policy = self.policy(&labels, 1);
            // Workloads are warned at both levels; pods at the warn level when it
            // differs from the enforced one.
            let mut warn_at = vec![warn_policy.clone()];
            if template.is_some() {
                warn_at.push((level, version.clone()));
            } else {
                warn_at.retain(|p| *p != (level, version.clone()));
            }
            warn_at.dedup();
            for (l, v) in warn_at {
                let found = check(l, minor_version(&v), &meta, &spec);
                if !found.is_empty() {
                    req.warnings.lock().push(format!(
                        "would violate PodSecurity \"{}:{v}\": {}",
                        l.as_str(),
                        describe(&found)
                    ));
                }
            }
            // Audit mode: what the audit level finds goes into the audit event.
            let (audit_level, audit_version) = self.policy(&labels, 2);
            let found = check(audit_level, minor_version(&audit_version), &meta, &spec);
            if !found.is_empty() {
                req.annotate(
                    "pod-security.kubernetes.io/audit-violations",
                    format!(
                        "would violate PodSecurity \"{}:{audit_version}\": {}",
                        audit_level.as_str(),
                        describe(&found)
                    ),
                );
            }
            if template.is_some() {
                return Ok(());
            }
            req.annotate(
                "pod-security.kubernetes.io/enforce-policy",
                format!("{}:{version}", level.as_str()),
            );
            let violations = check(level, minor_version(&version), &meta, &spec);
            if violations.is_empty() {
                return Ok(());
            }
            Err(forbidden(
                req,
                &format!(
                    "violates PodSecurity \"{}:{version}\": {}",
                    level.as_str(),
                    describe(&violations)
                ),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_violations_in_upstreams_words() {
        let spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        let v = check(Level::Restricted, LATEST, &json!({}), &spec);
        assert_eq!(
            describe(&v),
            "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        let good = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]});
        assert!(check(Level::Restricted, LATEST, &json!({}), &good).is_empty());
    }

    #[test]
    fn baseline_violations() {
        let spec = json!({"hostNetwork": true, "containers": [
            {"name": "a", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}},
             "ports": [{"containerPort": 80, "hostPort": 80}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]});
        assert_eq!(
            describe(&check(Level::Baseline, LATEST, &json!({}), &spec)),
            "host namespaces (hostNetwork=true), privileged (container \"a\" must not set securityContext.privileged=true), non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), hostPath volumes (volume \"root\"), hostPort (container \"a\" uses hostPort 80)"
        );
        assert!(check(Level::Privileged, LATEST, &json!({}), &spec).is_empty());
        assert!(
            check(
                Level::Baseline,
                LATEST,
                &json!({}),
                &json!({"containers": [{"name": "c"}]})
            )
            .is_empty()
        );
    }

    #[test]
    fn checks_apply_from_the_version_that_introduced_them() {
        assert_eq!(minor_version("latest"), LATEST);
        assert_eq!(minor_version("v1.22"), 22);
        assert_eq!(minor_version("v1.99"), LATEST);
        assert_eq!(minor_version("bogus"), LATEST);
        let spec = json!({"containers": [{"name": "c", "securityContext": {
            "runAsUser": 0, "runAsNonRoot": true, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}}}]});
        let names = |minor| {
            check(Level::Restricted, minor, &json!({}), &spec)
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(LATEST), ["runAsUser=0", "seccompProfile"]);
        assert_eq!(names(22), ["seccompProfile"]);
        assert!(names(18).is_empty());
        let sysctl = json!({"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1"}]}, "containers": []});
        assert!(check(Level::Baseline, LATEST, &json!({}), &sysctl).is_empty());
        assert_eq!(check(Level::Baseline, 31, &json!({}), &sysctl).len(), 1);
    }
}
