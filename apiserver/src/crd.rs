//! CustomResourceDefinitions: the resources they define, served like built-ins.
//!
//! ```text
//! CRD written (any apiserver) -> store -> CRD watch cache -> crd::run (this module)
//!     -> checks names (NamesAccepted), registers one catalog::Resource per served
//!        version (with CustomInfo: schema, printer columns, scale paths) and starts
//!        its watch cache -> Established; status written back to the CRD
//! CRD deleted -> its custom objects are deleted, the resources unregistered
//! custom object requests -> the generic handlers, with this module's structural
//!     schema: defaulting, pruning of unknown fields, validation; field management
//!     walks the same schema
//! ```
//!
//! The schema is the version's `openAPIV3Schema`, with `apiVersion`, `kind` and
//! `metadata` (upstream's ObjectMeta) added at the root. Conversion between versions
//! is `None`: objects are stored at the storage version and only their `apiVersion`
//! changes on the way in and out.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::api::Api;
use crate::catalog::{Resource, STANDARD, Subresource, catalog, intern};
use crate::error::FieldError;
use crate::meta;

/// The CRDs' own group.
const GROUP: &str = "apiextensions.k8s.io";

/// What a CRD says of one served version.
#[derive(Debug, PartialEq)]
pub struct CustomInfo {
    /// The CRD's name (`<plural>.<group>`).
    pub crd: String,
    /// The structural schema, with `apiVersion`, `kind` and `metadata` at the root.
    pub schema: Value,
    /// `additionalPrinterColumns`, or upstream's default (Age).
    pub columns: Vec<Column>,
    /// The scale subresource's paths.
    pub scale: Option<ScalePaths>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug, PartialEq)]
pub struct Column {
    /// Header.
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub ty: String,
    /// Format hint.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 is shown by default; higher only with `-o wide`.
    pub priority: i64,
    /// The JSONPath of the value, e.g. `.spec.replicas`.
    pub json_path: String,
}

/// `subresources.scale`.
#[derive(Debug, PartialEq)]
pub struct ScalePaths {
    /// `specReplicasPath`.
    pub spec_replicas: String,
    /// `statusReplicasPath`.
    pub status_replicas: String,
    /// `labelSelectorPath`.
    pub label_selector: Option<String>,
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Kubernetes version priority: GA above beta above alpha, higher numbers first,
/// anything else last in name order.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(v: &str) -> (u8, i64, i64, String) {
        let Some(rest) = v.strip_prefix('v') else {
            return (0, 0, 0, v.to_owned());
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(major) = digits.parse::<i64>() else {
            return (0, 0, 0, v.to_owned());
        };
        let tail = &rest[digits.len()..];
        let (level, tail) = if tail.is_empty() {
            return (3, major, 0, String::new());
        } else if let Some(t) = tail.strip_prefix("beta") {
            (2, t)
        } else if let Some(t) = tail.strip_prefix("alpha") {
            (1, t)
        } else {
            return (0, 0, 0, v.to_owned());
        };
        match tail.parse::<i64>() {
            Ok(minor) => (level, major, minor, String::new()),
            Err(_) => (0, 0, 0, v.to_owned()),
        }
    }
    let (ka, kb) = (key(a), key(b));
    kb.0.cmp(&ka.0)
        .then(kb.1.cmp(&ka.1))
        .then(kb.2.cmp(&ka.2))
        .then(ka.3.cmp(&kb.3))
}

/// The schema a custom object is checked and merged with: the version's
/// `openAPIV3Schema` plus the fields every object has.
fn full_schema(schema: &Value) -> Value {
    let mut root = schema.clone();
    if !root.is_object() {
        root = json!({"type": "object"});
    }
    let props = root
        .as_object_mut()
        .map(|m| m.entry("properties").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    if let Some(p) = props {
        p.insert("apiVersion".into(), json!({"type": "string"}));
        p.insert("kind".into(), json!({"type": "string"}));
        p.insert(
            "metadata".into(),
            json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}),
        );
    }
    root
}

