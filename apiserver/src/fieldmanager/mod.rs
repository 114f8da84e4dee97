//! Field management and server-side apply, after upstream's
//! `k8s.io/apimachinery/pkg/util/managedfields` over structured-merge-diff.
//!
//! Every write records who set which fields in `metadata.managedFields`:
//!
//! ```text
//! create / update / non-apply patch -> FieldManager::update
//!     compare(live, new) -> the writer ("Update" operation, keyed by manager,
//!     apiVersion and subresource) gains what it added or changed; everybody else
//!     loses what was changed under them (no conflicts for updates)
//! apply patch (application/apply-patch+yaml) -> FieldManager::apply
//!     merge(live, applied) -> prune what this applier set last time and no longer
//!     sends (unless another manager owns it) -> conflicts: fields another manager
//!     owns that the apply would change; refused (409) unless force=true, which
//!     takes them over
//! ```
//!
//! The pieces: [`fieldpath`] (paths, sets, `fieldsV1`), [`typed`] (schema-aware
//! walks), and here the managers' bookkeeping: decoding and encoding
//! `managedFields`, the "current-operation" trick that only stamps a time when the
//! write changed something, stripping of identity fields, the cap of ten update
//! managers (older ones merged into `ancient-changes`), the reset fields (status on
//! the main resource, spec on `/status`), and the client-side-apply upgrade path for
//! the `kubectl` manager (conflicts with what `last-applied-configuration` already
//! says are allowed, and that annotation kept in step with later applies).
//!
//! Two simplifications are deliberate, and documented where they occur: the
//! creation baseline is `{metadata: {}, spec: {}, status: {}}` instead of the Go zero
//! value of the kind (which only changes which nested structs get a `.` entry), and
//! field paths of managers at another apiVersion of the same resource are compared
//! as they are (upstream converts them; every kind Keelson stores in two versions
//! keeps its field names).

pub mod fieldpath;
pub mod typed;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use fieldpath::{PathElement, Set, path_string};
use typed::{Comparison, TypeRef, Typed};

/// The annotation client-side apply keeps.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Update managers kept before the oldest are merged.
const MAX_UPDATE_MANAGERS: usize = 10;

/// Why field management failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apply would change fields other managers own.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// A client error (400): the applied object is not acceptable.
    #[error("{0}")]
    BadRequest(String),
    /// Upstream answers these with a bare 500 (no reason).
    #[error("{0}")]
    Failed(String),
}

/// One field another manager owns.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// Who owns it.
    pub manager: ManagerId,
    /// The field, as upstream prints it (`.spec.replicas`).
    pub field: String,
}

/// How upstream names a manager in conflict messages.
pub fn print_manager(id: &ManagerId) -> String {
    let mut s = format!("{:?}", id.manager);
    if !id.subresource.is_empty() {
        s = format!("{s} with subresource {:?}", id.subresource);
    }
    if id.operation == Operation::Update {
        s = format!("{s} using {}", id.api_version);
    }
    s
}

fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            print_manager(&c.manager),
            c.field
        );
    }
    let mut by: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        // Sorted by the manager's identifier, as upstream sorts its JSON form.
        by.entry(id_json(&c.manager)).or_default().push(&c.field);
    }
    let mut lines = Vec::new();
    for (idj, fields) in &by {
        let id = conflicts
            .iter()
            .find(|c| &id_json(&c.manager) == idj)
            .map(|c| &c.manager);
        if let Some(id) = id {
            lines.push(format!("conflicts with {}:", print_manager(id)));
        }
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// `Apply` or `Update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who manages a set of fields: upstream's manager identifier (the entry without
/// its fields and time; appliers without their apiVersion).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManagerId {
    /// `manager`.
    pub manager: String,
    /// `operation`.
    pub operation: Operation,
    /// `apiVersion`, for update managers only.
    pub api_version: String,
    /// `subresource`.
    pub subresource: String,
}

