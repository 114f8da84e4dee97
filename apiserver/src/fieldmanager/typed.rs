//! Values walked with their schema, as structured-merge-diff's `typed` package does:
//! the field set of a value ([`Typed::to_field_set`]), the merge of two values
//! ([`Typed::merge`]), their comparison ([`Typed::compare`]) and the removal of a set of
//! paths ([`Typed::remove_items`]).
//!
//! The schema is upstream's OpenAPI definitions ([`crate::schema`]), read the way
//! kube-openapi's `schemaconv` turns them into structured-merge-diff types:
//! `x-kubernetes-list-type` (atomic, set, map with `x-kubernetes-list-map-keys`),
//! falling back to the patch strategy and merge key, and atomic otherwise;
//! `x-kubernetes-map-type: atomic` for atomic structs; an object without properties
//! (RawExtension, FieldsV1) is "deduced": maps granular, lists atomic.

use serde_json::{Map, Value};

use super::fieldpath::{Path, PathElement, Set, values_equal};
use crate::schema::Schema;

/// A node of the OpenAPI schema, or the deduced type.
#[derive(Clone, Copy)]
pub enum TypeRef<'s> {
    /// A schema node (`{"$ref": ...}` or an inline type).
    Node(&'s Value),
    /// No schema: maps are granular, lists atomic.
    Deduced,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Atomic,
    Set,
    Map,
}

enum Atom<'s> {
    Scalar,
    List {
        elem: TypeRef<'s>,
        kind: ListKind,
        keys: Vec<&'s str>,
        /// The item definition, for key defaults.
        item_def: Option<&'s str>,
    },
    Map {
        fields: Option<&'s Map<String, Value>>,
        elem: Option<TypeRef<'s>>,
        atomic: bool,
    },
    Deduced,
}

/// The defaults of associative-list key fields that upstream's OpenAPI v3 models
/// declare (`+default=`) and the v2 definitions vendored here do not carry. A list
/// item that omits such a key is keyed by the default, as structured-merge-diff does.
const KEY_DEFAULTS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.ContainerPort", "protocol", "TCP"),
    ("io.k8s.api.core.v1.ServicePort", "protocol", "TCP"),
    ("io.k8s.api.core.v1.LocalObjectReference", "name", ""),
];

type Index<'p, 'v> = std::collections::BTreeMap<&'p PathElement, &'v Value>;

/// The items of a list by path element.
fn index<'p, 'v>(items: &'p [(PathElement, &'v Value)]) -> Index<'p, 'v> {
    items.iter().map(|(p, v)| (p, *v)).collect()
}

/// The item keyed `pe`.
fn find<'v>(items: &Index<'_, 'v>, pe: &PathElement) -> Option<&'v Value> {
    items.get(pe).copied()
}

fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/definitions/"))
}

/// The schema walker.
pub struct Typed<'s> {
    schema: &'s Schema,
}

/// What changed between two values: paths added, removed and modified.
#[derive(Default, Debug)]
pub struct Comparison {
    /// Present only in the new value.
    pub added: Set,
    /// Present only in the old value.
    pub removed: Set,
    /// Present in both, with different values.
    pub modified: Set,
}

impl Comparison {
    /// Drops the paths under any member of `ignored`.
    pub fn filter(&mut self, ignored: &Set) {
        self.added = self.added.recursive_difference(ignored);
        self.removed = self.removed.recursive_difference(ignored);
        self.modified = self.modified.recursive_difference(ignored);
    }
}

enum Rule<'c> {
    KeepRhs,
    Compare(&'c mut Comparison),
}

impl<'s> Typed<'s> {
    /// A walker over `schema`.
    pub fn new(schema: &'s Schema) -> Self {
        Typed { schema }
    }

