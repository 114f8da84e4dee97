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
        let mut o = json!({
            "operationId": format!("{verb}{}", r.kind),
            "tags": [gv_string(r.group, r.version)],
            "x-kubernetes-action": verb,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": params,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}},
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
    for r in rs {
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
pub fn v3_index(hash: &str) -> Value {
    let mut paths = Map::new();
    for (g, vs) in catalog().groups() {
        for v in vs {
            let p = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// The whole OpenAPI v2 (swagger) document, as JSON.
pub fn v2_document(schema: &Schema) -> Value {
    let mut paths = Map::new();
    for r in catalog().all() {
        let Some(def) = schema.definition_for(r.group, r.version, r.kind) else {
            continue;
        };
        let (coll, item) = operations(r, &def, false);
        paths.insert(path_of(r, r.namespaced), coll);
        paths.insert(format!("{}/{{name}}", path_of(r, r.namespaced)), item);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": schema.defs,
    })
}