/// The identifier's JSON, the order upstream sorts managers in.
fn id_json(id: &ManagerId) -> String {
    let mut s = format!(
        "{{\"manager\":{},\"operation\":{}",
        json!(id.manager),
        json!(id.operation.as_str())
    );
    if !id.api_version.is_empty() {
        s.push_str(&format!(",\"apiVersion\":{}", json!(id.api_version)));
    }
    if !id.subresource.is_empty() {
        s.push_str(&format!(",\"subresource\":{}", json!(id.subresource)));
    }
    s.push('}');
    s
}

/// What one manager owns.
#[derive(Clone, Debug)]
pub struct Managed {
    /// The fields.
    pub set: Set,
    /// The apiVersion the paths are in.
    pub api_version: String,
    /// `time`, RFC 3339.
    pub time: Option<String>,
}

/// All managers of an object.
pub type Managers = BTreeMap<ManagerId, Managed>;

/// Reads `metadata.managedFields`.
pub fn decode(entries: Option<&Value>) -> Result<Managers, String> {
    let mut out = Managers::new();
    let Some(entries) = entries.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Some(list) = entries.as_array() else {
        return Err("managedFields must be a list".into());
    };
    for (i, e) in list.iter().enumerate() {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        let operation = match s("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        if s("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match s("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {other:?} in managed fields entry {i}"
                ));
            }
        }
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(f) => {
                Set::from_fields_v1(f).map_err(|err| format!("error decoding set: {err}"))?
            }
        };
        let id = ManagerId {
            manager: s("manager").to_owned(),
            operation,
            api_version: if operation == Operation::Apply {
                String::new()
            } else {
                s("apiVersion").to_owned()
            },
            subresource: s("subresource").to_owned(),
        };
        out.insert(
            id,
            Managed {
                set,
                api_version: s("apiVersion").to_owned(),
                time: e.get("time").and_then(Value::as_str).map(str::to_owned),
            },
        );
    }
    Ok(out)
}

fn time_seconds(t: &Option<String>) -> i64 {
    t.as_deref()
        .and_then(crate::meta::parse_rfc3339)
        .unwrap_or(0)
}

/// Writes managers as `metadata.managedFields`, in upstream's order (operation,
/// time, manager, apiVersion, subresource); `None` when there are none.
pub fn encode(managers: &Managers) -> Option<Value> {
    if managers.is_empty() {
        return None;
    }
    let mut entries: Vec<(&ManagerId, &Managed)> = managers.iter().collect();
    entries.sort_by(|(a, ma), (b, mb)| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| time_seconds(&ma.time).cmp(&time_seconds(&mb.time)))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| ma.api_version.cmp(&mb.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let list = entries
        .into_iter()
        .map(|(id, m)| {
            let mut e = serde_json::Map::new();
            e.insert("manager".into(), json!(id.manager));
            e.insert("operation".into(), json!(id.operation.as_str()));
            e.insert("apiVersion".into(), json!(m.api_version));
            if let Some(t) = &m.time {
                e.insert("time".into(), json!(t));
            }
            e.insert("fieldsType".into(), json!("FieldsV1"));
            let fields: Value =
                serde_json::from_str(&m.set.to_fields_v1()).unwrap_or_else(|_| json!({}));
            e.insert("fieldsV1".into(), fields);
            if !id.subresource.is_empty() {
                e.insert("subresource".into(), json!(id.subresource));
            }
            Value::Object(e)
        })
        .collect();
    Some(Value::Array(list))
}

fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/managedFields")
}

fn set_managed_fields(obj: &mut Value, v: Option<Value>) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        match v {
            Some(v) => {
                m.insert("managedFields".into(), v);
            }
            None => {
                m.remove("managedFields");
            }
        }
    }
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut o = obj.clone();
    set_managed_fields(&mut o, None);
    o
}

