//! Strategic merge patch, applied as upstream's `strategicpatch.StrategicMergeMapPatch`
//! does (apimachinery, current semantics).
//!
//! Each field's patch strategy (`merge`, `retainKeys`, `replace`) and merge key come
//! from the OpenAPI definitions' `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key` ([`Schema::field`]), the same source `/openapi`
//! publishes, so there is no second copy to drift. The directives:
//!
//! - `$patch: replace | delete` on a map (anything else is an error);
//! - `$patch: delete | replace` as an element of a merge-keyed list;
//! - `$retainKeys` (every patch key must be listed; original keys not listed go);
//! - `$setElementOrder/<list>` (the final order of the list's items);
//! - `$deleteFromPrimitiveList/<list>` (values removed from a primitive list).
//!
//! Lists merge by key (maps) or as sets (primitives), then are put in patch order
//! with server-only items kept at their relative positions (`reorder`). Errors carry
//! upstream's texts, including Go's `%v` rendering of the offending values.

use serde_json::{Map, Value};

use crate::schema::Schema;

/// A strategic merge patch failure, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

type Result<T> = std::result::Result<T, Error>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}

/// Go's `%v` of a decoded JSON value: `map[k:v]` with sorted keys, `[a b]`, `<nil>`.
pub fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", go_fmt(&m[*k])))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

/// Go's type name of a decoded JSON value, as `%s` of `reflect.TypeOf` prints it.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "%!s(<nil>)",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn bad_arg<T>(expected: &str, got: &Value) -> Result<T> {
    err(format!(
        "expected a {expected}, but received a {}",
        go_type(got)
    ))
}

fn no_merge_key<T>(m: &Value, key: &str) -> Result<T> {
    err(format!(
        "map: {} does not contain declared merge key: {key}",
        go_fmt(m)
    ))
}

/// Applies `patch` to `target`, an object of definition `def`.
pub fn apply(schema: &Schema, def: Option<&str>, target: &Value, patch: &Value) -> Result<Value> {
    let Value::Object(p) = patch else {
        return err("strategic merge patch format is not supported");
    };
    merge_map(schema, def, target, p)
}

/// The patch strategy of a field, as upstream's `extractPatchStrategy`: `retainKeys`
/// combines with one other strategy and is otherwise ignored here.
fn strategy(raw: &str) -> Result<String> {
    let parts: Vec<&str> = raw.split(',').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        [] | ["retainKeys"] => Ok(String::new()),
        [one] => Ok((*one).to_owned()),
        [a, b] if *a == "retainKeys" => Ok((*b).to_owned()),
        [a, b] if *b == "retainKeys" => Ok((*a).to_owned()),
        _ => err(format!(
            "unexpected patch strategy: {}",
            go_fmt(&Value::from(parts))
        )),
    }
}

/// Removes null-valued entries of objects, recursively (null array elements stay).
fn discard_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), discard_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(discard_nulls).collect()),
        other => other.clone(),
    }
}

