//! Auditing: `--audit-policy-file` (an `audit.k8s.io/v1` Policy) chooses, per request,
//! a level (None, Metadata, Request, RequestResponse) and the stages to omit, by the
//! first rule that matches; `--audit-log-path` receives upstream's `audit.k8s.io/v1`
//! Event JSON lines, rotated by size (`--audit-log-maxsize`, MB), count
//! (`--audit-log-maxbackup`) and age (`--audit-log-maxage`, days), as upstream's
//! lumberjack-backed log backend (`-` writes to stdout).
//!
//! Stages: RequestReceived when the request arrives, ResponseStarted for long-running
//! requests (watch, exec, proxy) when their response begins, ResponseComplete when a
//! response is done. Request bodies (level Request and up) and response bodies
//! (RequestResponse, for non-streaming replies) are logged as JSON objects when they
//! are JSON.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::authz::Attributes;

/// How much of a request is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing.
    None,
    /// Who, what, when, the outcome.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, the request and the response bodies.
    RequestResponse,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "None" => Some(Level::None),
            "Metadata" => Some(Level::Metadata),
            "Request" => Some(Level::Request),
            "RequestResponse" => Some(Level::RequestResponse),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// The stages of a request an event may be emitted at.
pub const STAGES: &[&str] = &[
    "RequestReceived",
    "ResponseStarted",
    "ResponseComplete",
    "Panic",
];

/// Errors loading the policy or opening the log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The policy file.
    #[error("loading audit policy file: {0}")]
    Policy(String),
    /// The log file.
    #[error("opening audit log {path:?}: {source}")]
    Log {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

#[derive(Clone, Debug)]
struct Rule {
    level: Level,
    users: Vec<String>,
    user_groups: Vec<String>,
    verbs: Vec<String>,
    resources: Vec<(String, Vec<String>, Vec<String>)>,
    namespaces: Vec<String>,
    non_resource_urls: Vec<String>,
    omit_stages: Option<Vec<String>>,
}

/// An audit Policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: Vec<String>,
}

fn matches_any(list: &[String], want: &str) -> bool {
    list.is_empty() || list.iter().any(|x| x == want)
}

impl Policy {
    /// Parses a policy, with upstream's validation of levels and stages.
    pub fn parse(text: &str) -> Result<Policy, AuditError> {
        let v: Value =
            serde_saphyr::from_str(text).map_err(|e| AuditError::Policy(e.to_string()))?;
        if v.get("kind").and_then(Value::as_str) != Some("Policy")
            || !matches!(
                v.get("apiVersion").and_then(Value::as_str),
                Some("audit.k8s.io/v1")
            )
        {
            return Err(AuditError::Policy(
                "the file must hold an audit.k8s.io/v1 Policy".into(),
            ));
        }
        let stages = |list: Vec<String>, path: &str| -> Result<Vec<String>, AuditError> {
            for s in &list {
                if !STAGES.contains(&s.as_str()) {
                    return Err(AuditError::Policy(format!(
                        "{path}: Unsupported value: {s:?}: supported values: \"RequestReceived\", \"ResponseStarted\", \"ResponseComplete\", \"Panic\""
                    )));
                }
            }
            Ok(list)
        };
        let omit_stages = stages(crate::meta::strings(&v, "omitStages"), "omitStages")?;
        let mut rules = Vec::new();
        let list = v
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if list.is_empty() {
            return Err(AuditError::Policy(
                "rules: Required value: the policy has no rules".into(),
            ));
        }
        for (i, r) in list.iter().enumerate() {
            let level_s = r.get("level").and_then(Value::as_str).unwrap_or("");
            let level = Level::parse(level_s).ok_or_else(|| {
                AuditError::Policy(format!(
                    "rules[{i}].level: Unsupported value: {level_s:?}: supported values: \"None\", \"Metadata\", \"Request\", \"RequestResponse\""
                ))
            })?;
            let resources = r
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|g| {
                    (
                        g.get("group")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        crate::meta::strings(g, "resources"),
                        crate::meta::strings(g, "resourceNames"),
                    )
                })
                .collect::<Vec<_>>();
            let non_resource_urls = crate::meta::strings(r, "nonResourceURLs");
            if !resources.is_empty() && !non_resource_urls.is_empty() {
                return Err(AuditError::Policy(format!(
                    "rules[{i}].nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs"
                )));
            }
            rules.push(Rule {
                level,
                users: crate::meta::strings(r, "users"),
                user_groups: crate::meta::strings(r, "userGroups"),
                verbs: crate::meta::strings(r, "verbs"),
                resources,
                namespaces: crate::meta::strings(r, "namespaces"),
                non_resource_urls,
                omit_stages: r
                    .get("omitStages")
                    .map(|_| {
                        stages(
                            crate::meta::strings(r, "omitStages"),
                            &format!("rules[{i}].omitStages"),
                        )
                    })
                    .transpose()?,
            });
        }
        Ok(Policy { rules, omit_stages })
    }

    /// The level and omitted stages for a request: the first matching rule's, else None.
    pub fn evaluate(&self, user: &UserInfo, a: &Attributes) -> (Level, Vec<String>) {
        for r in &self.rules {
            if !matches_any(&r.users, &user.name) {
                continue;
            }
            if !r.user_groups.is_empty() && !r.user_groups.iter().any(|g| user.in_group(g)) {
                continue;
            }
            if !matches_any(&r.verbs, &a.verb) {
                continue;
            }
            let ok = if a.resource_request {
                r.non_resource_urls.is_empty()
                    && (r.namespaces.is_empty() || r.namespaces.contains(&a.namespace))
                    && (r.resources.is_empty()
                        || r.resources.iter().any(|(g, res, names)| {
                            let combined = if a.subresource.is_empty() {
                                a.resource.clone()
                            } else {
                                format!("{}/{}", a.resource, a.subresource)
                            };
                            *g == a.group
                                && (res.is_empty()
                                    || res.iter().any(|x| {
                                        *x == "*"
                                            || *x == combined
                                            || *x == a.resource && a.subresource.is_empty()
                                            || x.strip_prefix("*/")
                                                .is_some_and(|s| s == a.subresource)
                                            || x.strip_suffix("/*").is_some_and(|p| p == a.resource)
                                    }))
                                && (names.is_empty() || names.contains(&a.name))
                        }))
            } else {
                r.resources.is_empty()
                    && r.namespaces.is_empty()
                    && (r.non_resource_urls.is_empty()
                        || r.non_resource_urls.iter().any(|u| {
                            u == "*"
                                || *u == a.path
                                || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
                        }))
            };
            if ok {
                let mut omit = self.omit_stages.clone();
                omit.extend(r.omit_stages.clone().unwrap_or_default());
                return (r.level, omit);
            }
        }
        (Level::None, Vec::new())
    }
}