/// `managedFields: []` or `[{}]` asks for the field management to be reset.
fn is_reset(v: Option<&Value>) -> bool {
    match v.and_then(Value::as_array) {
        Some(a) if a.is_empty() => true,
        Some(a) if a.len() == 1 => a[0].as_object().is_some_and(serde_json::Map::is_empty),
        _ => false,
    }
}

/// The paths no manager ever owns: identity and server-owned metadata.
fn strip_set() -> Set {
    let mut s = Set::new();
    let f = |n: &str| PathElement::Field(n.to_owned());
    s.insert(&[f("apiVersion")]);
    s.insert(&[f("kind")]);
    s.insert(&[f("metadata")]);
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(&[f("metadata"), f(m)]);
    }
    s
}

fn strip(managers: &mut Managers, id: &ManagerId) {
    if let Some(m) = managers.get_mut(id) {
        m.set = m.set.difference(&strip_set());
        if m.set.is_empty() {
            managers.remove(id);
        }
    }
}

/// Field management for one request: the kind's schema, the request's apiVersion and
/// subresource.
pub struct FieldManager<'s> {
    typed: Typed<'s>,
    root: TypeRef<'s>,
    api_version: String,
    kind: String,
    subresource: String,
    /// Paths a write here never takes (upstream's reset fields).
    ignored: Set,
}

impl<'s> FieldManager<'s> {
    /// For objects of definition `def` (`io.k8s.api.apps.v1.Deployment`), served at
    /// `api_version`/`kind`. `has_status` says the resource has a `/status`
    /// subresource, whose fields the main resource resets (and the other way round).
    pub fn new(
        schema: &'s crate::schema::Schema,
        def: &str,
        api_version: &str,
        kind: &str,
        subresource: Option<&str>,
        has_status: bool,
    ) -> Option<Self> {
        let root = Typed::new(schema).root(def)?;
        Some(Self::with_root(
            schema,
            root,
            api_version,
            kind,
            subresource,
            has_status,
        ))
    }

    /// As [`FieldManager::new`], for objects of the schema node `root` (a custom
    /// resource's structural schema).
    pub fn with_root(
        schema: &'s crate::schema::Schema,
        root: TypeRef<'s>,
        api_version: &str,
        kind: &str,
        subresource: Option<&str>,
        has_status: bool,
    ) -> Self {
        let typed = Typed::new(schema);
        let mut ignored = Set::new();
        match subresource {
            Some("status") => ignored.insert(&[PathElement::Field("spec".into())]),
            None if has_status => ignored.insert(&[PathElement::Field("status".into())]),
            _ => {}
        }
        FieldManager {
            typed,
            root,
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            subresource: subresource.unwrap_or("").to_owned(),
            ignored,
        }
    }

    fn id(&self, manager: &str, op: Operation) -> ManagerId {
        ManagerId {
            manager: manager.to_owned(),
            operation: op,
            api_version: if op == Operation::Update {
                self.api_version.clone()
            } else {
                String::new()
            },
            subresource: self.subresource.clone(),
        }
    }

    /// The baseline a created object is compared with: identity, and the top-level
    /// `spec` and `status` structs that Go's zero value of every kind carries.
    pub fn empty_object(&self, name: &str, namespace: &str) -> Value {
        let mut meta = serde_json::Map::new();
        if !name.is_empty() {
            meta.insert("name".into(), json!(name));
        }
        if !namespace.is_empty() {
            meta.insert("namespace".into(), json!(namespace));
        }
        let mut obj = json!({"apiVersion": self.api_version, "kind": self.kind, "metadata": meta});
        if let TypeRef::Node(def) = self.root {
            for top in ["spec", "status"] {
                if def.pointer(&format!("/properties/{top}")).is_some() {
                    obj[top] = json!({});
                }
            }
        }
        obj
    }

