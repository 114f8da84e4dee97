//! KubeSchedulerConfiguration (`kubescheduler.config.k8s.io/v1`): decoding with
//! upstream's errors, defaults, validation in upstream's words, and each profile's
//! plugins expanded to extension points (multiPoint, per-point enables and
//! disables, weights) as upstream's `framework/runtime`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::framework::Plugin;
use crate::framework::runtime::Points;
use crate::plugins::{self, Handle};

/// The config group's version.
pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";
/// The scheme name upstream's decoder prints.
const SCHEME: &str = "pkg/scheduler/apis/config/scheme/scheme.go:29";

/// Configuration failures, in upstream's words.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("open {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Not a KubeSchedulerConfiguration of a known version, or malformed.
    #[error("{0}")]
    Decode(String),
    /// Validation failed.
    #[error("{0}")]
    Invalid(String),
    /// A profile could not be built.
    #[error("initializing profiles: creating profile for scheduler name {profile}: {message}")]
    Profile {
        /// The profile.
        profile: String,
        /// Why.
        message: String,
    },
}

/// A plugin named in a set, with its score weight.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginRef {
    /// The plugin's name (`*` in `disabled`: all).
    pub name: String,
    /// Its Score weight (0 or unset: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// Enabled and disabled plugins at one extension point.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSet {
    /// Enabled, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled: Vec<PluginRef>,
    /// Disabled (`*`: every default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<PluginRef>,
}

/// A profile's plugins per extension point.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Plugins {
    #[serde(default)]
    pub pre_enqueue: PluginSet,
    #[serde(default)]
    pub queue_sort: PluginSet,
    #[serde(default)]
    pub pre_filter: PluginSet,
    #[serde(default)]
    pub filter: PluginSet,
    #[serde(default)]
    pub post_filter: PluginSet,
    #[serde(default)]
    pub pre_score: PluginSet,
    #[serde(default)]
    pub score: PluginSet,
    #[serde(default)]
    pub reserve: PluginSet,
    #[serde(default)]
    pub permit: PluginSet,
    #[serde(default)]
    pub pre_bind: PluginSet,
    #[serde(default)]
    pub bind: PluginSet,
    #[serde(default)]
    pub post_bind: PluginSet,
    #[serde(default)]
    pub multi_point: PluginSet,
}

/// Args for one plugin.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    /// The plugin.
    pub name: String,
    /// Its args (a `<Name>Args` object).
    #[serde(default)]
    pub args: Value,
}

/// One scheduling profile.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// The `spec.schedulerName` it serves.
    #[serde(default)]
    pub scheduler_name: String,
    /// Overrides the global percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Its plugins (merged onto the defaults).
    #[serde(default)]
    pub plugins: Option<Plugins>,
    /// Plugin args.
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

/// `leaderElection`, each field defaulted.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LeaderElectionRaw {
    pub leader_elect: Option<bool>,
    pub lease_duration: Option<String>,
    pub renew_deadline: Option<String>,
    pub retry_period: Option<String>,
    pub resource_lock: Option<String>,
    pub resource_name: Option<String>,
    pub resource_namespace: Option<String>,
}

/// `clientConnection`.
#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnection {
    /// The kubeconfig file.
    #[serde(default)]
    pub kubeconfig: String,
    /// Accept header.
    #[serde(default)]
    pub accept_content_types: String,
    /// Request content type.
    #[serde(default = "protobuf")]
    pub content_type: String,
    /// Requests per second.
    #[serde(default = "qps")]
    pub qps: f32,
    /// Burst.
    #[serde(default = "burst")]
    pub burst: i32,
}

fn protobuf() -> String {
    "application/vnd.kubernetes.protobuf".into()
}
fn qps() -> f32 {
    50.0
}
fn burst() -> i32 {
    100
}