/// [`full_schema`], for tests elsewhere in the crate.
#[cfg(test)]
pub fn full_schema_for_tests(schema: &Value) -> Value {
    full_schema(schema)
}

/// The resources a CRD serves, one per served version, newest first.
pub fn resources(crd: &Value) -> Vec<Resource> {
    let group = intern(s(crd, "/spec/group"));
    let plural = intern(s(crd, "/spec/names/plural"));
    let kind = intern(s(crd, "/spec/names/kind"));
    let singular = match s(crd, "/spec/names/singular") {
        "" => kind.to_lowercase(),
        x => x.to_owned(),
    };
    let list = |ptr: &str| -> &'static [&'static str] {
        let v: Vec<&'static str> = crd
            .pointer(ptr)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(intern).collect())
            .unwrap_or_default();
        Box::leak(v.into_boxed_slice())
    };
    let short_names = list("/spec/names/shortNames");
    let categories = list("/spec/names/categories");
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage") == Some(&Value::Bool(true)))
        .map(|v| intern(s(v, "/name")))
        .unwrap_or("");
    let mut out: Vec<Resource> = versions
        .iter()
        .filter(|v| v.get("served") == Some(&Value::Bool(true)))
        .map(|v| {
            let mut subresources = Vec::new();
            if v.pointer("/subresources/status").is_some() {
                subresources.push(Subresource {
                    name: "status",
                    group: "",
                    version: "",
                    kind: "",
                    verbs: &["get", "patch", "update"],
                });
            }
            let scale = v.pointer("/subresources/scale").map(|sc| ScalePaths {
                spec_replicas: s(sc, "/specReplicasPath").to_owned(),
                status_replicas: s(sc, "/statusReplicasPath").to_owned(),
                label_selector: sc
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
            if scale.is_some() {
                subresources.push(Subresource {
                    name: "scale",
                    group: "autoscaling",
                    version: "v1",
                    kind: "Scale",
                    verbs: &["get", "patch", "update"],
                });
            }
            let mut columns: Vec<Column> = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .map(|c| Column {
                            name: s(c, "/name").to_owned(),
                            ty: s(c, "/type").to_owned(),
                            format: s(c, "/format").to_owned(),
                            description: s(c, "/description").to_owned(),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            json_path: s(c, "/jsonPath").to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            if columns.is_empty() {
                columns.push(Column {
                    name: "Age".into(),
                    ty: "date".into(),
                    format: String::new(),
                    description: String::new(),
                    priority: 0,
                    json_path: ".metadata.creationTimestamp".into(),
                });
            }
            let info = CustomInfo {
                crd: meta::name(crd).to_owned(),
                schema: full_schema(v.pointer("/schema/openAPIV3Schema").unwrap_or(&Value::Null)),
                columns,
                scale,
            };
            Resource {
                group,
                version: intern(s(v, "/name")),
                kind,
                plural,
                singular: singular.clone(),
                namespaced: s(crd, "/spec/scope") != "Cluster",
                short_names,
                categories,
                verbs: STANDARD,
                subresources,
                storage: intern(&format!("{group}/{plural}")),
                storage_gv: (group, storage_version),
                custom: Some(Box::leak(Box::new(info))),
            }
        })
        .collect();
    out.sort_by(|a, b| version_order(a.version, b.version));
    out
}

/// Upstream's defaults for a CRD: singular and listKind names, conversion None.
pub fn default_crd(crd: &mut Value) {
    if let Some(names) = crd.pointer_mut("/spec/names") {
        default_names(names);
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}));
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Upstream's checks of a CRD (the ones Keelson relies on to serve it).
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let name = meta::name(crd);
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    } else if !is_dns_label(plural) {
        errs.push(FieldError::invalid(
            "spec.names.plural",
            json!(plural),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ));
    }
    if s(crd, "/spec/names/kind").is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match s(crd, "/spec/scope") {
        "Cluster" | "Namespaced" => {}
        "" => errs.push(FieldError::required("spec.scope", "")),
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&Value::Bool(true)))
        .count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Null,
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        if s(v, "/name").is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => errs.push(FieldError::required(
                format!("{at}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(schema) => {
                let root = format!("{at}.schema.openAPIV3Schema");
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    if schema.get("type").is_none() {
                        errs.push(FieldError::required(
                            format!("{root}.type"),
                            "must not be empty at the root",
                        ));
                    } else {
                        errs.push(FieldError::invalid(
                            format!("{root}.type"),
                            schema["type"].clone(),
                            "must be object at the root",
                        ));
                    }
                }
                structural(schema, &root, &mut errs);
            }
        }
    }
    errs
}