    /// structured-merge-diff's `update`: the comparison of `live` and `new`, with
    /// conflicts for every manager but `workflow` that owns a changed field (refused
    /// unless `force`), and removed fields dropped from their owners.
    fn update_managers(
        &self,
        live: &Value,
        new: &Value,
        managers: &mut Managers,
        workflow: &ManagerId,
        force: bool,
    ) -> Result<Comparison, Error> {
        let mut compare = self
            .typed
            .compare(live, new, self.root)
            .map_err(Error::Failed)?;
        compare.filter(&self.ignored);
        let changed = compare.modified.union(&compare.added);
        let mut conflicts: Vec<(ManagerId, Set)> = Vec::new();
        for (id, m) in managers.iter() {
            if id == workflow {
                continue;
            }
            let c = m.set.intersection(&changed);
            if !c.is_empty() {
                conflicts.push((id.clone(), c));
            }
        }
        if !force && !conflicts.is_empty() {
            let mut list = Vec::new();
            for (id, set) in &conflicts {
                set.iterate(&mut |p| {
                    list.push(Conflict {
                        manager: id.clone(),
                        field: path_string(p),
                    })
                });
            }
            return Err(Error::Conflicts(list));
        }
        for (id, c) in &conflicts {
            if let Some(m) = managers.get_mut(id) {
                m.set = m.set.difference(c);
            }
        }
        if !compare.removed.is_empty() {
            for (id, m) in managers.iter_mut() {
                if id != workflow {
                    m.set = m.set.difference(&compare.removed);
                }
            }
        }
        managers.retain(|_, m| !m.set.is_empty());
        Ok(compare)
    }

