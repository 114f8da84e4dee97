//! `/openapi/v2` and `/openapi/v3`: paths from the catalog, definitions from the
//! vendored upstream schema. Each patch operation carries
//! `x-kubernetes-group-version-kind` and the `fieldValidation` parameter, which is what
//! kubectl checks before it sends `fieldValidation=Strict`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::catalog::{Resource, catalog, gv_string};
use crate::schema::Schema;

fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(r) = x.as_str().and_then(|r| r.rsplit('/').next()) {
                        out.insert(r.to_owned());
                    }
                } else {
                    refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// The definitions reachable from `roots`.
fn closure(schema: &Schema, roots: &[String]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(n) = todo.pop() {
        if out.contains_key(&n) {
            continue;
        }
        let Some(d) = schema.defs.get(&n) else {
            continue;
        };
        let mut more = BTreeSet::new();
        refs(d, &mut more);
        out.insert(n, d.clone());
        todo.extend(more);
    }
    out
}

/// A custom resource's definition name, as upstream names it: the group reversed,
/// then version and kind (`com.example.v1.Widget`).
pub fn custom_definition_name(r: &Resource, kind: &str) -> String {
    let mut parts: Vec<&str> = r.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{kind}", parts.join("."), r.version)
}

/// A custom resource's definitions (the object and its list), from its CRD's schema.
fn custom_definitions(r: &Resource) -> Vec<(String, Value)> {
    let Some(info) = r.custom else {
        return Vec::new();
    };
    let gvk = |kind: &str| json!([{"group": r.group, "version": r.version, "kind": kind}]);
    let mut obj = info.schema.clone();
    if let Some(m) = obj.as_object_mut() {
        m.insert("x-kubernetes-group-version-kind".into(), gvk(r.kind));
    }
    let name = custom_definition_name(r, r.kind);
    let list_kind = format!("{}List", r.kind);
    let list = json!({
        "description": format!("{list_kind} is a list of {}", r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": format!("#/definitions/{name}")}},
            "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"},
        },
        "x-kubernetes-group-version-kind": gvk(&list_kind),
    });
    vec![(name, obj), (custom_definition_name(r, &list_kind), list)]
}

fn path_of(r: &Resource, namespaced: bool) -> String {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    if namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    }
}