/// The log file, rotated by size, count and age.
pub struct LogWriter {
    path: Option<PathBuf>,
    file: Option<std::fs::File>,
    size: u64,
    max_size: u64,
    max_backups: usize,
    max_age_days: u64,
}

impl LogWriter {
    /// Opens `path` (`-` for stdout) for appending.
    pub fn open(
        path: &Path,
        max_size_mb: u64,
        max_backups: usize,
        max_age_days: u64,
    ) -> Result<LogWriter, AuditError> {
        if path == Path::new("-") {
            return Ok(LogWriter {
                path: None,
                file: None,
                size: 0,
                max_size: 0,
                max_backups,
                max_age_days,
            });
        }
        let err = |source| AuditError::Log {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: Some(path.to_owned()),
            file: Some(file),
            size,
            max_size: max_size_mb * 1024 * 1024,
            max_backups,
            max_age_days,
        })
    }

    /// Appends one line, rotating first if it would not fit.
    pub fn write_line(&mut self, line: &[u8]) {
        let Some(path) = self.path.clone() else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line);
            let _ = out.write_all(b"\n");
            return;
        };
        if self.max_size > 0 && self.size + line.len() as u64 + 1 > self.max_size && self.size > 0 {
            self.rotate(&path);
        }
        if let Some(f) = &mut self.file
            && f.write_all(line).and_then(|()| f.write_all(b"\n")).is_ok()
        {
            self.size += line.len() as u64 + 1;
        }
    }

    /// Moves the file aside as `<name>-<timestamp>.<ext>` (lumberjack's naming) and
    /// removes backups beyond the count and age limits.
    fn rotate(&mut self, path: &Path) {
        let stamp = crate::meta::rfc3339_micro(SystemTime::now())
            .replace([':', '.'], "-")
            .trim_end_matches('Z')
            .to_owned();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
        let ext = path
            .extension()
            .and_then(|s| s.to_str())
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        let backup = dir.join(format!("{stem}-{stamp}{ext}"));
        self.file = None;
        let _ = std::fs::rename(path, &backup);
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        self.size = 0;
        let prefix = format!("{stem}-");
        let mut backups: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(&prefix) && n.ends_with(&ext) && e.path() != path
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        backups.sort_by_key(|b| std::cmp::Reverse(b.0));
        for (i, (t, p)) in backups.iter().enumerate() {
            let too_many = self.max_backups > 0 && i >= self.max_backups;
            let too_old = self.max_age_days > 0
                && t.elapsed()
                    .is_ok_and(|age| age.as_secs() > self.max_age_days * 86400);
            if too_many || too_old {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// The configured auditing: a policy and where events go.
pub struct Auditor {
    /// The policy.
    pub policy: Policy,
    writer: Mutex<LogWriter>,
}

/// What an event says about a request, filled in as the request proceeds.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// The audit ID (also sent as the `Audit-ID` response header).
    pub id: String,
    /// The level.
    pub level: Option<Level>,
    /// Stages not to emit.
    pub omit: Vec<String>,
    /// The request URI.
    pub uri: String,
    /// Attributes of the request.
    pub attrs: Attributes,
    /// Who asked (after impersonation, the impersonator).
    pub user: UserInfo,
    /// Who was impersonated.
    pub impersonated: Option<UserInfo>,
    /// Client addresses.
    pub source_ips: Vec<String>,
    /// User-Agent.
    pub user_agent: String,
    /// When it arrived.
    pub received: String,
    /// The request body, if JSON and the level asks for it.
    pub request_object: Option<Value>,
    /// Annotations (authorization decision and reason).
    pub annotations: serde_json::Map<String, Value>,
}

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

impl Auditor {
    /// From `--audit-policy-file` and the `--audit-log-*` flags.
    pub fn new(policy: Policy, writer: LogWriter) -> Auditor {
        Auditor {
            policy,
            writer: Mutex::new(writer),
        }
    }

    /// Emits `stage` for `r`, with the response `code` and body when known.
    pub fn emit(&self, r: &Record, stage: &str, code: Option<u16>, response: Option<&Value>) {
        let Some(level) = r.level.filter(|l| *l != Level::None) else {
            return;
        };
        if r.omit.iter().any(|s| s == stage) {
            return;
        }
        let a = &r.attrs;
        let mut ev = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": level.as_str(),
            "auditID": r.id,
            "stage": stage,
            "requestURI": r.uri,
            "verb": a.verb,
            "user": user_json(&r.user),
            "sourceIPs": r.source_ips,
            "userAgent": r.user_agent,
            "requestReceivedTimestamp": r.received,
            "stageTimestamp": crate::meta::rfc3339_micro(SystemTime::now()),
        });
        if let Some(i) = &r.impersonated {
            ev["impersonatedUser"] = user_json(i);
        }
        if a.resource_request {
            let mut o = json!({"resource": a.resource, "apiVersion": a.version});
            for (k, v) in [
                ("namespace", &a.namespace),
                ("name", &a.name),
                ("apiGroup", &a.group),
                ("subresource", &a.subresource),
            ] {
                if !v.is_empty() {
                    o[k] = json!(v);
                }
            }
            ev["objectRef"] = o;
        }
        if let Some(c) = code {
            let mut s = json!({"metadata": {}, "code": c});
            if let Some(resp) = response.filter(|r| r.get("kind") == Some(&json!("Status"))) {
                for k in ["status", "message", "reason"] {
                    if let Some(v) = resp.get(k) {
                        s[k] = v.clone();
                    }
                }
            }
            ev["responseStatus"] = s;
        }
        if level >= Level::Request
            && let Some(o) = &r.request_object
        {
            ev["requestObject"] = o.clone();
        }
        if level >= Level::RequestResponse
            && stage == "ResponseComplete"
            && let Some(o) = response
        {
            ev["responseObject"] = o.clone();
        }
        if !r.annotations.is_empty() {
            ev["annotations"] = Value::Object(r.annotations.clone());
        }
        let line = serde_json::to_vec(&ev).unwrap_or_default();
        self.writer.lock().write_line(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [system:kube-proxy]
- level: Metadata
  resources: [{group: '', resources: [secrets]}]
- level: RequestResponse
  resources: [{group: apps, resources: [deployments, 'deployments/*']}]
  namespaces: [prod]
- level: None
  nonResourceURLs: ['/healthz*', /version]
- level: Request
";

    #[test]
    fn the_first_matching_rule_decides() {
        let p = Policy::parse(POLICY).unwrap();
        let bob = UserInfo::new("bob", &["system:authenticated"]);
        let lvl = |u: &UserInfo, a: Attributes| p.evaluate(u, &a).0;
        assert_eq!(
            lvl(&bob, Attributes::resource("get", "", "secrets", "x", "s")),
            Level::Metadata
        );
        assert_eq!(
            lvl(
                &UserInfo::new("system:kube-proxy", &[]),
                Attributes::resource("get", "", "secrets", "x", "s")
            ),
            Level::None
        );
        assert_eq!(
            lvl(
                &bob,
                Attributes::resource("create", "apps", "deployments", "prod", "")
            ),
            Level::RequestResponse
        );
        let mut scale = Attributes::resource("update", "apps", "deployments", "prod", "d");
        scale.subresource = "scale".into();
        assert_eq!(lvl(&bob, scale), Level::RequestResponse);
        assert_eq!(
            lvl(
                &bob,
                Attributes::resource("create", "apps", "deployments", "dev", "")
            ),
            Level::Request
        );
        let path = |p: &str| Attributes {
            verb: "get".into(),
            path: p.into(),
            ..Default::default()
        };
        assert_eq!(lvl(&bob, path("/healthz/ready")), Level::None);
        assert_eq!(lvl(&bob, path("/api")), Level::Request);
        assert_eq!(p.evaluate(&bob, &path("/api")).1, ["RequestReceived"]);
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(
            Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n")
                .unwrap_err()
                .to_string()
                .contains("rules[0].level: Unsupported value: \"Loud\"")
        );
        assert!(Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Never]\nrules:\n- level: None\n").is_err());
        assert!(Policy::parse("kind: Nope\n").is_err());
    }

    #[test]
    fn logs_rotate_by_size_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut w = LogWriter::open(&path, 1, 2, 0).unwrap();
        let line = vec![b'x'; 400 * 1024];
        for _ in 0..10 {
            w.write_line(&line);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        // The live file plus at most two backups.
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(std::fs::metadata(&path).unwrap().len() <= 1024 * 1024);
    }
}