impl Default for ClientConnection {
    fn default() -> Self {
        ClientConnection {
            kubeconfig: String::new(),
            accept_content_types: String::new(),
            content_type: protobuf(),
            qps: qps(),
            burst: burst(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    parallelism: Option<i32>,
    leader_election: Option<LeaderElectionRaw>,
    client_connection: Option<ClientConnection>,
    percentage_of_nodes_to_score: Option<i32>,
    pod_initial_backoff_seconds: Option<i64>,
    pod_max_backoff_seconds: Option<i64>,
    profiles: Option<Vec<Profile>>,
    #[serde(default)]
    extenders: Vec<Value>,
    enable_profiling: Option<bool>,
    enable_contention_profiling: Option<bool>,
    delay_cache_until_active: Option<bool>,
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Configuration {
    /// `parallelism`.
    pub parallelism: i32,
    /// `leaderElection`.
    pub leader_election: client_base::leaderelection::Config,
    /// `clientConnection`.
    pub client_connection: ClientConnection,
    /// `percentageOfNodesToScore` (0: adaptive).
    pub percentage_of_nodes_to_score: i32,
    /// `podInitialBackoffSeconds`.
    pub pod_initial_backoff: Duration,
    /// `podMaxBackoffSeconds`.
    pub pod_max_backoff: Duration,
    /// `profiles`, with the defaults merged in.
    pub profiles: Vec<Profile>,
}

/// Upstream's default multiPoint plugins, with weights.
pub const DEFAULT_PLUGINS: &[(&str, i32)] = &[
    ("SchedulingGates", 0),
    ("PrioritySort", 0),
    ("NodeUnschedulable", 0),
    ("NodeName", 0),
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("NodePorts", 0),
    ("NodeResourcesFit", 1),
    ("VolumeRestrictions", 0),
    ("NodeVolumeLimits", 0),
    ("VolumeBinding", 0),
    ("VolumeZone", 0),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("DefaultPreemption", 0),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
    ("DefaultBinder", 0),
];

fn default_plugins() -> Plugins {
    Plugins {
        multi_point: PluginSet {
            enabled: DEFAULT_PLUGINS
                .iter()
                .map(|(n, w)| PluginRef {
                    name: (*n).to_owned(),
                    weight: (*w != 0).then_some(*w),
                })
                .collect(),
            disabled: Vec::new(),
        },
        ..Default::default()
    }
}

/// upstream's `mergePluginSet`: custom disables (or `*`) remove defaults, a custom
/// enable of a default replaces it in place, other enables are appended.
fn merge_set(default: &PluginSet, custom: &PluginSet) -> PluginSet {
    let all = custom.disabled.iter().any(|d| d.name == "*");
    let mut enabled: Vec<PluginRef> = Vec::new();
    let mut replaced = std::collections::HashSet::new();
    for d in &default.enabled {
        if all || custom.disabled.iter().any(|x| x.name == d.name) {
            continue;
        }
        match custom.enabled.iter().find(|c| c.name == d.name) {
            Some(c) => {
                replaced.insert(c.name.clone());
                enabled.push(c.clone());
            }
            None => enabled.push(d.clone()),
        }
    }
    enabled.extend(
        custom
            .enabled
            .iter()
            .filter(|c| !replaced.contains(&c.name))
            .cloned(),
    );
    PluginSet {
        enabled,
        disabled: custom.disabled.clone(),
    }
}

fn merge_plugins(custom: &Plugins) -> Plugins {
    let d = default_plugins();
    Plugins {
        pre_enqueue: merge_set(&d.pre_enqueue, &custom.pre_enqueue),
        queue_sort: merge_set(&d.queue_sort, &custom.queue_sort),
        pre_filter: merge_set(&d.pre_filter, &custom.pre_filter),
        filter: merge_set(&d.filter, &custom.filter),
        post_filter: merge_set(&d.post_filter, &custom.post_filter),
        pre_score: merge_set(&d.pre_score, &custom.pre_score),
        score: merge_set(&d.score, &custom.score),
        reserve: merge_set(&d.reserve, &custom.reserve),
        permit: merge_set(&d.permit, &custom.permit),
        pre_bind: merge_set(&d.pre_bind, &custom.pre_bind),
        bind: merge_set(&d.bind, &custom.bind),
        post_bind: merge_set(&d.post_bind, &custom.post_bind),
        multi_point: merge_set(&d.multi_point, &custom.multi_point),
    }
}

fn decode_error(raw: &str, v: &Value) -> Option<Error> {
    let compact = serde_json::to_string(v).unwrap_or_else(|_| raw.to_owned());
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
    let version = v
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() {
        return Some(Error::Decode(format!(
            "Object 'Kind' is missing in '{compact}'"
        )));
    }
    if version.is_empty() {
        return Some(Error::Decode(format!(
            "Object 'apiVersion' is missing in '{compact}'"
        )));
    }
    if kind != "KubeSchedulerConfiguration" || version != API_VERSION {
        return Some(Error::Decode(format!(
            "no kind {kind:?} is registered for version {version:?} in scheme {SCHEME:?}"
        )));
    }
    None
}

fn strict(e: &serde_json::Error) -> String {
    let m = e.to_string();
    match m
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
    {
        Some((field, _)) => format!("strict decoding error: unknown field {field:?}"),
        None => m,
    }
}

impl Configuration {
    /// Upstream's defaults (no `--config`).
    pub fn defaults() -> Self {
        Self::decode(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n",
        )
        .expect("the defaults decode")
    }

    /// Reads and decodes `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: path.display().to_string(),
            message: match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".into(),
                _ => e.to_string(),
            },
        })?;
        Self::decode(&text)
    }

