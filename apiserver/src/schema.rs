//! Upstream's OpenAPI definitions for Kubernetes 1.33, the one source for field
//! validation, pruning of unknown fields, patch strategies and merge keys, and the
//! `/openapi` documents. The definitions are vendored in
//! `apiserver/openapi/definitions-v1.33.json` (see `hack/gen-openapi-defs.py`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::error::ApiError;

/// `fieldValidation`: what to do with unknown or duplicate fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn.
    Warn,
    /// Refuse the request.
    Strict,
}

impl FieldValidation {
    /// Parses the query parameter; upstream's default is Warn.
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v.unwrap_or("") {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::BadRequest(format!(
                "fieldValidation must be one of Ignore, Warn, or Strict, got {other:?}"
            ))),
        }
    }
}

/// What the schema says of one field.
#[derive(Clone, Debug, Default)]
pub struct FieldInfo {
    /// `x-kubernetes-patch-strategy`.
    pub strategy: String,
    /// `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<String>,
    /// The definition of an object field.
    pub reference: Option<String>,
    /// The definition of a list field's items.
    pub items_ref: Option<String>,
}

/// The loaded definitions.
pub struct Schema {
    /// `definitions`, keyed by name (`io.k8s.api.core.v1.Pod`).
    pub defs: serde_json::Map<String, Value>,
    gvk: HashMap<(String, String, String), String>,
}

static RAW: &str = include_str!("../openapi/definitions-v1.33.json");

fn ref_name(v: &Value) -> Option<String> {
    v.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/definitions/"))
        .map(str::to_owned)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

struct Walk<'a> {
    schema: &'a Schema,
    unknown: Vec<String>,
    type_error: Option<String>,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

impl Walk<'_> {
    fn node(&mut self, node: &Value, v: &mut Value, path: &str, owner: &str) {
        if v.is_null() || self.type_error.is_some() {
            return;
        }
        if let Some(r) = ref_name(node) {
            if let Some(d) = self.schema.defs.get(&r) {
                let short = r.rsplit('.').next().unwrap_or("").to_owned();
                self.node(d, v, path, &short);
            }
            return;
        }
        let ty = node.get("type").and_then(Value::as_str).unwrap_or("");
        let format = node.get("format").and_then(Value::as_str).unwrap_or("");
        let go_type = |ty: &str| match (ty, format) {
            ("integer", "int32") => "int32",
            ("integer", _) => "int64",
            ("number", _) => "float64",
            ("boolean", _) => "bool",
            ("string", _) => "string",
            ("array", _) => "slice",
            _ => "struct",
        };
        let mismatch = match ty {
            "string" if format == "int-or-string" => !(v.is_string() || v.is_i64() || v.is_u64()),
            // Quantities take numbers too.
            "string"
                if node
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.starts_with("Quantity")) =>
            {
                !(v.is_string() || v.is_number())
            }
            "string" => !v.is_string(),
            "integer" => !(v.is_i64() || v.is_u64()),
            "number" => !v.is_number(),
            "boolean" => !v.is_boolean(),
            "array" => !v.is_array(),
            "object" => !v.is_object(),
            _ => false,
        };
        if mismatch {
            self.type_error = Some(format!(
                "json: cannot unmarshal {} into Go struct field {owner}.{} of type {}",
                json_type(v),
                strip_indices(path),
                go_type(ty)
            ));
            return;
        }
        match v {
            Value::Object(m) => {
                if let Some(props) = node.get("properties").and_then(Value::as_object) {
                    let mut drop = Vec::new();
                    for (k, val) in m.iter_mut() {
                        match props.get(k) {
                            Some(p) => self.node(p, val, &join(path, k), owner),
                            None => {
                                drop.push(k.clone());
                                self.unknown.push(join(path, k));
                            }
                        }
                    }
                    for k in drop {
                        m.remove(&k);
                    }
                } else if let Some(ap) = node.get("additionalProperties") {
                    for (k, val) in m.iter_mut() {
                        self.node(ap, val, &format!("{path}[{k}]"), owner);
                    }
                }
            }
            Value::Array(a) => {
                if let Some(items) = node.get("items") {
                    for (i, val) in a.iter_mut().enumerate() {
                        self.node(items, val, &format!("{path}[{i}]"), owner);
                    }
                }
            }
            _ => {}
        }
    }
}

fn strip_indices(p: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in p.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Go's wording for a JSON syntax error, which upstream's messages carry.
pub fn go_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "unexpected end of JSON input".to_owned(),
        Category::Syntax => format!(
            "invalid character at line {} column {}: {e}",
            e.line(),
            e.column()
        ),
        _ => e.to_string(),
    }
}

impl Schema {
    fn load() -> Schema {
        let doc: Value = serde_json::from_str(RAW).expect("vendored definitions parse");
        let defs = doc
            .get("definitions")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut gvk = HashMap::new();
        for (name, d) in &defs {
            if let Some(list) = d
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
            {
                for g in list {
                    let key = (
                        g["group"].as_str().unwrap_or("").to_owned(),
                        g["version"].as_str().unwrap_or("").to_owned(),
                        g["kind"].as_str().unwrap_or("").to_owned(),
                    );
                    // Prefer the definition in the group's own package over shared ones
                    // (meta/v1 DeleteOptions is listed under every group).
                    gvk.entry(key).or_insert_with(|| name.clone());
                }
            }
        }
        Schema { defs, gvk }
    }

    /// The definition name of a kind.
    pub fn definition_for(&self, group: &str, version: &str, kind: &str) -> Option<String> {
        self.gvk
            .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
            .cloned()
    }

