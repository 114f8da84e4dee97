//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and strategic
//! merge patch (in [`crate::smp`]) with the patch strategies and merge keys of the
//! OpenAPI definitions.

use serde_json::{Map, Value};

use crate::catalog::Resource;
use crate::schema::Schema;

/// Applies an RFC 7386 merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn parent<'a>(doc: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "add operation does not apply: doc is missing path: {path:?}"
        ));
    }
    let toks: Vec<String> = path[1..].split('/').map(unescape).collect();
    let (last, init) = toks.split_last().expect("non-empty");
    let mut cur = doc;
    for t in init {
        cur = match cur {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("doc is missing path: {path:?}: missing value"))?;
    }
    Ok((cur, last.clone()))
}

fn get_path<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(doc);
    }
    doc.pointer(path)
}

fn op_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (p, last) = parent(doc, path)?;
    match p {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>().map_err(|_| {
                    format!("add operation does not apply: doc is missing path: {path:?}")
                })?
            };
            if i > a.len() {
                return Err(format!(
                    "add operation does not apply: doc is missing path: {path:?}"
                ));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path: {path:?}"
        )),
    }
}

fn op_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (p, last) = parent(doc, path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {path:?}");
    match p {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i = last.parse::<usize>().map_err(|_| missing())?;
            if i >= a.len() {
                return Err(missing());
            }
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Upstream's limit on the operations of one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10000;

/// Why a JSON patch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonPatchError {
    /// The body is not a JSON patch (400).
    Decode(String),
    /// More than [`MAX_JSON_PATCH_OPERATIONS`] operations (413).
    TooManyOperations(usize),
    /// An operation does not apply (422).
    Apply(String),
}

/// Applies an RFC 6902 JSON patch, all or nothing.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        JsonPatchError::Decode(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            match patch {
                Value::Object(_) => "object",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => "null",
            }
        ))
    })?;
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(JsonPatchError::TooManyOperations(ops.len()));
    }
    apply_ops(doc, ops).map_err(JsonPatchError::Apply)
}

fn apply_ops(doc: &mut Value, ops: &[Value]) -> Result<(), String> {
    let mut work = doc.clone();
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let value = op.get("value").cloned();
        match kind {
            "add" => op_add(&mut work, path, value.ok_or("missing value")?)?,
            "remove" => {
                op_remove(&mut work, path)?;
            }
            "replace" => {
                if get_path(&work, path).is_none() {
                    return Err(format!(
                        "replace operation does not apply: doc is missing key: {path}: missing value"
                    ));
                }
                op_remove(&mut work, path).ok();
                op_add(&mut work, path, value.ok_or("missing value")?)?;
            }
            "move" | "copy" => {
                let from = op.get("from").and_then(Value::as_str).unwrap_or("");
                let v = get_path(&work, from).cloned().ok_or_else(|| {
                    format!("{kind} operation does not apply: doc is missing from path: {from}")
                })?;
                if kind == "move" {
                    op_remove(&mut work, from)?;
                }
                op_add(&mut work, path, v)?;
            }
            "test" => {
                let have = get_path(&work, path);
                if have != value.as_ref() {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    *doc = work;
    Ok(())
}

/// Applies a strategic merge patch to an object of `res`'s kind ([`crate::smp`]).
pub fn strategic(
    schema: &Schema,
    res: &Resource,
    target: &mut Value,
    patch: &Value,
) -> Result<(), String> {
    let def = schema.definition_for(res.group, res.version, res.kind);
    *target = crate::smp::apply(schema, def.as_deref(), target, patch).map_err(|e| e.0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch() {
        let mut d = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut d, &json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(d, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"a": [1, 2], "b": "x"});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/a/-", "value": 3},
                {"op": "replace", "path": "/b", "value": "y"},
                {"op": "test", "path": "/b", "value": "y"},
                {"op": "move", "from": "/b", "path": "/c"},
            ]),
        )
        .unwrap();
        assert_eq!(d, json!({"a": [1, 2, 3], "c": "y"}));
        let before = d.clone();
        assert!(
            json_patch(
                &mut d,
                &json!([{"op": "remove", "path": "/c"}, {"op": "test", "path": "/a", "value": 1}])
            )
            .is_err()
        );
        assert_eq!(d, before, "a failed patch changes nothing");
        assert_eq!(
            json_patch(&mut d, &json!({"op": "add"})),
            Err(JsonPatchError::Decode(
                "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into()
            ))
        );
        let many = Value::Array(vec![
            json!({"op": "test", "path": "/c", "value": "y"});
            10001
        ]);
        assert_eq!(
            json_patch(&mut d, &many),
            Err(JsonPatchError::TooManyOperations(10001))
        );
    }
}
