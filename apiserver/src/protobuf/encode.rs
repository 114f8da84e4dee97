//! Objects as Kubernetes protobuf replies: the JSON form read through the same field
//! table the decoder uses, written as go-to-protobuf would, inside the `k8s\0` +
//! `runtime.Unknown` envelope.
//!
//! A field is written when the JSON object carries it (zero values included, so a
//! Go pointer set to `0` or `false` keeps its meaning); absent and `null` fields are
//! left out, which a Go decoder reads as the zero value, as it would the zero value
//! written out. Repeated scalars are written unpacked (proto2). Types whose JSON is
//! not an object of their fields (Time, Quantity, IntOrString, RawExtension,
//! JSONSchemaProps unions, ...) have their wire forms here.

use base64::Engine;
use serde_json::Value;

use super::{Kind, MAGIC, MICRO_TIME, TIME, Writer, table};

/// How deep objects may nest before encoding gives up (they never do in practice).
const MAX_DEPTH: usize = 100;

/// Whether objects of definition `def` can be sent as protobuf.
pub fn can_encode(def: &str) -> bool {
    table().messages.contains_key(def) || special(def)
}

fn special(def: &str) -> bool {
    matches!(
        def,
        TIME | MICRO_TIME
            | "io.k8s.apimachinery.pkg.apis.meta.v1.Duration"
            | "io.k8s.apimachinery.pkg.api.resource.Quantity"
            | "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
            | "io.k8s.apimachinery.pkg.runtime.RawExtension"
            | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
            | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON"
            | "io.k8s.apimachinery.pkg.apis.meta.v1.Verbs"
    ) || def.ends_with(".ExtraValue")
        || def.starts_with(
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOr",
        )
}

/// `obj` (of definition `def`, with its apiVersion and kind) as a whole protobuf
/// payload; `None` when the definition has no protobuf form.
pub fn encode_body(obj: &Value, def: &str) -> Option<Vec<u8>> {
    let raw = message(def, obj, 0)?;
    let mut type_meta = Writer::default();
    type_meta.string(
        1,
        obj.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
    );
    type_meta.string(2, obj.get("kind").and_then(Value::as_str).unwrap_or(""));
    let mut unknown = Writer::default();
    unknown.bytes(1, &type_meta.0);
    unknown.bytes(2, &raw);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&unknown.0);
    Some(out)
}

/// One watch event of a protobuf watch stream: a 4-byte big-endian length, then a
/// `metav1.WatchEvent` (type, and the object's whole payload in a RawExtension), as
/// upstream's length-delimited protobuf framer writes it.
pub fn watch_frame(ty: &str, obj: &Value, def: &str) -> Option<Vec<u8>> {
    let inner = encode_body(obj, def)?;
    let mut raw = Writer::default();
    raw.bytes(1, &inner);
    let mut event = Writer::default();
    event.string(1, ty);
    event.bytes(2, &raw.0);
    let mut out = (event.0.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&event.0);
    Some(out)
}

fn varint_field(w: &mut Writer, tag: u32, v: u64) {
    w.key(tag, 0);
    w.varint(v);
}

/// One message of definition `def`.
fn message(def: &str, v: &Value, depth: usize) -> Option<Vec<u8>> {
    if depth > MAX_DEPTH {
        return None;
    }
    if special(def) {
        return special_message(def, v, depth);
    }
    let fields = table().messages.get(def)?;
    let mut tags: Vec<&u32> = fields.keys().collect();
    tags.sort();
    let mut w = Writer::default();
    for tag in tags {
        let f = &fields[tag];
        if f.inline {
            // The embedded struct's fields sit in this same JSON object.
            if let Kind::Msg(d) = &f.kind {
                let inner = message(d, v, depth + 1)?;
                w.bytes(*tag, &inner);
            }
            continue;
        }
        let Some(x) = v.get(&f.json).filter(|x| !x.is_null()) else {
            continue;
        };
        match &f.kind {
            Kind::Map(k, vk) => {
                for (key, val) in x.as_object().into_iter().flatten() {
                    let mut entry = Writer::default();
                    one(&mut entry, 1, k, &Value::String(key.clone()), depth)?;
                    if !val.is_null() {
                        one(&mut entry, 2, vk, val, depth)?;
                    }
                    w.bytes(*tag, &entry.0);
                }
            }
            kind if f.repeated => {
                for item in x.as_array().into_iter().flatten() {
                    one(&mut w, *tag, kind, item, depth)?;
                }
            }
            kind => one(&mut w, *tag, kind, x, depth)?,
        }
    }
    Some(w.0)
}