    /// What the schema says of `field` in definition `def`.
    pub fn field(&self, def: &str, field: &str) -> Option<FieldInfo> {
        let p = self.defs.get(def)?.get("properties")?.get(field)?;
        Some(FieldInfo {
            strategy: p
                .get("x-kubernetes-patch-strategy")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            merge_key: p
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str)
                .map(str::to_owned),
            reference: ref_name(p).or_else(|| p.get("additionalProperties").and_then(ref_name)),
            items_ref: p.get("items").and_then(ref_name),
        })
    }

    /// Checks an object against its kind's definition: unknown fields are pruned, and
    /// refused or warned about as `mode` says; values of the wrong type are a 400, as
    /// upstream's decoder reports them. Returns the warnings.
    pub fn validate_fields(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        obj: &mut Value,
        mode: FieldValidation,
        raw: &[u8],
    ) -> Result<Vec<String>, ApiError> {
        let Some(def) = self.definition_for(group, version, kind) else {
            return Ok(Vec::new());
        };
        let node = serde_json::json!({"$ref": format!("#/definitions/{def}")});
        let mut w = Walk {
            schema: self,
            unknown: Vec::new(),
            type_error: None,
        };
        w.node(&node, obj, "", kind);
        if let Some(e) = w.type_error {
            return Err(ApiError::BadRequest(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
            )));
        }
        let mut msgs: Vec<String> = w
            .unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        if mode != FieldValidation::Ignore {
            msgs.extend(
                duplicate_fields(raw)
                    .iter()
                    .map(|f| format!("duplicate field {f:?}")),
            );
        }
        mode.apply(msgs)
    }
}

impl FieldValidation {
    /// What the directive makes of field problems (`unknown field "x"`): upstream's
    /// strict decoding error, warnings, or nothing.
    pub fn apply(self, msgs: Vec<String>) -> Result<Vec<String>, ApiError> {
        match self {
            FieldValidation::Strict if !msgs.is_empty() => Err(ApiError::BadRequest(format!(
                "strict decoding error: {}",
                msgs.join(", ")
            ))),
            FieldValidation::Warn => Ok(msgs),
            _ => Ok(Vec::new()),
        }
    }
}

/// The paths of keys that appear twice in one JSON object of `raw`, in upstream's
/// notation (`metadata.name`, `spec.containers[0].image`). serde_json keeps the last
/// value silently; upstream's strict decoder reports each repeat.
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    struct Seed<'a> {
        path: String,
        out: &'a mut Vec<String>,
    }

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = m.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    k.clone()
                } else {
                    format!("{}.{k}", self.path)
                };
                if !seen.insert(k) {
                    self.out.push(path.clone());
                }
                m.next_value_seed(Seed {
                    path,
                    out: &mut *self.out,
                })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
            let mut i = 0;
            while s
                .next_element_seed(Seed {
                    path: format!("{}[{i}]", self.path),
                    out: &mut *self.out,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(raw);
    let seed = Seed {
        path: String::new(),
        out: &mut out,
    };
    if seed.deserialize(&mut de).is_err() {
        // Not JSON: a YAML body (its parser refuses duplicate keys itself).
        return Vec::new();
    }
    out
}

/// The process-wide schema.
pub fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(Schema::load)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_fields_by_mode() {
        let raw = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","name":"b"},"spec":{"containers":[{"name":"c","image":"i","image":"j"}]}}"#;
        assert_eq!(
            duplicate_fields(raw),
            ["metadata.name", "spec.containers[0].image"]
        );
        let s = schema();
        let mut obj: Value = serde_json::from_slice(raw).unwrap();
        let err = s
            .validate_fields("", "v1", "Pod", &mut obj, FieldValidation::Strict, raw)
            .unwrap_err();
        assert_eq!(
            err.to_status()["message"],
            r#"strict decoding error: duplicate field "metadata.name", duplicate field "spec.containers[0].image""#
        );
        let warnings = s
            .validate_fields("", "v1", "Pod", &mut obj, FieldValidation::Warn, raw)
            .unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(
            s.validate_fields("", "v1", "Pod", &mut obj, FieldValidation::Ignore, raw)
                .unwrap()
                .is_empty()
        );
        // The last value wins, as in upstream's decoder.
        assert_eq!(obj["metadata"]["name"], "b");
    }

    #[test]
    fn unknown_fields_by_mode() {
        let s = schema();
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}]}, "extra": true});
        let err = s
            .validate_fields(
                "",
                "v1",
                "Pod",
                &mut pod.clone(),
                FieldValidation::Strict,
                b"",
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "strict decoding error: unknown field \"extra\", unknown field \"spec.containers[0].bogus\""
        );
        let warns = s
            .validate_fields("", "v1", "Pod", &mut pod, FieldValidation::Warn, b"")
            .unwrap();
        assert_eq!(warns.len(), 2);
        assert!(pod.get("extra").is_none(), "pruned");
    }

    #[test]
    fn wrong_types() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": 5}]}});
        let err = schema()
            .validate_fields("", "v1", "Pod", &mut pod, FieldValidation::Strict, b"")
            .unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(err.to_string().contains("cannot unmarshal number into Go struct field Container.spec.containers.image of type string"), "{err}");
        let mut d = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": null}], "resources": {"limits": {"cpu": 1}}}]}}}});
        schema()
            .validate_fields(
                "apps",
                "v1",
                "Deployment",
                &mut d,
                FieldValidation::Strict,
                b"",
            )
            .unwrap();
    }

    #[test]
    fn patch_metadata() {
        let f = schema()
            .field("io.k8s.api.core.v1.PodSpec", "containers")
            .unwrap();
        assert_eq!(f.strategy, "merge");
        assert_eq!(f.merge_key.as_deref(), Some("name"));
    }
}