fn operations(r: &Resource, def: &str, v3: bool) -> (Value, Value) {
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let schema_ref = if v3 {
        json!({"$ref": format!("#/components/schemas/{def}")})
    } else {
        json!({"$ref": format!("#/definitions/{def}")})
    };
    let body = |types: &[&str]| {
        if v3 {
            let mut content = Map::new();
            for t in types {
                content.insert((*t).to_owned(), json!({"schema": schema_ref}));
            }
            json!({"requestBody": {"content": content, "required": true}})
        } else {
            json!({"parameters": [{"name": "body", "in": "body", "required": true, "schema": schema_ref}], "consumes": types})
        }
    };
    let fv = json!({"name": "fieldValidation", "in": "query", "description": "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields.", "schema": {"type": "string", "uniqueItems": true}});
    let dry =
        json!({"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let fm = json!({"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let op = |verb: &str, extra: Value, params: Vec<Value>| {
        // v2 puts a query parameter's type on the parameter and a response's schema on
        // the response; v3 nests both under `schema`/`content`.
        let params: Vec<Value> = if v3 {
            params
        } else {
            params
                .into_iter()
                .map(|mut p| {
                    if let Some(o) = p.as_object_mut()
                        && let Some(Value::Object(sch)) = o.remove("schema")
                    {
                        o.extend(sch);
                    }
                    p
                })
                .collect()
        };
        let ok = if v3 {
            json!({"description": "OK", "content": {"application/json": {"schema": schema_ref}}})
        } else {
            json!({"description": "OK", "schema": schema_ref})
        };
        let mut o = json!({
            "operationId": format!("{verb}{}", r.kind),
            "tags": [gv_string(r.group, r.version)],
            "x-kubernetes-action": verb,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": params,
            "responses": {"200": ok},
        });
        if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                if k == "parameters" {
                    if let Some(ps) = o.get_mut("parameters").and_then(Value::as_array_mut) {
                        ps.extend(v.as_array().cloned().unwrap_or_default());
                    }
                } else {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
        o
    };
    let mut item = Map::new();
    item.insert("get".into(), op("get", json!({}), vec![]));
    item.insert(
        "put".into(),
        op(
            "put",
            body(&["*/*"]),
            vec![dry.clone(), fm.clone(), fv.clone()],
        ),
    );
    item.insert(
        "patch".into(),
        op(
            "patch",
            body(&[
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ]),
            vec![dry.clone(), fm.clone(), fv.clone()],
        ),
    );
    item.insert("delete".into(), op("delete", json!({}), vec![dry.clone()]));
    let mut coll = Map::new();
    coll.insert("get".into(), op("list", json!({}), vec![]));
    coll.insert("post".into(), op("post", body(&["*/*"]), vec![dry, fm, fv]));
    (Value::Object(coll), Value::Object(item))
}

/// The OpenAPI v3 document of one group-version, or `None`.
pub fn v3_document(schema: &Schema, group: &str, version: &str) -> Option<Value> {
    let rs = catalog().group_version(group, version);
    if rs.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut roots = vec![
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_owned(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".to_owned(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent".to_owned(),
    ];
    let mut custom = BTreeMap::new();
    for r in rs {
        if r.custom.is_some() {
            let defs = custom_definitions(r);
            for (_, d) in &defs {
                let mut more = BTreeSet::new();
                refs(d, &mut more);
                roots.extend(more.into_iter().filter(|n| schema.defs.contains_key(n)));
            }
            let (coll, item) = operations(r, &defs[0].0, true);
            paths.insert(path_of(r, r.namespaced), coll);
            paths.insert(format!("{}/{{name}}", path_of(r, r.namespaced)), item);
            custom.extend(defs);
            continue;
        }
        let Some(def) = schema.definition_for(r.group, r.version, r.kind) else {
            continue;
        };
        roots.push(def.clone());
        if let Some(l) = schema.definition_for(r.group, r.version, &format!("{}List", r.kind)) {
            roots.push(l);
        }
        let (coll, item) = operations(r, &def, true);
        paths.insert(path_of(r, r.namespaced), coll);
        paths.insert(format!("{}/{{name}}", path_of(r, r.namespaced)), item);
    }
    let schemas: Map<String, Value> = closure(schema, &roots)
        .into_iter()
        .chain(custom)
        .map(|(k, v)| {
            let s = serde_json::to_string(&v)
                .unwrap_or_default()
                .replace("#/definitions/", "#/components/schemas/");
            (k, serde_json::from_str(&s).unwrap_or(Value::Null))
        })
        .collect();
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The `/openapi/v3` index: one entry per group-version.
pub fn v3_index(schema: &Schema, hash: &str) -> Value {
    let mut paths = Map::new();
    for (g, vs) in catalog().groups() {
        for v in vs {
            let p = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            // A custom group-version's document changes with its CRDs: its hash is
            // the document's, so that clients' caches follow.
            let custom = catalog()
                .group_version(g, v)
                .iter()
                .any(|r| r.custom.is_some());
            let h = if custom {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                v3_document(schema, g, v)
                    .map(|d| d.to_string())
                    .unwrap_or_default()
                    .hash(&mut hasher);
                format!("{:016X}", hasher.finish())
            } else {
                hash.to_owned()
            };
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// The whole OpenAPI v2 (swagger) document, as JSON.
pub fn v2_document(schema: &Schema) -> Value {
    let mut paths = Map::new();
    let mut definitions = schema.defs.clone();
    for r in catalog().served() {
        let def = if r.custom.is_some() {
            let defs = custom_definitions(r);
            let name = defs[0].0.clone();
            definitions.extend(defs);
            name
        } else {
            match schema.definition_for(r.group, r.version, r.kind) {
                Some(d) => d,
                None => continue,
            }
        };
        let (coll, item) = operations(r, &def, false);
        paths.insert(path_of(r, r.namespaced), coll);
        paths.insert(format!("{}/{{name}}", path_of(r, r.namespaced)), item);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions,
    })
}

/// The media type kubectl asks `/openapi/v2` for: gnostic's `openapi.v2.Document`.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The v2 document as gnostic's protobuf `openapi.v2.Document` (field numbers from
/// gnostic's `openapiv2/OpenAPIv2.proto`). kubectl before 1.28 reads this form, not
/// JSON, for `explain`, client-side validation and the fieldValidation probe. Vendor
/// extensions and defaults travel as `Any{yaml}`; JSON text is valid YAML.
pub fn v2_protobuf(doc: &Value) -> Vec<u8> {
    use crate::protobuf::Writer;
    let mut w = Writer::default();
    w.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
    w.message(2, |i| {
        i.string(1, doc["info"]["title"].as_str().unwrap_or(""));
        i.string(2, doc["info"]["version"].as_str().unwrap_or(""));
    });
    if let Some(paths) = doc["paths"].as_object() {
        w.message(8, |pw| {
            for (path, item) in paths {
                pw.message(2, |named| {
                    named.string(1, path);
                    named.message(2, |pi| path_item_pb(pi, item));
                });
            }
        });
    }
    if let Some(defs) = doc["definitions"].as_object() {
        w.message(9, |dw| {
            for (name, schema) in defs {
                dw.message(1, |named| {
                    named.string(1, name);
                    named.message(2, |sw| schema_pb(sw, schema));
                });
            }
        });
    }
    w.0
}

fn any_pb(w: &mut crate::protobuf::Writer, tag: u32, v: &Value) {
    w.message(tag, |a| {
        a.string(2, &v.to_string());
    });
}

fn extensions_pb(w: &mut crate::protobuf::Writer, tag: u32, o: &Map<String, Value>) {
    for (k, v) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
        w.message(tag, |n| {
            n.string(1, k);
            any_pb(n, 2, v);
        });
    }
}

fn strings_pb(w: &mut crate::protobuf::Writer, tag: u32, v: &Value) {
    for s in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
        w.bytes(tag, s.as_bytes());
    }
}

fn path_item_pb(w: &mut crate::protobuf::Writer, item: &Value) {
    for (verb, tag) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        let Some(op) = item.get(verb).and_then(Value::as_object) else {
            continue;
        };
        w.message(tag, |o| {
            strings_pb(o, 1, &op.get("tags").cloned().unwrap_or_default());
            o.string(
                3,
                op.get("description").and_then(Value::as_str).unwrap_or(""),
            );
            o.string(
                5,
                op.get("operationId").and_then(Value::as_str).unwrap_or(""),
            );
            strings_pb(o, 6, &op.get("produces").cloned().unwrap_or_default());
            strings_pb(o, 7, &op.get("consumes").cloned().unwrap_or_default());
            for p in op
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                o.message(8, |pi| parameter_pb(pi, p));
            }
            if let Some(rs) = op.get("responses").and_then(Value::as_object) {
                o.message(9, |rw| {
                    for (code, r) in rs {
                        rw.message(1, |n| {
                            n.string(1, code);
                            n.message(2, |rv| {
                                rv.message(1, |resp| {
                                    resp.string(1, r["description"].as_str().unwrap_or(""));
                                    if let Some(sch) = r.get("schema") {
                                        resp.message(2, |si| {
                                            si.message(1, |sw| schema_pb(sw, sch));
                                        });
                                    }
                                });
                            });
                        });
                    }
                });
            }
            extensions_pb(o, 13, op);
        });
    }
}

/// `ParametersItem{parameter: Parameter{body_parameter | non_body_parameter}}`.
fn parameter_pb(w: &mut crate::protobuf::Writer, p: &Value) {
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
    w.message(1, |param| {
        if s("in") == "body" {
            param.message(1, |b| {
                b.string(1, s("description"));
                b.string(2, s("name"));
                b.string(3, "body");
                b.int(4, i64::from(required));
                if let Some(sch) = p.get("schema") {
                    b.message(5, |sw| schema_pb(sw, sch));
                }
            });
            return;
        }
        // NonBodyParameter: header = 1, query = 3, path = 4 (formData unused).
        let (which, type_tag) = match s("in") {
            "header" => (1, 5),
            "path" => (4, 5),
            _ => (3, 6),
        };
        param.message(2, |nb| {
            nb.message(which, |q| {
                q.int(1, i64::from(required));
                q.string(2, s("in"));
                q.string(3, s("description"));
                q.string(4, s("name"));
                q.string(type_tag, s("type"));
                let unique = p
                    .get("uniqueItems")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                // uniqueItems: 20 in query, 19 in header and path.
                q.int(if which == 3 { 20 } else { 19 }, i64::from(unique));
            });
        });
    });
}

/// gnostic's `Schema`.
fn schema_pb(w: &mut crate::protobuf::Writer, s: &Value) {
    let Some(o) = s.as_object() else { return };
    let st = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("");
    w.string(1, st("$ref"));
    w.string(2, st("format"));
    w.string(3, st("title"));
    w.string(4, st("description"));
    if let Some(d) = o.get("default") {
        any_pb(w, 5, d);
    }
    for (k, tag) in [("maximum", 7), ("minimum", 9)] {
        if let Some(n) = o.get(k).and_then(Value::as_f64) {
            w.double(tag, n);
        }
    }
    for (k, tag) in [
        ("maxLength", 11),
        ("minLength", 12),
        ("maxItems", 14),
        ("minItems", 15),
        ("maxProperties", 17),
        ("minProperties", 18),
    ] {
        if let Some(n) = o.get(k).and_then(Value::as_i64) {
            w.int(tag, n);
        }
    }
    w.string(13, st("pattern"));
    w.int(
        16,
        i64::from(
            o.get("uniqueItems")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
    );
    strings_pb(w, 19, o.get("required").unwrap_or(&Value::Null));
    for e in o
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        any_pb(w, 20, e);
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            w.message(21, |a| {
                a.int(2, i64::from(*b));
            });
        }
        Some(sch @ Value::Object(_)) => {
            w.message(21, |a| {
                a.message(1, |sw| schema_pb(sw, sch));
            });
        }
        _ => {}
    }
    match o.get("type") {
        Some(Value::String(t)) => {
            w.message(22, |tw| {
                tw.bytes(1, t.as_bytes());
            });
        }
        Some(ts @ Value::Array(_)) => {
            w.message(22, |tw| strings_pb(tw, 1, ts));
        }
        _ => {}
    }
    if let Some(items) = o.get("items") {
        w.message(23, |iw| match items {
            Value::Array(list) => {
                for i in list {
                    iw.message(1, |sw| schema_pb(sw, i));
                }
            }
            one => {
                iw.message(1, |sw| schema_pb(sw, one));
            }
        });
    }
    for a in o
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(24, |sw| schema_pb(sw, a));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        w.message(25, |pw| {
            for (name, ps) in props {
                pw.message(1, |n| {
                    n.string(1, name);
                    n.message(2, |sw| schema_pb(sw, ps));
                });
            }
        });
    }
    w.int(
        27,
        i64::from(o.get("readOnly").and_then(Value::as_bool).unwrap_or(false)),
    );
    if let Some(e) = o.get("example") {
        any_pb(w, 30, e);
    }
    extensions_pb(w, 31, o);
}