/// One field value.
fn one(w: &mut Writer, tag: u32, kind: &Kind, v: &Value, depth: usize) -> Option<()> {
    match kind {
        Kind::Str => {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            w.bytes(tag, s.as_bytes());
        }
        Kind::Bytes => {
            let b = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or(""))
                .ok()?;
            w.bytes(tag, &b);
        }
        Kind::I32 | Kind::I64 => {
            let n = v
                .as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))?;
            varint_field(w, tag, n as u64);
        }
        Kind::Bool => varint_field(w, tag, u64::from(v.as_bool()?)),
        Kind::Double => {
            w.key(tag, 1);
            w.0.extend_from_slice(&v.as_f64()?.to_bits().to_le_bytes());
        }
        Kind::Msg(d) => {
            let b = message(d, v, depth + 1)?;
            w.bytes(tag, &b);
        }
        Kind::Map(..) => return None,
    }
    Some(())
}

/// The wire forms of the types whose JSON is not an object of their fields.
fn special_message(def: &str, v: &Value, depth: usize) -> Option<Vec<u8>> {
    let mut w = Writer::default();
    let short = def.rsplit('.').next().unwrap_or(def);
    match def {
        TIME | MICRO_TIME => {
            let s = v.as_str()?;
            let secs = crate::meta::parse_rfc3339(s)?;
            w.int(1, secs);
            if def == MICRO_TIME {
                w.int(2, i64::from(fraction_nanos(s)));
            }
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Duration" => {
            w.int(1, parse_go_duration(v.as_str()?)?);
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            w.string(1, &s);
        }
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => match v {
            Value::String(s) => {
                varint_field(&mut w, 1, 1);
                w.bytes(3, s.as_bytes());
            }
            n => {
                varint_field(&mut w, 1, 0);
                varint_field(&mut w, 2, n.as_i64()? as u64);
            }
        },
        "io.k8s.apimachinery.pkg.runtime.RawExtension"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON" => {
            w.bytes(1, &serde_json::to_vec(v).ok()?);
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Verbs" => {
            for s in v.as_array()?.iter().filter_map(Value::as_str) {
                w.bytes(1, s.as_bytes());
            }
        }
        _ if short == "ExtraValue" => {
            for s in v.as_array()?.iter().filter_map(Value::as_str) {
                w.bytes(1, s.as_bytes());
            }
        }
        _ => {
            let schema_def =
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
            match (short, v) {
                ("JSONSchemaPropsOrBool", Value::Bool(b)) => varint_field(&mut w, 1, u64::from(*b)),
                ("JSONSchemaPropsOrBool", obj) => {
                    varint_field(&mut w, 1, 1);
                    w.bytes(2, &message(schema_def, obj, depth + 1)?);
                }
                ("JSONSchemaPropsOrArray", Value::Array(items)) => {
                    for item in items {
                        w.bytes(2, &message(schema_def, item, depth + 1)?);
                    }
                }
                ("JSONSchemaPropsOrStringArray", Value::Array(items)) => {
                    for s in items.iter().filter_map(Value::as_str) {
                        w.bytes(2, s.as_bytes());
                    }
                }
                (_, obj) => {
                    w.bytes(1, &message(schema_def, obj, depth + 1)?);
                }
            }
        }
    }
    Some(w.0)
}

/// The nanoseconds of an RFC 3339 time's fraction (`.123456` → 123456000).
fn fraction_nanos(s: &str) -> i32 {
    let Some((_, rest)) = s.split_once('.') else {
        return 0;
    };
    let digits: String = rest
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    format!("{digits:0<9}").parse().unwrap_or(0)
}