    /// Decodes a YAML or JSON configuration and applies the defaults.
    pub fn decode(text: &str) -> Result<Self, Error> {
        let v: Value = serde_saphyr::from_str(text).map_err(|e| Error::Decode(e.to_string()))?;
        if let Some(e) = decode_error(text, &v) {
            return Err(e);
        }
        let raw: Raw = serde_json::from_value(v).map_err(|e| Error::Decode(strict(&e)))?;
        let _ = (
            raw.enable_profiling,
            raw.enable_contention_profiling,
            raw.delay_cache_until_active,
        );
        let mut le = client_base::leaderelection::Config::defaults("kube-scheduler");
        let mut durations = Vec::new();
        if let Some(l) = raw.leader_election {
            if let Some(v) = l.leader_elect {
                le.leader_elect = v;
            }
            for (field, value, slot) in [
                ("leaseDuration", l.lease_duration, &mut le.lease_duration),
                ("renewDeadline", l.renew_deadline, &mut le.renew_deadline),
                ("retryPeriod", l.retry_period, &mut le.retry_period),
            ] {
                if let Some(s) = value {
                    match component_base::duration::parse_duration(&s) {
                        Ok(d) => *slot = d,
                        Err(e) => durations.push(format!("leaderElection.{field}: {e}")),
                    }
                }
            }
            if let Some(v) = l.resource_lock {
                le.resource_lock = v;
            }
            if let Some(v) = l.resource_name {
                le.resource_name = v;
            }
            if let Some(v) = l.resource_namespace {
                le.resource_namespace = v;
            }
        }
        if let Some(e) = durations.into_iter().next() {
            return Err(Error::Decode(e));
        }
        if !raw.extenders.is_empty() {
            return Err(Error::Decode(
                "extenders are not supported by Keelson's kube-scheduler".into(),
            ));
        }
        let mut profiles = raw.profiles.unwrap_or_default();
        if profiles.is_empty() {
            profiles.push(Profile::default());
        }
        if profiles.len() == 1 && profiles[0].scheduler_name.is_empty() {
            profiles[0].scheduler_name = "default-scheduler".into();
        }
        for p in &mut profiles {
            p.plugins = Some(merge_plugins(&p.plugins.clone().unwrap_or_default()));
        }
        Ok(Configuration {
            parallelism: raw.parallelism.unwrap_or(16),
            leader_election: le,
            client_connection: raw.client_connection.unwrap_or_default(),
            percentage_of_nodes_to_score: raw.percentage_of_nodes_to_score.unwrap_or(0),
            pod_initial_backoff: Duration::from_secs(
                raw.pod_initial_backoff_seconds.unwrap_or(1).max(0) as u64,
            ),
            pod_max_backoff: Duration::from_secs(
                raw.pod_max_backoff_seconds.unwrap_or(10).max(0) as u64
            ),
            profiles,
        })
    }