/// Every specified field needs a type, unless it preserves unknown fields or is an
/// int-or-string (upstream's structural schema rule).
fn structural(node: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            let at = format!("{path}.properties[{k}]");
            let exempt = p.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
                || p.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
            if p.get("type").is_none() && !exempt {
                errs.push(FieldError::required(
                    format!("{at}.type"),
                    "must not be empty for specified object fields",
                ));
            }
            structural(p, &at, errs);
        }
    }
    if let Some(items) = node.get("items") {
        structural(items, &format!("{path}.items"), errs);
    }
    if let Some(ap) = node.get("additionalProperties").filter(|v| v.is_object()) {
        structural(ap, &format!("{path}.additionalProperties"), errs);
    }
}

/// The status a served CRD gets: its accepted names, the stored versions, and the
/// NamesAccepted and Established conditions (kept with their transition times when
/// they did not change).
pub fn status_for(crd: &Value, conflict: Option<String>, now: &str) -> Value {
    let mut names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    default_names(&mut names);
    let old: Vec<Value> = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cond = |ty: &str, ok: bool, reason: &str, message: &str| {
        let status = if ok { "True" } else { "False" };
        let since = old
            .iter()
            .find(|c| c["type"] == ty && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        json!({"type": ty, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
    };
    let conditions = match &conflict {
        None => vec![
            cond("NamesAccepted", true, "NoConflicts", "no conflicts found"),
            cond(
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
        ],
        Some(why) => vec![
            cond("NamesAccepted", false, "PluralConflict", why),
            cond(
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
            ),
        ],
    };
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage") == Some(&Value::Bool(true)))
        })
        .and_then(|v| v.get("name"))
        && !stored.contains(v)
    {
        stored.push(v.clone());
    }
    let accepted = if conflict.is_some() {
        json!({"plural": "", "kind": ""})
    } else {
        names
    };
    json!({"conditions": conditions, "acceptedNames": accepted, "storedVersions": stored})
}

fn default_names(names: &mut Value) {
    let kind = s(names, "/kind").to_owned();
    if let Some(m) = names.as_object_mut()
        && !kind.is_empty()
    {
        m.entry("singular")
            .or_insert_with(|| json!(kind.to_lowercase()));
        m.entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
}

/// Whether another CRD or a built-in resource already serves this CRD's plural in
/// its group: upstream's `"x" is already in use`.
fn plural_conflict(crd: &Value) -> Option<String> {
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let name = meta::name(crd);
    let taken = catalog()
        .served()
        .into_iter()
        .any(|r| r.group == group && r.plural == plural && r.custom.is_none_or(|c| c.crd != name));
    taken.then(|| format!("{plural:?} is already in use"))
}

fn crd_resource() -> &'static Resource {
    catalog()
        .get(GROUP, "v1", "customresourcedefinitions")
        .expect("customresourcedefinitions")
}

/// Serves what `crd` defines (or stops, while it is being deleted) and records the
/// outcome in its status.
async fn reconcile(api: &Api, crd: &Value) {
    let name = meta::name(crd).to_owned();
    if meta::field(crd, "deletionTimestamp").is_some() {
        remove(api, &name).await;
        return;
    }
    let conflict = plural_conflict(crd);
    if conflict.is_none() {
        let rs = resources(crd);
        if catalog().register(&name, rs) {
            tracing::info!(crd = %name, "serving custom resource");
        }
        for r in catalog().custom_resources(&name) {
            api.registry.ensure_cache(r).await;
        }
    }
    let status = status_for(crd, conflict, &meta::now());
    if crd.get("status") == Some(&status) {
        return;
    }
    let res = crd_resource();
    let written = api
        .registry
        .guaranteed_update(res, "", &name, |mut cur| {
            if cur.get("status") == Some(&status)
                || meta::field(&cur, "uid") != meta::field(crd, "uid")
            {
                return Ok(None);
            }
            cur["status"] = status.clone();
            Ok(Some(cur))
        })
        .await;
    if let Err(e) = written {
        tracing::debug!(crd = %name, error = %e, "CRD status not written");
    }
}

/// Stops serving the resources of CRD `name`.
async fn remove(api: &Api, name: &str) {
    for r in catalog().unregister(name) {
        if !catalog().served().iter().any(|o| o.storage == r.storage) {
            api.registry.drop_cache(r);
        }
    }
}

/// Deletes every object of a deleted CRD (upstream's CRD finalizer does the same
/// before the CRD goes); called once the CRD is gone from the store.
pub async fn cleanup(api: &Api, crd: &Value) {
    let name = meta::name(crd).to_owned();
    remove(api, &name).await;
    let (group, plural) = (s(crd, "/spec/group"), s(crd, "/spec/names/plural"));
    if group.is_empty() || plural.is_empty() {
        return;
    }
    let prefix = format!("{}/{group}/{plural}/", api.registry.prefix);
    match api
        .registry
        .kv
        .range(
            prefix.as_bytes(),
            &crate::storage::prefix_end(prefix.as_bytes()),
            0,
            0,
        )
        .await
    {
        Ok(page) => {
            for kv in page.kvs {
                let _ = api.registry.kv.delete(&kv.key, kv.mod_revision).await;
            }
        }
        Err(e) => tracing::warn!(crd = %name, error = %e, "custom objects not deleted"),
    }
}

/// The CRD controller: follows the CRDs in the store through their watch cache and
/// keeps the catalog serving what they define.
pub async fn run(api: Arc<Api>) {
    let res = crd_resource();
    loop {
        let Some(cache) = api.registry.cache(res) else {
            return;
        };
        let (backlog, mut rx) = match cache.watch_from(0, true) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = ?e, "CRD watch failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        for n in backlog {
            handle(&api, n).await;
        }
        loop {
            match rx.recv().await {
                Ok(n) => handle(&api, n).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

async fn handle(api: &Api, n: crate::cache::Notice) {
    let crate::cache::Notice::Event(e) = n else {
        return;
    };
    match e.kind {
        crate::cache::EventType::Deleted => remove(api, meta::name(&e.object)).await,
        _ => reconcile(api, &e.object).await,
    }
}

// ---- custom objects: defaulting, pruning, validation ----

fn is_true(node: &Value, key: &str) -> bool {
    node.get(key) == Some(&Value::Bool(true))
}

/// Fills `default`s of missing properties, as upstream does on requests and on
/// reads from storage.
pub fn apply_defaults(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    if !m.contains_key(k)
                        && let Some(d) = p.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = m.get_mut(k) {
                        apply_defaults(p, child);
                    }
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in m.values_mut() {
                    apply_defaults(ap, child);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for child in a {
                    apply_defaults(items, child);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_owned()
    } else {
        format!("{path}.{k}")
    }
}

/// Drops the fields the schema does not specify (unless it preserves unknown fields),
/// recording their paths. `metadata` is left to the ObjectMeta checks.
pub fn prune(schema: &Value, v: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let preserve = is_true(schema, "x-kubernetes-preserve-unknown-fields");
            let embedded = is_true(schema, "x-kubernetes-embedded-resource");
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if props.is_none() && additional.is_some_and(Value::is_object) {
                let ap = additional.unwrap_or(&Value::Null);
                for (k, child) in m.iter_mut() {
                    prune(ap, child, &join(path, k), unknown);
                }
                return;
            }
            let mut drop = Vec::new();
            for (k, child) in m.iter_mut() {
                match props.and_then(|p| p.get(k)) {
                    Some(p) if !(path.is_empty() && k == "metadata") => {
                        prune(p, child, &join(path, k), unknown)
                    }
                    Some(_) => {}
                    None if preserve => {}
                    None if embedded
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    None => drop.push(k.clone()),
                }
            }
            for k in drop {
                unknown.push(join(path, &k));
                m.remove(&k);
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, child) in a.iter_mut().enumerate() {
                    prune(items, child, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `v` against the schema, with upstream's messages
/// (`spec.replicas in body must be of type integer: "string"`).
pub fn validate(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if schema.get("nullable") == Some(&Value::Bool(true)) || schema.get("type").is_none() {
            return;
        }
        errs.push(FieldError::invalid(
            path,
            json!("null"),
            format!(
                "{path} in body must be of type {}: \"null\"",
                s(schema, "/type")
            ),
        ));
        return;
    }
    if is_true(schema, "x-kubernetes-int-or-string") {
        if !(v.is_i64() || v.is_u64() || v.is_string()) {
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                format!(
                    "{path} in body must be of type integer-or-string: {:?}",
                    json_type(v)
                ),
            ));
        }
        return;
    }
    let ty = s(schema, "/type");
    let ok = match ty {
        "" => true,
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        t => json_type(v) == t,
    };
    if !ok {
        errs.push(FieldError::invalid(
            path,
            v.clone(),
            format!("{path} in body must be of type {ty}: {:?}", json_type(v)),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let texts: Vec<String> = allowed
            .iter()
            .map(|a| {
                a.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| a.to_string())
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        errs.push(FieldError::not_supported(path, v.clone(), &refs));
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(x) = v.as_f64() {
        let fmt = |n: f64| {
            if n.fract() == 0.0 {
                format!("{}", n as i64)
            } else {
                n.to_string()
            }
        };
        if let Some(min) = num("minimum") {
            let excl = is_true(schema, "exclusiveMinimum");
            if x < min || (excl && x == min) {
                let rel = if excl {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                errs.push(FieldError::invalid(
                    path,
                    v.clone(),
                    format!("{path} in body should be {rel} {}", fmt(min)),
                ));
            }
        }
        if let Some(max) = num("maximum") {
            let excl = is_true(schema, "exclusiveMaximum");
            if x > max || (excl && x == max) {
                let rel = if excl {
                    "less than"
                } else {
                    "less than or equal to"
                };
                errs.push(FieldError::invalid(
                    path,
                    v.clone(),
                    format!("{path} in body should be {rel} {}", fmt(max)),
                ));
            }
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count();
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len as u64 > max
        {
            errs.push(FieldError::too_long(path, max as usize));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && (len as u64) < min
        {
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(p) {
                Ok(re) if !re.is_match(text) => errs.push(FieldError::invalid(
                    path,
                    v.clone(),
                    format!("{path} in body should match '{p}'"),
                )),
                _ => {}
            }
        }
    }
    match v {
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errs.push(FieldError::invalid(
                    path,
                    json!(items.len()),
                    format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                errs.push(FieldError::invalid(
                    path,
                    json!(items.len()),
                    format!("{path} in body should have at most {max} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(m) => {
            if is_true(schema, "x-kubernetes-embedded-resource") {
                // An embedded object must say what it is.
                for k in ["apiVersion", "kind"] {
                    if m.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                        errs.push(FieldError::required(join(path, k), "must not be empty"));
                    }
                }
            }
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !m.contains_key(r) {
                        errs.push(FieldError::required(join(path, r), ""));
                    }
                }
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    if path.is_empty() && k == "metadata" {
                        continue;
                    }
                    if let Some(child) = m.get(k) {
                        validate(p, child, &join(path, k), errs);
                    }
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in m {
                    validate(ap, child, &format!("{path}[{k}]"), errs);
                }
            }
        }
        _ => {}
    }
}

/// Evaluates a printer column's JSONPath (`.spec.replicas`, `.status.conditions[0].type`,
/// `.spec.items[*].name`) against an object.
pub fn json_path<'v>(obj: &'v Value, path: &str) -> Vec<&'v Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur: Vec<&Value> = vec![obj];
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            rest = &r[end..];
            if key.is_empty() {
                continue;
            }
            cur = cur.into_iter().filter_map(|v| v.get(key)).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let idx = &r[..end];
            rest = &r[end + 1..];
            cur = match idx {
                "*" => cur
                    .into_iter()
                    .flat_map(|v| {
                        v.as_array()
                            .map(|a| a.iter().collect::<Vec<_>>())
                            .unwrap_or_default()
                    })
                    .collect(),
                i => match i.parse::<usize>() {
                    Ok(n) => cur.into_iter().filter_map(|v| v.get(n)).collect(),
                    Err(_) => {
                        let key = i.trim_matches(['\'', '"']);
                        cur.into_iter().filter_map(|v| v.get(key)).collect()
                    }
                },
            };
        } else {
            return Vec::new();
        }
    }
    cur
}

/// A simple JSONPath (`.spec.replicas`) as a JSON pointer (`/spec/replicas`).
pub fn json_pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Sets `v` at a JSON pointer, creating the objects on the way.
pub fn set_pointer(obj: &mut Value, ptr: &str, v: Value) {
    let mut cur = obj;
    let parts: Vec<String> = ptr
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let m = cur.as_object_mut().expect("object");
        if i == parts.len() - 1 {
            m.insert(p.clone(), v);
            return;
        }
        cur = m.entry(p.clone()).or_insert_with(|| json!({}));
    }
}

/// A printer column's cell: the value as its type says, `null` when absent.
pub fn cell(obj: &Value, col: &Column) -> Value {
    let found = json_path(obj, &col.json_path);
    match found.as_slice() {
        [] => Value::Null,
        [one] => match col.ty.as_str() {
            "integer" => one.as_i64().map(Value::from).unwrap_or(Value::Null),
            "number" => one.as_f64().map(Value::from).unwrap_or(Value::Null),
            "boolean" => one.as_bool().map(Value::from).unwrap_or(Value::Null),
            _ => match one {
                Value::String(x) => json!(x),
                other => json!(other.to_string()),
            },
        },
        many => json!(
            many.iter()
                .map(|v| v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": true},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }})
    }

    #[test]
    fn defaulting_pruning_and_validation_speak_upstreams_words() {
        let schema = full_schema(&widget_schema());
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {"size": 20, "name": "Bad1", "tags": ["a", "b", "c"], "port": "http", "unknown": 1,
                     "extra": {"anything": {"goes": true}}},
            "bogus": true});
        apply_defaults(&schema, &mut obj);
        assert_eq!(obj["spec"]["color"], "red");
        let mut unknown = Vec::new();
        prune(&schema, &mut obj, "", &mut unknown);
        assert_eq!(unknown, ["spec.unknown", "bogus"]);
        assert_eq!(obj["spec"]["extra"]["anything"]["goes"], true);
        assert_eq!(obj["metadata"]["labels"]["a"], "b");
        let mut errs = Vec::new();
        validate(&schema, &obj, "", &mut errs);
        let texts: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.body()))
            .collect();
        assert_eq!(
            texts,
            [
                "spec.name: Invalid value: \"Bad1\": spec.name in body should match '^[a-z]+$'",
                "spec.size: Invalid value: 20: spec.size in body should be less than or equal to 10",
                "spec.tags: Invalid value: 3: spec.tags in body should have at most 2 items",
            ]
        );
        let mut errs = Vec::new();
        validate(
            &schema,
            &json!({"spec": {"color": "green", "size": "x"}}),
            "",
            &mut errs,
        );
        let texts: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.body()))
            .collect();
        assert_eq!(
            texts,
            [
                "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\"",
                "spec.size: Invalid value: \"x\": spec.size in body must be of type integer: \"string\"",
            ]
        );
        let mut errs = Vec::new();
        validate(&schema, &json!({"spec": {}}), "", &mut errs);
        assert_eq!(errs[0].field, "spec.size");
        let embedded = json!({"type": "object", "properties": {"template": {
            "type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}});
        let mut errs = Vec::new();
        validate(
            &embedded,
            &json!({"template": {"kind": "Pod"}}),
            "spec",
            &mut errs,
        );
        let texts: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.body()))
            .collect();
        assert_eq!(
            texts,
            ["spec.template.apiVersion: Required value: must not be empty"]
        );
    }

    #[test]
    fn crd_checks_and_served_resources() {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false, "schema": {"openAPIV3Schema": widget_schema()}},
                    {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": widget_schema()},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}]}});
        assert!(validate_crd(&crd).is_empty(), "{:?}", validate_crd(&crd));
        let rs = resources(&crd);
        assert_eq!(
            rs.iter().map(|r| r.version).collect::<Vec<_>>(),
            ["v1", "v1beta1"]
        );
        assert_eq!(rs[0].storage, "example.com/widgets");
        assert_eq!(rs[1].storage_gv, ("example.com", "v1"));
        assert!(rs[0].subresource("scale").is_some() && rs[0].subresource("status").is_some());
        assert_eq!(rs[1].custom.unwrap().columns[0].name, "Age");
        let mut bad = crd.clone();
        bad["metadata"]["name"] = json!("nope");
        bad["spec"]["scope"] = json!("Everywhere");
        bad["spec"]["versions"][0]["storage"] = json!(true);
        let msgs: Vec<String> = validate_crd(&bad)
            .iter()
            .map(|e| format!("{}: {}", e.field, e.body()))
            .collect();
        assert_eq!(
            msgs,
            [
                "metadata.name: Invalid value: \"nope\": must be spec.names.plural+\".\"+spec.group",
                "spec.scope: Unsupported value: \"Everywhere\": supported values: \"Cluster\", \"Namespaced\"",
                "spec.versions: Invalid value: \"null\": must have exactly one version marked as storage version",
            ]
        );
        let st = status_for(&crd, None, "2026-01-01T00:00:00Z");
        assert_eq!(st["conditions"][1]["type"], "Established");
        assert_eq!(st["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(st["storedVersions"], json!(["v1"]));
    }

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v2", "foo", "v1", "v1beta2", "v1beta1", "v10"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            v,
            ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn printer_column_paths() {
        let o = json!({"spec": {"size": 3, "items": [{"n": "a"}, {"n": "b"}]}, "status": {"conditions": [{"type": "Ready"}]}});
        let col = |p: &str, t: &str| Column {
            name: "x".into(),
            ty: t.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: p.into(),
        };
        assert_eq!(cell(&o, &col(".spec.size", "integer")), json!(3));
        assert_eq!(
            cell(&o, &col(".status.conditions[0].type", "string")),
            json!("Ready")
        );
        assert_eq!(cell(&o, &col(".spec.items[*].n", "string")), json!("a,b"));
        assert_eq!(cell(&o, &col(".spec.missing", "string")), Value::Null);
    }
}