    /// The type of a top-level kind.
    pub fn root(&self, def: &str) -> Option<TypeRef<'s>> {
        self.schema.defs.get(def).map(TypeRef::Node)
    }

    fn ext(&self, node: &'s Value, key: &str) -> Option<&'s Value> {
        node.get(key).or_else(|| {
            ref_name(node)
                .and_then(|r| self.schema.defs.get(r))
                .and_then(|d| d.get(key))
        })
    }

    fn resolve(&self, tr: TypeRef<'s>) -> Atom<'s> {
        let TypeRef::Node(node) = tr else {
            return Atom::Deduced;
        };
        let (body, def_name) = match ref_name(node) {
            Some(r) => match self.schema.defs.get(r) {
                Some(d) => (d, Some(r)),
                None => return Atom::Deduced,
            },
            None => (node, None),
        };
        let _ = def_name;
        let ty = body.get("type").and_then(Value::as_str).unwrap_or("");
        if ty == "array" || body.get("items").is_some() {
            let elem = body
                .get("items")
                .map(TypeRef::Node)
                .unwrap_or(TypeRef::Deduced);
            let item_def = body.get("items").and_then(ref_name);
            let list_type = self
                .ext(node, "x-kubernetes-list-type")
                .and_then(Value::as_str);
            let (kind, keys) = match list_type {
                Some("atomic") => (ListKind::Atomic, vec![]),
                Some("set") => (ListKind::Set, vec![]),
                Some("map") => (
                    ListKind::Map,
                    self.ext(node, "x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default(),
                ),
                _ => {
                    let strategy = self
                        .ext(node, "x-kubernetes-patch-strategy")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if strategy.split(',').any(|s| s == "merge") {
                        match self
                            .ext(node, "x-kubernetes-patch-merge-key")
                            .and_then(Value::as_str)
                        {
                            Some(k) => (ListKind::Map, vec![k]),
                            None => (ListKind::Set, vec![]),
                        }
                    } else {
                        (ListKind::Atomic, vec![])
                    }
                }
            };
            // A map list without keys is a set, as structured-merge-diff reads it.
            let kind = if kind == ListKind::Map && keys.is_empty() {
                ListKind::Set
            } else {
                kind
            };
            return Atom::List {
                elem,
                kind,
                keys,
                item_def,
            };
        }
        if body.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return Atom::Scalar;
        }
        let props = body.get("properties").and_then(Value::as_object);
        let additional = body.get("additionalProperties").filter(|a| a.is_object());
        // A CRD schema's x-kubernetes-preserve-unknown-fields: the fields it does not
        // specify are deduced from their values.
        let preserve = body.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if props.is_some() || additional.is_some() {
            let atomic = self
                .ext(node, "x-kubernetes-map-type")
                .and_then(Value::as_str)
                == Some("atomic");
            return Atom::Map {
                fields: props,
                elem: additional
                    .map(TypeRef::Node)
                    .or_else(|| preserve.then_some(TypeRef::Deduced)),
                atomic,
            };
        }
        match ty {
            "object" | "" => Atom::Deduced,
            _ => Atom::Scalar,
        }
    }

    /// The atom that handles `v` (a deduced type follows the value).
    fn atom_for(&self, tr: TypeRef<'s>, v: Option<&Value>) -> Atom<'s> {
        match self.resolve(tr) {
            Atom::Deduced => match v {
                Some(Value::Object(_)) => Atom::Map {
                    fields: None,
                    elem: Some(TypeRef::Deduced),
                    atomic: false,
                },
                Some(Value::Array(_)) => Atom::List {
                    elem: TypeRef::Deduced,
                    kind: ListKind::Atomic,
                    keys: vec![],
                    item_def: None,
                },
                _ => Atom::Scalar,
            },
            a => a,
        }
    }

    fn field_type(
        fields: Option<&'s Map<String, Value>>,
        elem: Option<TypeRef<'s>>,
        key: &str,
    ) -> (TypeRef<'s>, bool) {
        match fields.and_then(|f| f.get(key)) {
            Some(f) => (TypeRef::Node(f), true),
            None => (elem.unwrap_or(TypeRef::Deduced), false),
        }
    }

    fn item_element(
        kind: ListKind,
        keys: &[&str],
        item_def: Option<&str>,
        index: usize,
        item: &Value,
    ) -> Result<PathElement, String> {
        match kind {
            ListKind::Atomic => Ok(PathElement::Index(index)),
            ListKind::Set => Ok(PathElement::Value(item.clone())),
            ListKind::Map => {
                let Some(m) = item.as_object() else {
                    return Err(if item.is_null() {
                        "associative list with keys may not have a null element".into()
                    } else {
                        "associative list with keys may not have non-map elements".into()
                    });
                };
                let mut kv = Vec::with_capacity(keys.len());
                for k in keys {
                    match m.get(*k) {
                        Some(v) => kv.push(((*k).to_owned(), v.clone())),
                        None => {
                            let default = KEY_DEFAULTS
                                .iter()
                                .find(|(d, f, _)| Some(*d) == item_def && f == k)
                                .map(|(_, _, v)| Value::String((*v).to_owned()));
                            match default {
                                Some(d) => kv.push(((*k).to_owned(), d)),
                                None => {
                                    return Err(format!(
                                        "associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                                    ));
                                }
                            }
                        }
                    }
                }
                kv.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(PathElement::Key(kv))
            }
        }
    }

    /// The paths `v` sets (upstream's `ToFieldSet`).
    pub fn to_field_set(&self, v: &Value, tr: TypeRef<'s>) -> Result<Set, String> {
        let mut set = Set::new();
        let mut path = Vec::new();
        self.tfs(v, tr, &mut path, &mut set)?;
        Ok(set)
    }

    fn tfs(
        &self,
        v: &Value,
        tr: TypeRef<'s>,
        path: &mut Path,
        set: &mut Set,
    ) -> Result<(), String> {
        match self.atom_for(tr, Some(v)) {
            Atom::Scalar | Atom::Deduced => set.insert(path),
            Atom::List {
                elem,
                kind,
                keys,
                item_def,
            } => {
                if kind == ListKind::Atomic {
                    set.insert(path);
                    return Ok(());
                }
                let Some(items) = v.as_array() else {
                    return Ok(());
                };
                for (i, item) in items.iter().enumerate() {
                    let pe = Self::item_element(kind, &keys, item_def, i, item).map_err(|e| {
                        format!("{}: element {i}: {e}", super::fieldpath::path_string(path))
                    })?;
                    path.push(pe);
                    self.tfs(item, elem, path, set)?;
                    set.insert(path);
                    path.pop();
                }
            }
            Atom::Map {
                fields,
                elem,
                atomic,
            } => {
                if atomic {
                    set.insert(path);
                    return Ok(());
                }
                let Some(m) = v.as_object() else {
                    return Ok(());
                };
                for (k, val) in m {
                    let (ftr, declared) = Self::field_type(fields, elem, k);
                    path.push(PathElement::Field(k.clone()));
                    self.tfs(val, ftr, path, set)?;
                    if !declared {
                        set.insert(path);
                    }
                    path.pop();
                }
            }
        }
        Ok(())
    }

    /// `lhs` merged with `rhs`, `rhs` winning (upstream's `Merge`).
    pub fn merge(&self, lhs: &Value, rhs: &Value, tr: TypeRef<'s>) -> Result<Value, String> {
        let mut rule = Rule::KeepRhs;
        let mut path = Vec::new();
        Ok(self
            .merge_node(Some(lhs), Some(rhs), tr, &mut path, &mut rule)?
            .unwrap_or(Value::Null))
    }

    /// What changed from `old` to `new` (upstream's `Compare`).
    pub fn compare(&self, old: &Value, new: &Value, tr: TypeRef<'s>) -> Result<Comparison, String> {
        let mut c = Comparison::default();
        {
            let mut rule = Rule::Compare(&mut c);
            let mut path = Vec::new();
            self.merge_node(Some(old), Some(new), tr, &mut path, &mut rule)?;
        }
        Ok(c)
    }

    fn leaf(
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        path: &Path,
        rule: &mut Rule<'_>,
    ) -> Option<Value> {
        match rule {
            Rule::KeepRhs => rhs.or(lhs).cloned(),
            Rule::Compare(c) => {
                match (lhs, rhs) {
                    (None, _) => c.added.insert(path),
                    (_, None) => c.removed.insert(path),
                    (Some(l), Some(r)) if !values_equal(l, r) => c.modified.insert(path),
                    _ => {}
                }
                None
            }
        }
    }

    fn merge_node(
        &self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        tr: TypeRef<'s>,
        path: &mut Path,
        rule: &mut Rule<'_>,
    ) -> Result<Option<Value>, String> {
        // A deduced node whose sides differ in kind is a leaf.
        let kind = |v: Option<&Value>| match v {
            Some(Value::Object(_)) => 1,
            Some(Value::Array(_)) => 2,
            Some(Value::Null) | None => 0,
            Some(_) => 3,
        };
        let deduced = matches!(self.resolve(tr), Atom::Deduced);
        if deduced && kind(lhs) != 0 && kind(rhs) != 0 && kind(lhs) != kind(rhs) {
            return Ok(Self::leaf(lhs, rhs, path, rule));
        }
        let atom = self.atom_for(tr, rhs.filter(|v| !v.is_null()).or(lhs));
        let (out, in_leaf) = match atom {
            Atom::Scalar | Atom::Deduced => (Self::leaf(lhs, rhs, path, rule), true),
            Atom::List {
                elem,
                kind,
                keys,
                item_def,
            } => {
                let l = lhs.and_then(Value::as_array);
                let r = rhs.and_then(Value::as_array);
                let empty = l.is_none_or(Vec::is_empty) && r.is_none_or(Vec::is_empty);
                if kind == ListKind::Atomic || empty {
                    (Self::leaf(lhs, rhs, path, rule), true)
                } else {
                    let out = self.merge_list(l, r, elem, kind, &keys, item_def, path, rule)?;
                    (out, false)
                }
            }
            Atom::Map {
                fields,
                elem,
                atomic,
            } => {
                let l = lhs.and_then(Value::as_object);
                let r = rhs.and_then(Value::as_object);
                let empty = l.is_none_or(Map::is_empty) && r.is_none_or(Map::is_empty);
                if atomic || empty {
                    (Self::leaf(lhs, rhs, path, rule), true)
                } else {
                    let mut out = Map::new();
                    let mut visit = |k: &String,
                                     lv: Option<&Value>,
                                     rv: Option<&Value>,
                                     path: &mut Path,
                                     rule: &mut Rule<'_>|
                     -> Result<(), String> {
                        let (ftr, _) = Self::field_type(fields, elem, k);
                        path.push(PathElement::Field(k.clone()));
                        let o = self.merge_node(lv, rv, ftr, path, rule)?;
                        path.pop();
                        if let Some(o) = o {
                            out.insert(k.clone(), o);
                        }
                        Ok(())
                    };
                    if let Some(l) = l {
                        for (k, lv) in l {
                            visit(k, Some(lv), r.and_then(|r| r.get(k)), path, rule)?;
                        }
                    }
                    if let Some(r) = r {
                        for (k, rv) in r {
                            if l.is_some_and(|l| l.contains_key(k)) {
                                continue;
                            }
                            visit(k, None, Some(rv), path, rule)?;
                        }
                    }
                    ((!out.is_empty()).then_some(Value::Object(out)), false)
                }
            }
        };
        if !in_leaf && let Rule::Compare(c) = rule {
            match (lhs, rhs) {
                (None, _) => c.added.insert(path),
                (_, None) => c.removed.insert(path),
                _ => {}
            }
        }
        Ok(out)
    }

    fn index_items<'v>(
        items: Option<&'v Vec<Value>>,
        kind: ListKind,
        keys: &[&str],
        item_def: Option<&str>,
        path: &Path,
    ) -> Result<Vec<(PathElement, &'v Value)>, String> {
        let mut out: Vec<(PathElement, &Value)> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, item) in items.into_iter().flatten().enumerate() {
            let pe = Self::item_element(kind, keys, item_def, i, item).map_err(|e| {
                format!("{}: element {i}: {e}", super::fieldpath::path_string(path))
            })?;
            if !seen.insert(pe.clone()) {
                return Err(format!(
                    "{}: duplicate entries for key {pe}",
                    super::fieldpath::path_string(path)
                ));
            }
            out.push((pe, item));
        }
        Ok(out)
    }

    /// Associative-list merge, in upstream's order: the items both sides share keep
    /// the right side's relative order, and the rest stay where each side had them.
    #[allow(clippy::too_many_arguments)]
    fn merge_list(
        &self,
        lhs: Option<&Vec<Value>>,
        rhs: Option<&Vec<Value>>,
        elem: TypeRef<'s>,
        kind: ListKind,
        keys: &[&str],
        item_def: Option<&str>,
        path: &mut Path,
        rule: &mut Rule<'_>,
    ) -> Result<Option<Value>, String> {
        let rhs_items = Self::index_items(rhs, kind, keys, item_def, path)?;
        let lhs_items = Self::index_items(lhs, kind, keys, item_def, path)?;
        let (lhs_index, rhs_index) = (index(&lhs_items), index(&rhs_items));
        let mut shared = rhs_items
            .iter()
            .filter(|(pe, _)| find(&lhs_index, pe).is_some())
            .map(|(pe, _)| pe.clone());
        let mut next_shared = shared.next();
        let mut out = Vec::new();
        let mut merge_item = |pe: &PathElement,
                              l: Option<&Value>,
                              r: Option<&Value>,
                              path: &mut Path,
                              rule: &mut Rule<'_>|
         -> Result<(), String> {
            path.push(pe.clone());
            let o = self.merge_node(l, r, elem, path, rule)?;
            path.pop();
            if let Some(o) = o {
                out.push(o);
            }
            Ok(())
        };
        let (ll, rl) = (lhs_items.len(), rhs_items.len());
        let (mut li, mut ri) = (0, 0);
        while li < ll || ri < rl {
            if li < ll && ri < rl {
                let pe = &lhs_items[li].0;
                if *pe == rhs_items[ri].0 {
                    merge_item(pe, Some(lhs_items[li].1), Some(rhs_items[ri].1), path, rule)?;
                    li += 1;
                    ri += 1;
                    next_shared = shared.next();
                    continue;
                }
                if find(&rhs_index, pe).is_some() && next_shared.as_ref().is_some_and(|n| n != pe) {
                    // A shared item, but not the one due in this round.
                    li += 1;
                    continue;
                }
            }
            if li < ll {
                let (pe, l) = &lhs_items[li];
                if find(&rhs_index, pe).is_none() {
                    merge_item(pe, Some(l), None, path, rule)?;
                    li += 1;
                    continue;
                }
            }
            if ri < rl {
                let (pe, r) = &rhs_items[ri];
                merge_item(pe, find(&lhs_index, pe), Some(r), path, rule)?;
                ri += 1;
                if next_shared.as_ref() == Some(pe) {
                    next_shared = shared.next();
                }
            }
        }
        Ok((!out.is_empty()).then_some(Value::Array(out)))
    }

    /// `v` without the members of `set` (each removed with everything under it), as
    /// upstream's `RemoveItems`; `None` when nothing is left.
    pub fn remove_items(&self, v: &Value, set: &Set, tr: TypeRef<'s>) -> Option<Value> {
        match self.atom_for(tr, Some(v)) {
            Atom::Scalar | Atom::Deduced => Some(v.clone()),
            Atom::List {
                elem,
                kind,
                keys,
                item_def,
            } => {
                let items = v.as_array()?;
                if items.is_empty() || kind == ListKind::Atomic {
                    return None;
                }
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let Ok(pe) = Self::item_element(kind, &keys, item_def, i, item) else {
                        out.push(item.clone());
                        continue;
                    };
                    if set.has(std::slice::from_ref(&pe)) {
                        continue;
                    }
                    match set.with_prefix(&pe) {
                        Some(sub) => {
                            if let Some(o) = self.remove_items(item, sub, elem) {
                                out.push(o);
                            }
                        }
                        None => out.push(item.clone()),
                    }
                }
                (!out.is_empty()).then_some(Value::Array(out))
            }
            Atom::Map {
                fields,
                elem,
                atomic,
            } => {
                let m = v.as_object()?;
                if m.is_empty() || atomic {
                    return None;
                }
                let mut out = Map::new();
                for (k, val) in m {
                    let pe = PathElement::Field(k.clone());
                    if set.has(std::slice::from_ref(&pe)) {
                        continue;
                    }
                    let (ftr, _) = Self::field_type(fields, elem, k);
                    match set.with_prefix(&pe) {
                        Some(sub) => {
                            if let Some(o) = self.remove_items(val, sub, ftr) {
                                out.insert(k.clone(), o);
                            }
                        }
                        None => {
                            out.insert(k.clone(), val.clone());
                        }
                    }
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
        }
    }

    /// `set` with every struct field that has members below it made a member itself
    /// (upstream's `EnsureNamedFieldsAreMembers`), so that removing it is possible.
    pub fn ensure_named_fields_are_members(&self, set: &Set, tr: TypeRef<'s>) -> Set {
        let atom = self.resolve(tr);
        let mut members = set.members().clone();
        let mut children = std::collections::BTreeMap::new();
        for (pe, child) in set.children() {
            let child_tr = match (&atom, pe) {
                (Atom::Map { fields, elem, .. }, PathElement::Field(name)) => {
                    let (t, declared) = Self::field_type(*fields, *elem, name);
                    if declared {
                        members.insert(pe.clone());
                    }
                    t
                }
                (Atom::List { elem, .. }, _) => *elem,
                _ => TypeRef::Deduced,
            };
            children.insert(
                pe.clone(),
                self.ensure_named_fields_are_members(child, child_tr),
            );
        }
        Set::from_parts(members, children)
    }
}