    /// Upstream's `ValidateKubeSchedulerConfiguration`: every error, aggregated as
    /// `[e1, e2]` (or the one error alone).
    pub fn validate(&self) -> Result<(), Error> {
        let mut errs: Vec<String> = Vec::new();
        if self.parallelism <= 0 {
            errs.push(format!(
                "parallelism: Invalid value: {}: should be an integer value greater than zero",
                self.parallelism
            ));
        }
        if !(0..=100).contains(&self.percentage_of_nodes_to_score) {
            errs.push(format!(
                "percentageOfNodesToScore: Invalid value: {}: not in valid range [0-100]",
                self.percentage_of_nodes_to_score
            ));
        }
        let initial = self.pod_initial_backoff.as_secs();
        if initial == 0 {
            errs.push("podInitialBackoffSeconds: Invalid value: 0: must be greater than 0".into());
        }
        if self.pod_max_backoff.as_secs() < initial {
            errs.push(format!(
                "podMaxBackoffSeconds: Invalid value: {}: must be greater than or equal to PodInitialBackoffSeconds",
                self.pod_max_backoff.as_secs()
            ));
        }
        if self.client_connection.burst < 0 {
            errs.push(format!(
                "clientConnection.burst: Invalid value: {}: must be non-negative",
                self.client_connection.burst
            ));
        }
        let le = &self.leader_election;
        if le.leader_elect && le.resource_lock != "leases" {
            errs.push(format!(
                "leaderElection.resourceLock: Invalid value: {:?}: resourceLock value must be \"leases\"",
                le.resource_lock
            ));
        }
        if le.leader_elect && le.lease_duration <= le.renew_deadline {
            errs.push(format!(
                "leaderElection.leaseDuration: Invalid value: {:?}: LeaseDuration must be greater than RenewDeadline",
                format_go(le.lease_duration)
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, p) in self.profiles.iter().enumerate() {
            if p.scheduler_name.is_empty() {
                errs.push(format!("profiles[{i}].schedulerName: Required value"));
            } else if names.contains(&p.scheduler_name.as_str()) {
                errs.push(format!(
                    "profiles[{i}].schedulerName: Duplicate value: {:?}",
                    p.scheduler_name
                ));
            }
            names.push(&p.scheduler_name);
            if let Some(pct) = p.percentage_of_nodes_to_score
                && !(0..=100).contains(&pct)
            {
                errs.push(format!(
                    "profiles[{i}].percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]"
                ));
            }
            let mut seen: Vec<&str> = Vec::new();
            for (j, c) in p.plugin_config.iter().enumerate() {
                if seen.contains(&c.name.as_str()) {
                    errs.push(format!(
                        "profiles[{i}].pluginConfig[{j}]: Duplicate value: {:?}",
                        c.name
                    ));
                }
                seen.push(&c.name);
            }
        }
        match errs.len() {
            0 => Ok(()),
            1 => Err(Error::Invalid(errs.remove(0))),
            _ => Err(Error::Invalid(format!("[{}]", errs.join(", ")))),
        }
    }
}

/// A duration as Go prints it (`15s`, `1m0s`).
fn format_go(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The extension points, in upstream's `getExtensionPoints` order, with the
/// interface names of its errors and whether a plugin serves each.
type Serves = fn(&dyn Plugin) -> bool;
const POINTS: &[(&str, Serves)] = &[
    ("PreFilterPlugin", |p| p.as_pre_filter().is_some()),
    ("FilterPlugin", |p| p.as_filter().is_some()),
    ("PostFilterPlugin", |p| p.as_post_filter().is_some()),
    ("ReservePlugin", |p| p.as_reserve().is_some()),
    ("PreScorePlugin", |p| p.as_pre_score().is_some()),
    ("ScorePlugin", |p| p.as_score().is_some()),
    ("PreBindPlugin", |p| p.as_pre_bind().is_some()),
    ("BindPlugin", |p| p.as_bind().is_some()),
    ("PostBindPlugin", |p| p.as_post_bind().is_some()),
    ("PermitPlugin", |p| p.as_permit().is_some()),
    ("PreEnqueuePlugin", |p| p.as_pre_enqueue().is_some()),
    ("QueueSortPlugin", |p| p.as_queue_sort().is_some()),
];

fn set_for<'a>(p: &'a Plugins, point: &str) -> &'a PluginSet {
    match point {
        "PreFilterPlugin" => &p.pre_filter,
        "FilterPlugin" => &p.filter,
        "PostFilterPlugin" => &p.post_filter,
        "ReservePlugin" => &p.reserve,
        "PreScorePlugin" => &p.pre_score,
        "ScorePlugin" => &p.score,
        "PreBindPlugin" => &p.pre_bind,
        "BindPlugin" => &p.bind,
        "PostBindPlugin" => &p.post_bind,
        "PermitPlugin" => &p.permit,
        "PreEnqueuePlugin" => &p.pre_enqueue,
        _ => &p.queue_sort,
    }
}

/// A profile's plugins, built, and where each is called.
pub struct Built {
    /// Plugins by name.
    pub plugins: HashMap<String, Arc<dyn Plugin>>,
    /// Extension points.
    pub points: Points,
}

/// Builds `profile`'s plugins and expands them to extension points, as upstream's
/// `NewFramework`. Plugins upstream has and Keelson lacks are skipped (logged).
pub fn build_profile(profile: &Profile, handle: &Handle) -> Result<Built, Error> {
    let err = |message: String| Error::Profile {
        profile: profile.scheduler_name.clone(),
        message,
    };
    let ps = profile.plugins.clone().unwrap_or_default();
    // Every plugin named as enabled anywhere, built once with its args.
    let mut plugins: HashMap<String, Arc<dyn Plugin>> = HashMap::new();
    let mut named: Vec<(&str, &str)> = Vec::new();
    for (point, _) in POINTS {
        for r in &set_for(&ps, point).enabled {
            named.push((point, &r.name));
        }
    }
    for r in &ps.multi_point.enabled {
        named.push(("PreFilterPlugin", &r.name));
    }
    let mut seen_config = std::collections::HashSet::new();
    for c in &profile.plugin_config {
        if !seen_config.insert(c.name.clone()) {
            return Err(err(format!("repeated config for plugin {}", c.name)));
        }
    }
    for (point, name) in named {
        if plugins.contains_key(name) {
            continue;
        }
        let Some(factory) = plugins::factory(name) else {
            if plugins::NOT_YET.contains(&name) {
                continue;
            }
            return Err(err(format!("{point} {name:?} does not exist")));
        };
        let mut args = profile
            .plugin_config
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.args.clone())
            .unwrap_or(Value::Null);
        if let Some(o) = args.as_object_mut() {
            o.remove("apiVersion");
            o.remove("kind");
        }
        let p = factory(&args, handle)
            .map_err(|e| err(format!("initializing plugin {name:?}: {e}")))?;
        plugins.insert(name.to_owned(), p);
    }
    let mut points = Points::default();
    for (point, serves) in POINTS {
        let set = set_for(&ps, point);
        let mut list: Vec<(String, i64)> = Vec::new();
        for r in &set.enabled {
            let Some(p) = plugins.get(&r.name) else {
                continue;
            };
            if !serves(p.as_ref()) {
                return Err(err(format!(
                    "plugin {:?} does not extend {point} plugin",
                    r.name
                )));
            }
            list.push((
                r.name.clone(),
                i64::from(r.weight.filter(|w| *w != 0).unwrap_or(1)),
            ));
        }
        let skip_multi = set.disabled.iter().any(|d| d.name == "*");
        if !skip_multi {
            for r in &ps.multi_point.enabled {
                let Some(p) = plugins.get(&r.name) else {
                    continue;
                };
                if !serves(p.as_ref())
                    || set.disabled.iter().any(|d| d.name == r.name)
                    || list.iter().any(|(n, _)| *n == r.name)
                {
                    continue;
                }
                list.push((
                    r.name.clone(),
                    i64::from(r.weight.filter(|w| *w != 0).unwrap_or(1)),
                ));
            }
        }
        let names = || list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        match *point {
            "PreFilterPlugin" => points.pre_filter = names(),
            "FilterPlugin" => points.filter = names(),
            "PostFilterPlugin" => points.post_filter = names(),
            "ReservePlugin" => points.reserve = names(),
            "PreScorePlugin" => points.pre_score = names(),
            "ScorePlugin" => points.score = list.clone(),
            "PreBindPlugin" => points.pre_bind = names(),
            "BindPlugin" => points.bind = names(),
            "PostBindPlugin" => points.post_bind = names(),
            "PermitPlugin" => points.permit = names(),
            "PreEnqueuePlugin" => points.pre_enqueue = names(),
            _ => points.queue_sort = names(),
        }
    }
    if points.queue_sort.len() != 1 {
        return Err(err(format!(
            "only one queue sort plugin required for profile with scheduler name {:?}, but got {}",
            profile.scheduler_name,
            points.queue_sort.len()
        )));
    }
    if points.bind.is_empty() {
        return Err(err(format!(
            "at least one bind plugin is needed for profile with scheduler name {:?}",
            profile.scheduler_name
        )));
    }
    Ok(Built { plugins, points })
}