/// Drops every object carrying `$patch` (and nothing else), recursively; `None` when
/// `v` itself is such an object.
fn remove_directives(v: &Value) -> Option<Value> {
    match v {
        Value::Object(m) if m.contains_key("$patch") => None,
        Value::Object(m) => Some(Value::Object(
            m.iter()
                .filter_map(|(k, v)| remove_directives(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        Value::Array(a) => Some(Value::Array(
            a.iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other.clone()),
    }
}

fn same_type(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Object(_), Value::Object(_))
            | (Value::Array(_), Value::Array(_))
            | (Value::String(_), Value::String(_))
            | (Value::Bool(_), Value::Bool(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::Null, Value::Null)
    )
}

fn merge_map(
    schema: &Schema,
    def: Option<&str>,
    orig: &Value,
    patch: &Map<String, Value>,
) -> Result<Value> {
    if let Some(d) = patch.get("$patch") {
        return match d.as_str() {
            Some("replace") => {
                let mut p = patch.clone();
                p.remove("$patch");
                Ok(Value::Object(p))
            }
            Some("delete") => Ok(Value::Object(Map::new())),
            _ => err(format!(
                "unknown patch type: {} in map: {}",
                go_fmt(d),
                go_fmt(&Value::Object(patch.clone()))
            )),
        };
    }
    let mut out = match orig {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut patch = patch.clone();
    retain_keys(&mut out, &mut patch)?;
    set_element_order(schema, def, &mut out, &mut patch)?;
    // Plain keys first, then deletions from primitive lists, so that a value both
    // merged into and deleted from a list ends up deleted (upstream visits them in
    // Go's random map order).
    type Entries<'a> = Vec<(&'a String, &'a Value)>;
    let (dels, plain): (Entries<'_>, Entries<'_>) = patch
        .iter()
        .partition(|(k, _)| k.starts_with("$deleteFromPrimitiveList"));
    for (k, pv) in plain.into_iter().chain(dels) {
        let (key, is_del) = match k.strip_prefix("$deleteFromPrimitiveList") {
            Some(rest) => match rest.strip_prefix('/') {
                Some(key) => (key.to_owned(), true),
                None => return err("invalid patch format of primitive list"),
            },
            None => (k.clone(), false),
        };
        if pv.is_null() {
            out.remove(&key);
            continue;
        }
        let ov = match out.get(&key) {
            Some(ov) if same_type(ov, pv) => ov.clone(),
            _ => {
                // New key, or a different type: the patch value, cleaned.
                if !is_del {
                    match remove_directives(&discard_nulls(pv)) {
                        Some(v) => {
                            out.insert(key, v);
                        }
                        None => {
                            out.remove(&key);
                        }
                    }
                }
                continue;
            }
        };
        let field = def.and_then(|d| schema.field(d, &key));
        let merged = match (&ov, pv) {
            (Value::Object(_), Value::Object(pm)) => {
                let s = strategy(field.as_ref().map_or("", |f| f.strategy.as_str()))?;
                if s == "replace" {
                    pv.clone()
                } else {
                    let sub = field.as_ref().and_then(|f| f.reference.clone());
                    merge_map(schema, sub.as_deref(), &ov, pm)?
                }
            }
            (Value::Array(oa), Value::Array(pa)) => {
                let s = strategy(field.as_ref().map_or("", |f| f.strategy.as_str()))?;
                if s == "merge" || is_del {
                    let items = field.as_ref().and_then(|f| f.items_ref.clone());
                    let mk = field
                        .as_ref()
                        .and_then(|f| f.merge_key.clone())
                        .unwrap_or_default();
                    Value::Array(merge_slice(schema, items.as_deref(), oa, pa, &mk, is_del)?)
                } else {
                    pv.clone()
                }
            }
            _ => pv.clone(),
        };
        out.insert(key, merged);
    }
    Ok(Value::Object(out))
}

/// `$retainKeys`: keys of the original not listed are cleared; every (non-null,
/// non-directive) key of the patch must be listed.
fn retain_keys(out: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> Result<()> {
    let Some(rk) = patch.remove("$retainKeys") else {
        return Ok(());
    };
    let Value::Array(list) = rk else {
        return err("invalid patch format of retainKeys");
    };
    let listed = |k: &str| list.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with("$deleteFromPrimitiveList")
            || k.starts_with("$setElementOrder")
        {
            continue;
        }
        if !listed(k) {
            return err("invalid patch format of retainKeys");
        }
    }
    out.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<list>`: merges the list now and puts it in the given order.
fn set_element_order(
    schema: &Schema,
    def: Option<&str>,
    out: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with("$setElementOrder"))
        .cloned()
        .collect();
    for key in keys {
        let order = patch.remove(&key).unwrap_or(Value::Null);
        let Value::Array(order) = order else {
            return bad_arg("[]interface {}", &order);
        };
        let Some(k) = key.strip_prefix("$setElementOrder/") else {
            return err("invalid patch format of setElementOrder list");
        };
        let o = match out.get(k) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return bad_arg("[]interface {}", other),
        };
        let p = match patch.get(k) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return bad_arg("[]interface {}", other),
        };
        let field = def.and_then(|d| schema.field(d, k));
        let s = strategy(field.as_ref().map_or("", |f| f.strategy.as_str()))?;
        let mk = field
            .as_ref()
            .and_then(|f| f.merge_key.clone())
            .unwrap_or_default();
        let items = field.as_ref().and_then(|f| f.items_ref.clone());
        validate_order(p.as_deref().unwrap_or(&[]), &order, &mk)?;
        let merged = match (&o, &p) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p.iter().filter_map(remove_directives).collect(),
            (Some(o), Some(p)) if s == "merge" => {
                merge_slice(schema, items.as_deref(), o, p, &mk, false)?
            }
            (Some(_), Some(p)) => p.clone(),
            (None, None) => continue,
        };
        let all: Vec<Value> = o
            .iter()
            .flatten()
            .chain(p.iter().flatten())
            .cloned()
            .collect();
        if all.is_empty() {
            return err("no elements in any of the given slices");
        }
        elem_kind(&all)?;
        let server = o.unwrap_or_default();
        let ordered = reorder(merged, &order, &server, &mk)?;
        out.insert(k.to_owned(), Value::Array(ordered));
        patch.remove(k);
    }
    Ok(())
}

/// The patch's own items must appear in `$setElementOrder` as a subsequence.
fn validate_order(p: &[Value], order: &[Value], mk: &str) -> Result<()> {
    if p.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = p
        .iter()
        .filter(|v| mk.is_empty() || v.get("$patch").and_then(Value::as_str) != Some("delete"))
        .collect();
    let (mut i, mut j) = (0, 0);
    while i < items.len() && j < order.len() {
        if items[i].get("$patch").is_some() {
            i += 1;
            continue;
        }
        if key_eq(items[i], &order[j], mk)? {
            i += 1;
        }
        j += 1;
    }
    if i < items.len() {
        return err(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            go_fmt(&Value::from(p.to_vec())),
            go_fmt(&Value::from(order.to_vec()))
        ));
    }
    Ok(())
}

fn key_eq(a: &Value, b: &Value, mk: &str) -> Result<bool> {
    if mk.is_empty() {
        return Ok(a == b);
    }
    let (Value::Object(am), Value::Object(bm)) = (a, b) else {
        return bad_arg("map[string]interface {}", if a.is_object() { b } else { a });
    };
    match (am.get(mk), bm.get(mk)) {
        (Some(x), Some(y)) => Ok(x == y),
        (None, _) => no_merge_key(a, mk),
        (_, None) => no_merge_key(b, mk),
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Map,
    Str,
    Num,
    Bool,
    Null,
}

/// The one element type of a list's items, or upstream's error.
fn elem_kind(all: &[Value]) -> Result<Kind> {
    let mut kind = None;
    for v in all {
        let k = match v {
            Value::Array(_) => return err("lists of lists are not supported"),
            Value::Object(_) => Kind::Map,
            Value::String(_) => Kind::Str,
            Value::Number(_) => Kind::Num,
            Value::Bool(_) => Kind::Bool,
            Value::Null => Kind::Null,
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return err(format!(
                    "list element types are not identical: {}",
                    go_fmt(&Value::from(all.to_vec()))
                ));
            }
            _ => {}
        }
    }
    Ok(kind.unwrap_or(Kind::Null))
}

fn merge_slice(
    schema: &Schema,
    items_def: Option<&str>,
    orig: &[Value],
    patch: &[Value],
    mk: &str,
    is_del: bool,
) -> Result<Vec<Value>> {
    if orig.is_empty() && patch.is_empty() {
        return Ok(orig.to_vec());
    }
    let all: Vec<Value> = orig.iter().chain(patch).cloned().collect();
    let kind = elem_kind(&all)?;
    if kind != Kind::Map {
        if is_del {
            return Ok(orig
                .iter()
                .filter(|x| !patch.contains(x))
                .cloned()
                .collect());
        }
        let mut merged: Vec<Value> = Vec::new();
        for v in all {
            if !merged.contains(&v) {
                merged.push(v);
            }
        }
        return reorder(merged, patch, orig, "");
    }
    if mk.is_empty() {
        return err("cannot merge lists without merge key for map[string]interface {}");
    }
    // Special elements: `$patch: delete` removes by key, `$patch: replace` replaces
    // the whole list with the other items.
    let mut server: Vec<Value> = orig.to_vec();
    let mut rest: Vec<Value> = Vec::new();
    let mut replace = false;
    for it in patch {
        match it.get("$patch") {
            None => rest.push(it.clone()),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(v) = it.get(mk) else {
                        return no_merge_key(it, mk);
                    };
                    let mut kept = Vec::with_capacity(server.len());
                    for o in server {
                        let Value::Object(om) = &o else {
                            return err(format!("value for key {} is not a map", go_fmt(v)));
                        };
                        if om.get(mk) != Some(v) {
                            kept.push(o);
                        }
                    }
                    server = kept;
                }
                Some("replace") => replace = true,
                Some("merge") => return err("merging lists cannot yet be specified in the patch"),
                _ => {
                    return err(format!(
                        "unknown patch type: {} in map: {}",
                        go_fmt(d),
                        go_fmt(it)
                    ));
                }
            },
        }
    }
    let (server, rest) = if replace {
        (rest, Vec::new())
    } else {
        (server, rest)
    };
    let mut merged = server.clone();
    for p in &rest {
        let Some(v) = p.get(mk) else {
            return no_merge_key(p, mk);
        };
        match merged.iter().position(|o| o.get(mk) == Some(v)) {
            Some(i) => {
                let pm = p.as_object().cloned().unwrap_or_default();
                merged[i] = merge_map(schema, items_def, &merged[i], &pm)?;
            }
            None => merged.push(p.clone()),
        }
    }
    reorder(merged, &rest, &server, mk)
}

/// Position of `item` in `list`: by merge key for maps, by value for primitives.
fn index_in(list: &[Value], item: &Value, mk: &str) -> Result<Option<usize>> {
    if mk.is_empty() {
        return Ok(list.iter().position(|v| v == item));
    }
    let Some(k) = item.get(mk) else {
        return no_merge_key(item, mk);
    };
    for (i, v) in list.iter().enumerate() {
        match v.get(mk) {
            Some(x) if x == k => return Ok(Some(i)),
            Some(_) => {}
            None => return no_merge_key(v, mk),
        }
    }
    Ok(None)
}

/// Go's `sort.SliceStable` (insertion sort, as for the list sizes met in practice)
/// with upstream's comparator: by index in `order`, items not found sorting first.
fn sort_by_order(items: &mut [Value], order: &[Value], mk: &str) -> Result<()> {
    let mut idx: Vec<Option<usize>> = Vec::with_capacity(items.len());
    for it in items.iter() {
        idx.push(index_in(order, it, mk)?);
    }
    let less = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => a < b,
        _ => true,
    };
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && less(idx[j], idx[j - 1]) {
            items.swap(j, j - 1);
            idx.swap(j, j - 1);
            j -= 1;
        }
    }
    Ok(())
}

/// Upstream's `normalizeElementOrder`: items named by the patch (or the
/// `$setElementOrder` list) in that order, interleaved with the server-only items
/// at their relative positions in the server's list.
fn reorder(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    mk: &str,
) -> Result<Vec<Value>> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for m in merged {
        if index_in(patch_order, &m, mk)?.is_some() {
            in_patch.push(m);
        } else {
            server_only.push(m);
        }
    }
    sort_by_order(&mut in_patch, patch_order, mk)?;
    sort_by_order(&mut server_only, server_order, mk)?;
    let mut out = Vec::with_capacity(in_patch.len() + server_only.len());
    let (mut pi, mut so) = (
        in_patch.into_iter().peekable(),
        server_only.into_iter().peekable(),
    );
    while let (Some(p), Some(s)) = (pi.peek(), so.peek()) {
        let l = index_in(server_order, s, mk)?;
        let r = index_in(server_order, p, mk)?;
        match (l, r) {
            (Some(l), Some(r)) if l < r => out.extend(so.next()),
            _ => out.extend(pi.next()),
        }
    }
    out.extend(so);
    out.extend(pi);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POD: &str = "io.k8s.api.core.v1.Pod";

    fn pod_patch(orig: Value, patch: Value) -> Result<Value> {
        apply(crate::schema::schema(), Some(POD), &orig, &patch)
    }

    fn names(v: &Value, ptr: &str) -> Vec<String> {
        v.pointer(ptr)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| x.get("name").map_or_else(|| go_fmt(x), go_fmt))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn containers(list: &[&str]) -> Value {
        json!({"spec": {"containers": list.iter().map(|n| json!({"name": n, "image": format!("{n}:1")})).collect::<Vec<_>>()}})
    }

    #[test]
    fn merge_keyed_lists_merge_by_key_and_keep_server_order() {
        let orig = containers(&["a", "b", "c"]);
        // An item named by the patch merges; new ones go in patch order.
        let out = pod_patch(
            orig.clone(),
            json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
        )
        .unwrap();
        assert_eq!(names(&out, "/spec/containers"), ["a", "b", "c"]);
        assert_eq!(
            out["spec"]["containers"][1],
            json!({"name": "b", "image": "b:2"})
        );
        // Upstream's worked examples: [a,b,c] + [d,b] = [d,a,b,c]; + [b,d] = [a,b,d,c].
        let db = pod_patch(
            orig.clone(),
            json!({"spec": {"containers": [{"name": "d"}, {"name": "b"}]}}),
        )
        .unwrap();
        assert_eq!(names(&db, "/spec/containers"), ["d", "a", "b", "c"]);
        let bd = pod_patch(
            orig,
            json!({"spec": {"containers": [{"name": "b"}, {"name": "d"}]}}),
        )
        .unwrap();
        assert_eq!(names(&bd, "/spec/containers"), ["a", "b", "d", "c"]);
    }

    #[test]
    fn patch_directives_in_lists() {
        let orig = containers(&["a", "b", "c"]);
        let del = pod_patch(
            orig.clone(),
            json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(names(&del, "/spec/containers"), ["a", "c"]);
        let replaced = pod_patch(
            orig.clone(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}}),
        )
        .unwrap();
        assert_eq!(names(&replaced, "/spec/containers"), ["z"]);
        // Delete, then re-add under the same key: the item is replaced, not merged.
        let readd = pod_patch(
            orig.clone(),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}, {"name": "a", "image": "new"}]}}),
        )
        .unwrap();
        assert!(
            readd["spec"]["containers"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "a", "image": "new"}))
        );
        assert_eq!(
            pod_patch(
                orig.clone(),
                json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}})
            )
            .unwrap_err()
            .0,
            "merging lists cannot yet be specified in the patch"
        );
        assert_eq!(
            pod_patch(
                orig.clone(),
                json!({"spec": {"containers": [{"image": "x"}]}})
            )
            .unwrap_err()
            .0,
            "map: map[image:x] does not contain declared merge key: name"
        );
        assert_eq!(
            pod_patch(
                orig,
                json!({"spec": {"containers": [{"name": "a", "$patch": "frob"}]}})
            )
            .unwrap_err()
            .0,
            "unknown patch type: frob in map: map[$patch:frob name:a]"
        );
    }

    #[test]
    fn patch_directives_on_maps() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"nodeSelector": {"x": "y"}}});
        let out = pod_patch(
            orig.clone(),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}, "spec": {"nodeSelector": {"$patch": "delete"}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
        assert_eq!(out["spec"]["nodeSelector"], json!({}));
        assert_eq!(
            pod_patch(
                orig.clone(),
                json!({"metadata": {"labels": {"$patch": "merge"}}})
            )
            .unwrap_err()
            .0,
            "unknown patch type: merge in map: map[$patch:merge]"
        );
        // null deletes a key; a new key's nulls and directives are dropped.
        let out = pod_patch(
            orig,
            json!({"metadata": {"labels": {"a": null}, "annotations": {"k": "v", "gone": null}}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["metadata"]["annotations"], json!({"k": "v"}));
    }

    #[test]
    fn primitive_lists_merge_as_sets_and_delete_by_value() {
        // metadata.finalizers has patchStrategy merge.
        let orig = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = pod_patch(
            orig.clone(),
            json!({"metadata": {"finalizers": ["c", "a"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let out = pod_patch(
            orig.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let out = pod_patch(
            orig,
            json!({"metadata": {"$setElementOrder/finalizers": ["b", "c"], "finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
        // An atomic primitive list (container args) is replaced.
        let orig = json!({"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}});
        let out = pod_patch(
            orig,
            json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["3"]));
    }

    #[test]
    fn set_element_order_orders_the_merged_list() {
        // What kubectl sends when a container is removed and the rest reordered.
        let orig = containers(&["a", "b", "c"]);
        let out = pod_patch(
            orig.clone(),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                "containers": [{"name": "b", "$patch": "delete"}]
            }}),
        )
        .unwrap();
        assert_eq!(names(&out, "/spec/containers"), ["c", "a"]);
        // Env vars merged by name, with order given.
        let orig = json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}});
        let out = pod_patch(
            orig,
            json!({"spec": {"containers": [{
                "name": "a",
                "$setElementOrder/env": [{"name": "Z"}, {"name": "Y"}, {"name": "X"}],
                "env": [{"name": "Z", "value": "3"}]
            }]}}),
        )
        .unwrap();
        assert_eq!(names(&out, "/spec/containers/0/env"), ["Z", "Y", "X"]);
        let bad = pod_patch(
            containers(&["a", "b"]),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b", "image": "x"}]}}),
        )
        .unwrap_err();
        assert!(bad.0.starts_with("The order in patch list:\n[map[image:x name:b]]\n doesn't match $setElementOrder list:\n[map[name:a]]\n"), "{bad:?}");
    }

    #[test]
    fn retain_keys_clears_unlisted_keys() {
        // volumes[].(volume source) carries retainKeys: switching source type.
        let orig = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
        let out = pod_patch(
            orig.clone(),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["volumes"][0],
            json!({"name": "v", "hostPath": {"path": "/x"}})
        );
        assert_eq!(
            pod_patch(
                orig,
                json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name"], "hostPath": {"path": "/x"}}]}}),
            )
            .unwrap_err()
            .0,
            "invalid patch format of retainKeys"
        );
    }

    #[test]
    fn type_errors_in_upstreams_words() {
        assert_eq!(
            pod_patch(
                json!({"spec": {}}),
                json!({"spec": {"$setElementOrder/containers": "x"}})
            )
            .unwrap_err()
            .0,
            "expected a []interface {}, but received a string"
        );
        assert_eq!(
            pod_patch(
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": [1]}})
            )
            .unwrap_err()
            .0,
            "list element types are not identical: [a 1]"
        );
        assert_eq!(
            pod_patch(
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": [["x"]]}})
            )
            .unwrap_err()
            .0,
            "lists of lists are not supported"
        );
        // A different type replaces without error.
        assert_eq!(
            pod_patch(
                json!({"spec": {"hostname": "a"}}),
                json!({"spec": {"hostname": {"x": 1}}})
            )
            .unwrap()["spec"]["hostname"],
            json!({"x": 1})
        );
    }
}

/// The patch kubectl computes (`CreateTwoWayMergePatch` with `$setElementOrder`),
/// as a test oracle: applying it to `orig` must give `modified`.
#[cfg(test)]
mod two_way {
    use super::*;
    use serde_json::json;

    /// A two-way strategic merge patch from `orig` to `modified` (objects of `def`).
    pub(super) fn diff(
        schema: &Schema,
        def: Option<&str>,
        orig: &Value,
        modified: &Value,
    ) -> Value {
        let (Value::Object(o), Value::Object(m)) = (orig, modified) else {
            return modified.clone();
        };
        Value::Object(diff_maps(schema, def, o, m, false))
    }

    fn diff_maps(
        schema: &Schema,
        def: Option<&str>,
        o: &Map<String, Value>,
        m: &Map<String, Value>,
        retain: bool,
    ) -> Map<String, Value> {
        let mut patch = Map::new();
        for (k, mv) in m {
            let field = def.and_then(|d| schema.field(d, k));
            let raw = field.as_ref().map_or("", |f| f.strategy.as_str());
            let s = strategy(raw).unwrap_or_default();
            let Some(ov) = o.get(k) else {
                patch.insert(k.clone(), mv.clone());
                continue;
            };
            match (ov, mv) {
                (Value::Object(oo), Value::Object(mm)) => {
                    if s == "replace" {
                        patch.insert(k.clone(), mv.clone());
                        continue;
                    }
                    let sub = field.as_ref().and_then(|f| f.reference.clone());
                    let d = diff_maps(schema, sub.as_deref(), oo, mm, raw.contains("retainKeys"));
                    if !d.is_empty() {
                        patch.insert(k.clone(), Value::Object(d));
                    }
                }
                (Value::Array(oa), Value::Array(ma)) if s == "merge" => {
                    let mk = field
                        .as_ref()
                        .and_then(|f| f.merge_key.clone())
                        .unwrap_or_default();
                    let items = field.as_ref().and_then(|f| f.items_ref.clone());
                    diff_lists(schema, items.as_deref(), k, oa, ma, &mk, &mut patch);
                }
                _ => {
                    if ov != mv {
                        patch.insert(k.clone(), mv.clone());
                    }
                }
            }
        }
        for (k, ov) in o {
            if !m.contains_key(k) && !ov.is_null() {
                patch.insert(k.clone(), Value::Null);
            }
        }
        if retain {
            let dropped = o.iter().any(|(k, v)| !v.is_null() && !m.contains_key(k));
            if !patch.is_empty() || dropped {
                let mut keys: Vec<&String> = m
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k)
                    .collect();
                keys.sort();
                patch.insert("$retainKeys".into(), json!(keys));
            }
        }
        patch
    }

    fn diff_lists(
        schema: &Schema,
        items: Option<&str>,
        k: &str,
        o: &[Value],
        m: &[Value],
        mk: &str,
        patch: &mut Map<String, Value>,
    ) {
        if o.is_empty() {
            if !m.is_empty() {
                patch.insert(k.into(), Value::from(m.to_vec()));
            }
            return;
        }
        if mk.is_empty() {
            let added: Vec<Value> = m.iter().filter(|v| !o.contains(v)).cloned().collect();
            let mut removed: Vec<Value> = o.iter().filter(|v| !m.contains(v)).cloned().collect();
            removed.sort_by_key(go_fmt);
            removed.dedup();
            if !added.is_empty() {
                patch.insert(k.into(), Value::from(added));
            }
            if !removed.is_empty() {
                patch.insert(
                    format!("$deleteFromPrimitiveList/{k}"),
                    Value::from(removed.clone()),
                );
            }
            if (!removed.is_empty() || o != m) && !m.is_empty() {
                patch.insert(format!("$setElementOrder/{k}"), Value::from(m.to_vec()));
            }
            return;
        }
        let mut list = Vec::new();
        for mv in m {
            match o.iter().find(|ov| ov.get(mk) == mv.get(mk)) {
                None => list.push(mv.clone()),
                Some(ov) => {
                    if let (Value::Object(oo), Value::Object(mm)) = (ov, mv) {
                        let mut d = diff_maps(schema, items, oo, mm, false);
                        if !d.is_empty() {
                            d.insert(mk.into(), mv[mk].clone());
                            list.push(Value::Object(d));
                        }
                    }
                }
            }
        }
        for ov in o {
            if !m.iter().any(|mv| mv.get(mk) == ov.get(mk)) {
                list.push(json!({mk: ov[mk].clone(), "$patch": "delete"}));
            }
        }
        let keys = |l: &[Value]| l.iter().map(|v| v[mk].clone()).collect::<Vec<_>>();
        let reordered = keys(o)
            .into_iter()
            .filter(|k| keys(m).contains(k))
            .collect::<Vec<_>>()
            != keys(m)
                .into_iter()
                .filter(|k| keys(o).contains(k))
                .collect::<Vec<_>>();
        let emit_order = !list.is_empty() || reordered || o.len() != m.len();
        if !list.is_empty() {
            patch.insert(k.into(), Value::from(list));
        }
        if emit_order && !m.is_empty() {
            let order: Vec<Value> = m.iter().map(|v| json!({mk: v[mk].clone()})).collect();
            patch.insert(format!("$setElementOrder/{k}"), Value::from(order));
        }
    }

    #[test]
    fn the_diff_has_kubectls_shape() {
        let s = crate::schema::schema();
        let orig = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}, "metadata": {"finalizers": ["x", "y"]}});
        let modified = json!({"spec": {"containers": [{"name": "b", "image": "2"}]}, "metadata": {"finalizers": ["y", "z"]}});
        let p = diff(s, Some("io.k8s.api.core.v1.Pod"), &orig, &modified);
        assert_eq!(
            p,
            json!({
                "metadata": {
                    "finalizers": ["z"],
                    "$deleteFromPrimitiveList/finalizers": ["x"],
                    "$setElementOrder/finalizers": ["y", "z"],
                },
                "spec": {
                    "containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"}],
                    "$setElementOrder/containers": [{"name": "b"}],
                }
            })
        );
        assert_eq!(
            apply(s, Some("io.k8s.api.core.v1.Pod"), &orig, &p).unwrap(),
            modified
        );
    }
}

/// Property: the patch kubectl would compute from any old pod to any new one turns
/// the old into the new when the server applies it.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn env() -> impl Strategy<Value = Vec<Value>> {
        proptest::sample::subsequence(vec!["A", "B", "C", "D"], 0..=4)
            .prop_shuffle()
            .prop_flat_map(|names| {
                let n = names.len();
                (Just(names), proptest::collection::vec("[a-c]{1,2}", n))
            })
            .prop_map(|(names, values)| {
                names
                    .into_iter()
                    .zip(values)
                    .map(|(n, v)| json!({"name": n, "value": v}))
                    .collect()
            })
    }

    fn container() -> impl Strategy<Value = (String, Value)> {
        (
            proptest::sample::select(vec!["img:1", "img:2"]),
            proptest::option::of(env()),
            proptest::option::of(
                proptest::sample::subsequence(vec![80, 443, 8080], 0..=3).prop_shuffle(),
            ),
            proptest::option::of(proptest::collection::vec("[xy]", 0..3)),
        )
            .prop_map(|(image, env, ports, args)| {
                let mut c = json!({"image": image});
                if let Some(e) = env {
                    c["env"] = json!(e);
                }
                if let Some(p) = ports {
                    c["ports"] = json!(
                        p.iter()
                            .map(|p| json!({"containerPort": p}))
                            .collect::<Vec<_>>()
                    );
                }
                if let Some(a) = args {
                    c["args"] = json!(a);
                }
                (String::new(), c)
            })
    }

    fn pod() -> impl Strategy<Value = Value> {
        (
            proptest::sample::subsequence(vec!["a", "b", "c"], 1..=3).prop_shuffle(),
            proptest::collection::vec(container(), 3),
            proptest::option::of(proptest::collection::btree_map("[k-m]", "[0-2]", 0..3)),
            proptest::option::of(
                proptest::sample::subsequence(vec!["f1", "f2", "f3"], 0..=3).prop_shuffle(),
            ),
            proptest::option::of(proptest::sample::select(vec!["Always", "Never"])),
        )
            .prop_map(|(names, cs, labels, finalizers, restart)| {
                let containers: Vec<Value> = names
                    .iter()
                    .zip(cs)
                    .map(|(n, (_, mut c))| {
                        c["name"] = json!(n);
                        c
                    })
                    .collect();
                let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": containers}});
                if let Some(l) = labels {
                    p["metadata"]["labels"] = json!(l);
                }
                if let Some(f) = finalizers {
                    p["metadata"]["finalizers"] = json!(f);
                }
                if let Some(r) = restart {
                    p["spec"]["restartPolicy"] = json!(r);
                }
                p
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn applying_the_two_way_patch_gives_the_new_object(old in pod(), new in pod()) {
            let s = crate::schema::schema();
            let def = Some("io.k8s.api.core.v1.Pod");
            let patch = super::two_way::diff(s, def, &old, &new);
            let got = apply(s, def, &old, &patch).map_err(|e| TestCaseError::fail(e.0))?;
            prop_assert_eq!(got, new, "patch: {}", patch);
        }
    }
}