    /// Records an Update by `manager` (create, update, or a non-apply patch): `new`
    /// gets its `metadata.managedFields`. `live` is the stored object (for a create,
    /// [`FieldManager::empty_object`]). As upstream's `UpdateNoErrors`, a failure
    /// keeps the live object's entries.
    pub fn update(&self, live: &Value, new: &mut Value, manager: &str, now: &str) {
        let new_fields = managed_fields_of(new).cloned();
        let mut managers = if !self.subresource.is_empty() {
            decode(managed_fields_of(live)).unwrap_or_default()
        } else if is_reset(new_fields.as_ref()) {
            Managers::new()
        } else {
            match decode(new_fields.as_ref()) {
                Ok(m) if !m.is_empty() => m,
                _ => decode(managed_fields_of(live)).unwrap_or_default(),
            }
        };
        let live_fields = managed_fields_of(live).cloned();
        set_managed_fields(new, None);
        let live_clean = without_managed_fields(live);
        let current = ManagerId {
            manager: "current-operation".into(),
            operation: Operation::Update,
            api_version: String::new(),
            subresource: String::new(),
        };
        let compare = match self.update_managers(&live_clean, new, &mut managers, &current, true) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "managed fields not updated");
                set_managed_fields(new, live_fields);
                return;
            }
        };
        let set = compare
            .modified
            .union(&compare.added)
            .recursive_difference(&self.ignored);
        if !set.is_empty() {
            managers.insert(
                current.clone(),
                Managed {
                    set,
                    api_version: self.api_version.clone(),
                    time: None,
                },
            );
        }
        strip(&mut managers, &current);
        if let Some(cur) = managers.remove(&current) {
            let id = self.id(manager, Operation::Update);
            let set = match managers.get(&id) {
                Some(prev) => cur.set.union(&prev.set),
                None => cur.set,
            };
            managers.insert(
                id,
                Managed {
                    set,
                    api_version: self.api_version.clone(),
                    time: Some(now.to_owned()),
                },
            );
        }
        cap_update_managers(&mut managers);
        set_managed_fields(new, encode(&managers));
    }

    /// Server-side apply of `applied` by `manager` over `live` (for a create,
    /// [`FieldManager::empty_object`]): the merged object, with its managedFields.
    pub fn apply(
        &self,
        live: &Value,
        applied: &Value,
        manager: &str,
        force: bool,
        now: &str,
    ) -> Result<Value, Error> {
        let av = applied
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = applied.get("kind").and_then(Value::as_str).unwrap_or("");
        if av != self.api_version || kind != self.kind {
            let (g, v) = av.rsplit_once('/').unwrap_or(("", av));
            return Err(Error::BadRequest(format!(
                "invalid object type: {g}/{v}, Kind={kind}"
            )));
        }
        if managed_fields_of(applied).is_some_and(|v| !v.is_null()) {
            return Err(Error::BadRequest(
                "metadata.managedFields must be nil".into(),
            ));
        }
        let managers = decode(managed_fields_of(live))
            .map_err(|e| Error::Failed(format!("failed to decode managed fields: {e}")))?;
        let id = self.id(manager, Operation::Apply);
        let live_clean = without_managed_fields(live);
        let (new, mut managers) =
            match self.apply_managers(&live_clean, applied, managers.clone(), &id, force) {
                Err(Error::Conflicts(conflicts)) if manager == "kubectl" => {
                    // Upgrading from client-side apply: what last-applied-configuration
                    // already says this applier set is not a conflict.
                    match self.allowed_from_last_applied(&live_clean) {
                        Some(allowed) => {
                            let rest: Vec<Conflict> = conflicts
                                .iter()
                                .filter(|c| !allowed.iter().any(|a| a == &c.field))
                                .cloned()
                                .collect();
                            if !rest.is_empty() {
                                return Err(Error::Conflicts(rest));
                            }
                            self.apply_managers(&live_clean, applied, managers, &id, true)?
                        }
                        None => return Err(Error::Conflicts(conflicts)),
                    }
                }
                other => other?,
            };
        let mut out = match new {
            Some(n) => {
                if let Some(m) = managers.get_mut(&id) {
                    m.time = Some(now.to_owned());
                }
                n
            }
            None => live_clean.clone(),
        };
        strip(&mut managers, &id);
        if manager == "kubectl"
            && live
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(LAST_APPLIED))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        {
            let mut last = applied.clone();
            if let Some(a) = last
                .pointer_mut("/metadata/annotations")
                .and_then(Value::as_object_mut)
            {
                a.remove(LAST_APPLIED);
            }
            let text = serde_json::to_string(&last).unwrap_or_default();
            if let Some(a) = out
                .pointer_mut("/metadata/annotations")
                .and_then(Value::as_object_mut)
            {
                a.insert(LAST_APPLIED.into(), json!(text));
            }
        }
        set_managed_fields(&mut out, encode(&managers));
        Ok(out)
    }

    /// structured-merge-diff's `Apply`: merge, prune, then the conflict check.
    /// `None` when the object does not change.
    fn apply_managers(
        &self,
        live: &Value,
        applied: &Value,
        mut managers: Managers,
        id: &ManagerId,
        force: bool,
    ) -> Result<(Option<Value>, Managers), Error> {
        let bad = |e: String| Error::Failed(format!("failed to create typed patch object: {e}"));
        let set = self
            .typed
            .to_field_set(applied, self.root)
            .map_err(bad)?
            .recursive_difference(&self.ignored);
        let merged = self
            .typed
            .merge(live, applied, self.root)
            .map_err(|e| Error::Failed(format!("failed to merge config: {e}")))?;
        let last = managers.get(id).map(|m| m.set.clone());
        managers.insert(
            id.clone(),
            Managed {
                set,
                api_version: self.api_version.clone(),
                time: managers.get(id).and_then(|m| m.time.clone()),
            },
        );
        let new = match last {
            Some(last) if !last.is_empty() => self
                .prune(&merged, &managers, &last)
                .map_err(|e| Error::Failed(format!("failed to prune fields: {e}")))?,
            _ => merged,
        };
        self.update_managers(live, &new, &mut managers, id, force)?;
        let changed = !fieldpath::values_equal(live, &new);
        Ok((changed.then_some(new), managers))
    }

    /// Removes what the applier set last time (`last`) and no longer sends, unless
    /// another manager owns it (upstream's `prune`, `addBackOwnedItems` and
    /// `addBackDanglingItems`).
    fn prune(&self, merged: &Value, managers: &Managers, last: &Set) -> Result<Value, String> {
        let t = &self.typed;
        let ensure = |s: &Set| t.ensure_named_fields_are_members(s, self.root);
        let empty = || json!({});
        let last = ensure(last);
        let pruned = t
            .remove_items(merged, &last, self.root)
            .unwrap_or_else(empty);
        let mut owned = Set::new();
        for m in managers.values() {
            owned = owned.union(&m.set);
        }
        let merged_set = ensure(&t.to_field_set(merged, self.root)?);
        let pruned_set = ensure(&t.to_field_set(&pruned, self.root)?);
        let pruned = t
            .remove_items(
                merged,
                &merged_set.difference(&pruned_set.union(&ensure(&owned))),
                self.root,
            )
            .unwrap_or_else(empty);
        let pruned_set = ensure(&t.to_field_set(&pruned, self.root)?);
        Ok(t.remove_items(
            merged,
            &merged_set.difference(&pruned_set).intersection(&last),
            self.root,
        )
        .unwrap_or_else(empty))
    }

    /// The fields `last-applied-configuration` says client-side apply set, that still
    /// hold their applied values (upstream's `allowedConflictsFromLastApplied`), as
    /// printed paths.
    fn allowed_from_last_applied(&self, live: &Value) -> Option<Vec<String>> {
        let text = live
            .pointer("/metadata/annotations")?
            .get(LAST_APPLIED)?
            .as_str()?;
        let last: Value = serde_json::from_str(text).ok()?;
        if last.get("apiVersion").and_then(Value::as_str) != Some(self.api_version.as_str()) {
            return None;
        }
        let set = self.typed.to_field_set(&last, self.root).ok()?;
        let c = self.typed.compare(&last, live, self.root).ok()?;
        let allowed = set
            .difference(&c.modified)
            .difference(&c.added)
            .difference(&c.removed);
        let mut out = Vec::new();
        allowed.iterate(&mut |p| out.push(path_string(p)));
        Some(out)
    }
}