fn plugin_set_json(s: &PluginSet) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

/// The effective configuration as a versioned document (`--write-config-to`).
pub fn to_yaml(c: &Configuration) -> String {
    let le = &c.leader_election;
    let profiles: Vec<Value> = c
        .profiles
        .iter()
        .map(|p| {
            let mut v = serde_json::json!({
                "schedulerName": p.scheduler_name,
                "pluginConfig": p.plugin_config,
            });
            if let Some(ps) = &p.plugins {
                v["plugins"] = serde_json::json!({"multiPoint": plugin_set_json(&ps.multi_point)});
            }
            if let Some(pct) = p.percentage_of_nodes_to_score {
                v["percentageOfNodesToScore"] = pct.into();
            }
            v
        })
        .collect();
    let doc = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "KubeSchedulerConfiguration",
        "parallelism": c.parallelism,
        "leaderElection": {
            "leaderElect": le.leader_elect,
            "leaseDuration": format_go(le.lease_duration),
            "renewDeadline": format_go(le.renew_deadline),
            "retryPeriod": format_go(le.retry_period),
            "resourceLock": le.resource_lock,
            "resourceName": le.resource_name,
            "resourceNamespace": le.resource_namespace,
        },
        "clientConnection": c.client_connection,
        "percentageOfNodesToScore": c.percentage_of_nodes_to_score,
        "podInitialBackoffSeconds": c.pod_initial_backoff.as_secs(),
        "podMaxBackoffSeconds": c.pod_max_backoff.as_secs(),
        "profiles": profiles,
    });
    serde_saphyr::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn handle() -> Handle {
        let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
                "offline",
            ))
        });
        let client = kube::Client::new(svc, "default");
        Handle {
            client: client.clone(),
            factory: std::sync::Arc::new(client_base::informer::SharedInformerFactory::new(
                client.clone(),
            )),
            recorder: client_base::events::Recorder::new(client, "default-scheduler", None),
            metrics: crate::metrics::Metrics::unregistered(),
            waiting: Default::default(),
        }
    }

    #[tokio::test]
    async fn defaults_are_upstreams() {
        let c = Configuration::defaults();
        assert_eq!(c.parallelism, 16);
        assert_eq!(c.client_connection.qps, 50.0);
        assert_eq!(c.client_connection.burst, 100);
        assert_eq!(c.leader_election.resource_name, "kube-scheduler");
        assert_eq!(c.pod_initial_backoff, Duration::from_secs(1));
        assert_eq!(c.pod_max_backoff, Duration::from_secs(10));
        assert_eq!(c.profiles.len(), 1);
        assert_eq!(c.profiles[0].scheduler_name, "default-scheduler");
        c.validate().unwrap();
        let b = build_profile(&c.profiles[0], &handle()).unwrap();
        assert_eq!(b.points.queue_sort, ["PrioritySort"]);
        assert_eq!(
            b.points.filter,
            [
                "NodeUnschedulable",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "VolumeRestrictions",
                "NodeVolumeLimits",
                "VolumeBinding",
                "VolumeZone",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
        assert_eq!(
            b.points.score,
            [
                ("TaintToleration".to_owned(), 3),
                ("NodeAffinity".to_owned(), 2),
                ("NodeResourcesFit".to_owned(), 1),
                ("VolumeBinding".to_owned(), 1),
                ("PodTopologySpread".to_owned(), 2),
                ("InterPodAffinity".to_owned(), 2),
                ("NodeResourcesBalancedAllocation".to_owned(), 1),
                ("ImageLocality".to_owned(), 1)
            ]
        );
        assert_eq!(b.points.reserve, ["VolumeBinding"]);
        assert_eq!(b.points.pre_bind, ["VolumeBinding"]);
        assert_eq!(b.points.bind, ["DefaultBinder"]);
    }

    #[tokio::test]
    async fn bad_configs_fail_in_upstreams_words() {
        let e = Configuration::decode(
            "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "no kind \"KubeSchedulerConfiguration\" is registered for version \"kubescheduler.config.k8s.io/v1beta3\" in scheme \"pkg/scheduler/apis/config/scheme/scheme.go:29\""
        );
        let e = Configuration::decode("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nfoo: 1\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "strict decoding error: unknown field \"foo\""
        );
        let c = Configuration::decode(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\npercentageOfNodesToScore: 101\npodInitialBackoffSeconds: 0\n",
        )
        .unwrap();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "[percentageOfNodesToScore: Invalid value: 101: not in valid range [0-100], podInitialBackoffSeconds: Invalid value: 0: must be greater than 0]"
        );
        let c = Configuration::decode(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: a\n  plugins:\n    multiPoint:\n      enabled:\n      - name: Foo\n",
        )
        .unwrap();
        assert_eq!(
            build_profile(&c.profiles[0], &handle())
                .err()
                .unwrap()
                .to_string(),
            "initializing profiles: creating profile for scheduler name a: PreFilterPlugin \"Foo\" does not exist"
        );
        let c = Configuration::decode(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: a\n  plugins:\n    score:\n      enabled:\n      - name: NodeName\n",
        )
        .unwrap();
        assert_eq!(
            build_profile(&c.profiles[0], &handle())
                .err()
                .unwrap()
                .to_string(),
            "initializing profiles: creating profile for scheduler name a: plugin \"NodeName\" does not extend ScorePlugin plugin"
        );
    }

    #[tokio::test]
    async fn profiles_merge_onto_the_defaults() {
        let c = Configuration::decode(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  plugins:\n    score:\n      disabled:\n      - name: NodeResourcesBalancedAllocation\n      enabled:\n      - name: NodeResourcesFit\n        weight: 5\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: MostAllocated\n",
        )
        .unwrap();
        c.validate().unwrap();
        let b = build_profile(&c.profiles[1], &handle()).unwrap();
        assert_eq!(b.points.score[0], ("NodeResourcesFit".to_owned(), 5));
        assert!(
            !b.points
                .score
                .iter()
                .any(|(n, _)| n == "NodeResourcesBalancedAllocation")
        );
    }

    #[tokio::test]
    async fn written_config_reads_back() {
        let c = Configuration::decode(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nparallelism: 8\npodMaxBackoffSeconds: 20\n",
        )
        .unwrap();
        let text = to_yaml(&c);
        let back = Configuration::decode(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        assert_eq!(back.parallelism, 8);
        assert_eq!(back.pod_max_backoff, Duration::from_secs(20));
        assert_eq!(back.leader_election, c.leader_election);
        assert_eq!(back.profiles, c.profiles);
        build_profile(&back.profiles[0], &handle()).unwrap();
    }
}