/// Go's `time.ParseDuration`, to nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * unit;
    }
    let v = total.round() as i64;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use serde_json::json;

    use super::super::{decode_body, envelope};
    use super::*;
    use crate::schema::schema;

    fn def(group: &str, version: &str, kind: &str) -> String {
        schema().definition_for(group, version, kind).unwrap()
    }

    fn round_trip(obj: &Value, d: &str) -> Value {
        let bytes = encode_body(obj, d).expect("encodable");
        decode_body(&bytes, &|g, v, k| schema().definition_for(g, v, k)).expect("decodes")
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                "creationTimestamp": "2026-11-23T10:00:00Z", "generation": 3, "resourceVersion": "42",
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                    "time": "2026-11-23T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx", "args": ["a", "b"],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                        "env": [{"name": "X", "value": ""}]}],
                        "terminationGracePeriodSeconds": 30, "hostNetwork": false}}},
            "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True",
                "lastUpdateTime": "2026-11-23T10:00:01Z", "lastTransitionTime": "2026-11-23T10:00:01Z"}]}})
    }

    #[test]
    fn objects_round_trip_through_the_decoder() {
        let d = deployment();
        // Zero values of omitempty fields come back absent, as Go's JSON marshals them.
        let mut want = d.clone();
        want["spec"]["template"]["spec"]["containers"][0]["env"][0] = json!({"name": "X"});
        want["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("hostNetwork");
        assert_eq!(round_trip(&d, &def("apps", "v1", "Deployment")), want);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "type": "Opaque", "data": {"k": "aGVsbG8="}});
        assert_eq!(round_trip(&secret, &def("", "v1", "Secret")), secret);
        let status = json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": "pods \"x\" not found", "reason": "NotFound", "details": {"name": "x", "kind": "pods"}, "code": 404});
        assert_eq!(
            round_trip(&status, "io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
            status
        );
        let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "7"},
            "items": [{"metadata": {"name": "a"}, "data": {"x": "1"}}, {"metadata": {"name": "b"}}]});
        assert_eq!(round_trip(&list, &def("", "v1", "ConfigMapList")), list);
        let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "eventTime": "2026-11-23T10:00:00.123456Z",
            "reason": "Pulled", "count": 1});
        assert_eq!(round_trip(&event, &def("", "v1", "Event")), event);
    }

    /// An independent decoder: the `k8s-pb` crate's prost types read what we wrote.
    #[test]
    fn prost_reads_what_we_write() {
        let bytes = encode_body(&deployment(), &def("apps", "v1", "Deployment")).unwrap();
        let env = envelope(&bytes).unwrap();
        assert_eq!(
            (env.api_version.as_str(), env.kind.as_str()),
            ("apps/v1", "Deployment")
        );
        let d = k8s_pb::api::apps::v1::Deployment::decode(env.raw).expect("prost decodes");
        let meta = d.metadata.unwrap();
        assert_eq!(meta.name.as_deref(), Some("web"));
        assert_eq!(meta.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(
            meta.creation_timestamp.unwrap().seconds,
            crate::meta::parse_rfc3339("2026-11-23T10:00:00Z")
        );
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(0), "a pointer's zero is kept");
        let ru = spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(ru.max_surge.unwrap().str_val.as_deref(), Some("25%"));
        assert_eq!(ru.max_unavailable.unwrap().int_val, Some(1));
        let c = &spec.template.unwrap().spec.unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("nginx"));
        assert_eq!(c.args, ["a", "b"]);
        let cpu = c.resources.as_ref().unwrap().limits.get("cpu").unwrap();
        assert_eq!(cpu.string.as_deref(), Some("500m"));
        let status = k8s_pb::apimachinery::pkg::apis::meta::v1::Status::decode(
            envelope(
                &encode_body(
                    &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 409, "reason": "Conflict"}),
                    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
                )
                .unwrap(),
            )
            .unwrap()
            .raw,
        )
        .unwrap();
        assert_eq!(
            (status.code, status.reason.as_deref()),
            (Some(409), Some("Conflict"))
        );
    }

    #[test]
    fn watch_frames_are_length_delimited_watch_events() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "resourceVersion": "9"}});
        let frame = watch_frame("ADDED", &pod, &def("", "v1", "Pod")).unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let ev =
            k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent::decode(&frame[4..]).unwrap();
        assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
        let raw = ev.object.unwrap().raw.unwrap();
        let back = decode_body(&raw, &|g, v, k| schema().definition_for(g, v, k)).unwrap();
        assert_eq!(back, pod);
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(3_723_500_000_000));
        assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_go_duration("-1.5µs"), Some(-1500));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("5x"), None);
        for n in [0_i64, 1, 999, 1_500, 2_000_000, 3_723_500_000_000] {
            assert_eq!(
                parse_go_duration(&component_base::duration::go_string(n)),
                Some(n)
            );
        }
    }
}