/// Merges the oldest update managers into `ancient-changes` buckets (one per
/// apiVersion) until at most ten remain.
fn cap_update_managers(managers: &mut Managers) {
    let mut updaters: Vec<ManagerId> = managers
        .keys()
        .filter(|id| id.operation == Operation::Update)
        .cloned()
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|a, b| {
        time_seconds(&managers[a].time)
            .cmp(&time_seconds(&managers[b].time))
            .then_with(|| id_json(a).cmp(&id_json(b)))
    });
    let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
    let mut length = updaters.len();
    for id in updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(m) = managers.get(&id).cloned() else {
            continue;
        };
        let bucket = ManagerId {
            manager: "ancient-changes".into(),
            operation: Operation::Update,
            api_version: m.api_version.clone(),
            subresource: String::new(),
        };
        match first_of_version.get(&m.api_version) {
            Some(first) => {
                if !managers.contains_key(&bucket)
                    && let Some(f) = managers.remove(first)
                {
                    managers.insert(bucket.clone(), f);
                }
                let merged = managers
                    .get(&bucket)
                    .map(|b| b.set.union(&m.set))
                    .unwrap_or_else(|| m.set.clone());
                managers.insert(
                    bucket,
                    Managed {
                        set: merged,
                        api_version: m.api_version.clone(),
                        time: m.time.clone(),
                    },
                );
                managers.remove(&id);
                length -= 1;
            }
            None => {
                first_of_version.insert(m.api_version.clone(), id);
            }
        }
    }
}

/// The manager of a non-apply write: `fieldManager`, or the User-Agent up to its
/// first `/` (upstream's `prefixFromUserAgent`).
pub fn manager_or_user_agent(field_manager: Option<&str>, user_agent: &str) -> String {
    match field_manager {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => user_agent.split('/').next().unwrap_or("").to_owned(),
    }
}
