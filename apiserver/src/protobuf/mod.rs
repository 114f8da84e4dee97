//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! client-go 1.31 and later sends typed requests as protobuf: `kubectl create
//! deployment|configmap|secret|namespace`, `auth can-i`, drain's evictions. There is
//! no JSON fallback: a 415 fails the command. The envelope is the magic `k8s\0`
//! followed by a `runtime.Unknown` (`typeMeta` = 1, `raw` = 2), and `raw` is the object
//! in go-to-protobuf's encoding.
//!
//! The server keeps objects as JSON, so a protobuf body is turned into the JSON that
//! upstream's Go types would marshal, then handled like any JSON body. Field numbers
//! come from a table generated from upstream's `generated.proto` (via the `k8s-pb`
//! crate; see `hack/gen-proto-fields.py`); JSON names and the rest of the typing come
//! from the OpenAPI definitions.
//!
//! go-to-protobuf writes every non-pointer field, zero or not, and a pointer field only
//! when set. So a zero scalar is dropped unless the table marks it as kept: a Go
//! pointer (`replicas: 0` means something; `hostNetwork: false` does not) or a field
//! without omitempty, which Go's JSON prints even when zero (`PriorityClass.value`). Structs are
//! kept even when empty, as Go's JSON encoder does (`resources: {}`), except
//! `metav1.Time`, whose zero value marshals as `null`.
//!
//! Replies, lists and watch streams are protobuf too when the client asks for it first
//! ([`encode`]): the same table read the other way.

pub mod encode;

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Value};

/// The protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The four bytes that open every Kubernetes protobuf payload.
pub const MAGIC: &[u8] = b"k8s\0";

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime";

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    /// The payload does not start with `k8s\0`.
    #[error("provided object is not a Kubernetes protobuf object: missing the 'k8s\\x00' prefix")]
    NoMagic,
    /// The bytes are not valid protobuf.
    #[error("unable to decode protobuf: {0}")]
    Malformed(&'static str),
    /// The envelope names a kind this server has no protobuf schema for.
    #[error(
        "no kind \"{kind}\" is registered for version \"{api_version}\" in the protobuf scheme"
    )]
    UnknownKind {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    Str,
    I32,
    I64,
    Bool,
    Bytes,
    Double,
    Msg(String),
    Map(Box<Kind>, Box<Kind>),
}

#[derive(Debug)]
struct Field {
    json: String,
    kind: Kind,
    repeated: bool,
    pointer: bool,
    /// A Go struct embedded with `json:",inline"`: its fields belong to the parent.
    inline: bool,
}

/// Field numbers for every message, keyed by OpenAPI definition name.
struct Table {
    messages: HashMap<String, HashMap<u32, Field>>,
}

static RAW: &str = include_str!("../../openapi/proto-fields-v1.33.json");

fn parse_kind(s: &str) -> Kind {
    if let Some(m) = s.strip_prefix("m:") {
        return Kind::Msg(m.to_owned());
    }
    if let Some(rest) = s.strip_prefix("map:") {
        let (k, v) = rest.split_once(':').unwrap_or((rest, "string"));
        return Kind::Map(Box::new(parse_kind(k)), Box::new(parse_kind(v)));
    }
    match s {
        "int32" => Kind::I32,
        "int64" => Kind::I64,
        "bool" => Kind::Bool,
        "bytes" => Kind::Bytes,
        "double" => Kind::Double,
        _ => Kind::Str,
    }
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let raw: HashMap<String, HashMap<String, Vec<Value>>> =
            serde_json::from_str(RAW).expect("proto-fields table is valid JSON");
        let messages = raw
            .into_iter()
            .map(|(name, fields)| {
                let fields = fields
                    .into_iter()
                    .filter_map(|(tag, f)| {
                        let flag = |i: usize| f.get(i).and_then(Value::as_bool).unwrap_or(false);
                        Some((
                            tag.parse().ok()?,
                            Field {
                                json: f.first()?.as_str()?.to_owned(),
                                kind: parse_kind(f.get(1)?.as_str()?),
                                repeated: flag(2),
                                pointer: flag(3),
                                inline: flag(4),
                            },
                        ))
                    })
                    .collect();
                (name, fields)
            })
            .collect();
        Table { messages }
    })
}

/// The `runtime.Unknown` envelope of a protobuf body.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// `typeMeta.apiVersion`.
    pub api_version: String,
    /// `typeMeta.kind`.
    pub kind: String,
    /// The object's own encoding.
    pub raw: &'a [u8],
}

/// Splits a body into its envelope.
pub fn envelope(body: &[u8]) -> Result<Envelope<'_>, ProtoError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtoError::NoMagic)?;
    let mut env = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
    };
    for item in Reader(rest) {
        let (tag, val) = item?;
        match (tag, val) {
            (1, Wire::Len(tm)) => {
                for item in Reader(tm) {
                    match item? {
                        (1, Wire::Len(b)) => env.api_version = utf8(b)?,
                        (2, Wire::Len(b)) => env.kind = utf8(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(b)) => env.raw = b,
            _ => {}
        }
    }
    Ok(env)
}

/// Decodes a whole protobuf body into the JSON object upstream would have received.
/// `definition` maps (group, version, kind) to an OpenAPI definition name.
pub fn decode_body(
    body: &[u8],
    definition: &dyn Fn(&str, &str, &str) -> Option<String>,
) -> Result<Value, ProtoError> {
    decode_body_at(body, definition, 0)
}

/// How deep messages may nest. Kubernetes objects need a few dozen levels; JSON
/// bodies stop at serde_json's 128, and so does this, before the stack would.
const MAX_DEPTH: usize = 100;

fn decode_body_at(
    body: &[u8],
    definition: &dyn Fn(&str, &str, &str) -> Option<String>,
    depth: usize,
) -> Result<Value, ProtoError> {
    let env = envelope(body)?;
    let (group, version) = match env.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", env.api_version.as_str()),
    };
    let unknown = || ProtoError::UnknownKind {
        api_version: env.api_version.clone(),
        kind: env.kind.clone(),
    };
    // Options types (DeleteOptions, ...) live in meta/v1 whatever the request's group.
    let def = definition(group, version, &env.kind)
        .filter(|d| table().messages.contains_key(d))
        .or_else(|| {
            let d = format!("{META}.{}", env.kind);
            table().messages.contains_key(&d).then_some(d)
        })
        .ok_or_else(unknown)?;
    let mut obj = decode_message(&def, env.raw, definition, depth)?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), Value::String(env.api_version.clone()));
        m.insert("kind".into(), Value::String(env.kind.clone()));
    }
    Ok(obj)
}

/// Decodes one message of definition `def`.
fn decode_message(
    def: &str,
    bytes: &[u8],
    defs: &dyn Fn(&str, &str, &str) -> Option<String>,
    depth: usize,
) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::Malformed("messages nest too deeply"));
    }
    let depth = depth + 1;
    if let Some(v) = decode_special(def, bytes, defs, depth)? {
        return Ok(v);
    }
    let Some(fields) = table().messages.get(def) else {
        return Err(ProtoError::Malformed("message type without a schema"));
    };
    let mut out = Map::new();
    for item in Reader(bytes) {
        let (tag, wire) = item?;
        let Some(f) = fields.get(&tag) else {
            // Newer fields than this schema knows are skipped, as protobuf does.
            continue;
        };
        if let Kind::Map(k, v) = &f.kind {
            let Wire::Len(entry) = wire else {
                return Err(ProtoError::Malformed("map entry is not length-delimited"));
            };
            let (mut key, mut val) = (None, None);
            for item in Reader(entry) {
                match item? {
                    (1, w) => key = Some(scalar_or_message(k, w, defs, depth)?),
                    (2, w) => val = Some(scalar_or_message(v, w, defs, depth)?),
                    _ => {}
                }
            }
            let key = match key {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let val = val.unwrap_or_else(|| zero(v, defs, depth));
            out.entry(f.json.clone())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .map(|m| m.insert(key, val));
            continue;
        }
        if f.repeated {
            let slot = out
                .entry(f.json.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = slot else { continue };
            match (&f.kind, wire) {
                // Packed scalars.
                (Kind::I32 | Kind::I64 | Kind::Bool, Wire::Len(b)) => {
                    let mut b = b;
                    while !b.is_empty() {
                        let (n, used) = varint(b)?;
                        b = &b[used..];
                        items.push(varint_value(&f.kind, n));
                    }
                }
                (kind, w) => items.push(scalar_or_message(kind, w, defs, depth)?),
            }
            continue;
        }
        let v = scalar_or_message(&f.kind, wire, defs, depth)?;
        if f.inline {
            if let Value::Object(m) = v {
                out.extend(m);
            }
            continue;
        }
        let drop = match (&f.kind, &v) {
            (_, Value::Null) => true,
            (Kind::Msg(_), _) => false,
            _ => !f.pointer && is_zero(&v),
        };
        if drop {
            out.remove(&f.json);
        } else {
            out.insert(f.json.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

/// The types whose JSON form is not an object of their fields.
fn decode_special(
    def: &str,
    bytes: &[u8],
    defs: &dyn Fn(&str, &str, &str) -> Option<String>,
    depth: usize,
) -> Result<Option<Value>, ProtoError> {
    let short = def.rsplit('.').next().unwrap_or(def);
    let fields = || -> Result<HashMap<u32, Wire<'_>>, ProtoError> {
        Reader(bytes).collect::<Result<HashMap<_, _>, _>>()
    };
    fn int(f: &HashMap<u32, Wire<'_>>, t: u32) -> i64 {
        match f.get(&t) {
            Some(Wire::Varint(n)) => *n as i64,
            _ => 0,
        }
    }
    fn bytes_of<'a>(f: &HashMap<u32, Wire<'a>>, t: u32) -> &'a [u8] {
        match f.get(&t) {
            Some(Wire::Len(b)) => b,
            _ => &[],
        }
    }
    Ok(Some(match def {
        TIME | MICRO_TIME => {
            let f = fields()?;
            let (secs, nanos) = (int(&f, 1), int(&f, 2) as i32);
            if secs == 0 && nanos == 0 {
                Value::Null
            } else if def == TIME {
                Value::String(crate::meta::rfc3339(secs))
            } else {
                Value::String(crate::meta::rfc3339_micro_at(
                    secs,
                    (nanos / 1000).max(0) as u32,
                ))
            }
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.Duration" => {
            Value::String(component_base::duration::go_string(int(&fields()?, 1)))
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            Value::String(utf8(bytes_of(&fields()?, 1))?)
        }
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            let f = fields()?;
            if int(&f, 1) == 1 {
                Value::String(utf8(bytes_of(&f, 3))?)
            } else {
                Value::from(int(&f, 2) as i32)
            }
        }
        // Raw JSON carried in bytes.
        "io.k8s.apimachinery.pkg.runtime.RawExtension"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON" => {
            let raw = bytes_of(&fields()?, 1);
            if raw.is_empty() {
                Value::Null
            } else if raw.starts_with(MAGIC) {
                decode_body_at(raw, defs, depth)?
            } else {
                serde_json::from_slice(raw)
                    .map_err(|_| ProtoError::Malformed("raw extension is not JSON"))?
            }
        }
        _ if def.starts_with(
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOr",
        ) =>
        {
            // {schema, allows|JSONSchemas|Property}: the schema if set, else the other.
            let mut schema = None;
            let mut other = Vec::new();
            let mut allows = false;
            let schema_def =
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
            for item in Reader(bytes) {
                match (short, item?) {
                    ("JSONSchemaPropsOrBool", (1, Wire::Varint(n))) => allows = n != 0,
                    ("JSONSchemaPropsOrBool", (2, Wire::Len(b)))
                    | (
                        "JSONSchemaPropsOrArray" | "JSONSchemaPropsOrStringArray",
                        (1, Wire::Len(b)),
                    ) => schema = Some(decode_message(schema_def, b, defs, depth)?),
                    ("JSONSchemaPropsOrArray", (2, Wire::Len(b))) => {
                        other.push(decode_message(schema_def, b, defs, depth)?)
                    }
                    ("JSONSchemaPropsOrStringArray", (2, Wire::Len(b))) => {
                        other.push(Value::String(utf8(b)?))
                    }
                    _ => {}
                }
            }
            match (schema, short) {
                (Some(s), _) => s,
                (None, "JSONSchemaPropsOrBool") => Value::Bool(allows),
                (None, _) => Value::Array(other),
            }
        }
        // Named string slices (`ExtraValue`, `Verbs`) are one repeated `items` field.
        _ if short == "ExtraValue" || def == "io.k8s.apimachinery.pkg.apis.meta.v1.Verbs" => {
            let mut items = Vec::new();
            for item in Reader(bytes) {
                if let (1, Wire::Len(b)) = item? {
                    items.push(Value::String(utf8(b)?));
                }
            }
            Value::Array(items)
        }
        _ => return Ok(None),
    }))
}

fn scalar_or_message(
    kind: &Kind,
    wire: Wire<'_>,
    defs: &dyn Fn(&str, &str, &str) -> Option<String>,
    depth: usize,
) -> Result<Value, ProtoError> {
    Ok(match (kind, wire) {
        (Kind::Str, Wire::Len(b)) => Value::String(utf8(b)?),
        (Kind::Bytes, Wire::Len(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Kind::Msg(def), Wire::Len(b)) => decode_message(def, b, defs, depth)?,
        (Kind::I32 | Kind::I64 | Kind::Bool, Wire::Varint(n)) => varint_value(kind, n),
        (Kind::Double, Wire::Fixed64(n)) => serde_json::Number::from_f64(f64::from_bits(n))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        _ => return Err(ProtoError::Malformed("wire type does not match the field")),
    })
}

fn varint_value(kind: &Kind, n: u64) -> Value {
    match kind {
        Kind::Bool => Value::Bool(n != 0),
        Kind::I32 => Value::from(n as i64 as i32),
        _ => Value::from(n as i64),
    }
}

fn zero(kind: &Kind, defs: &dyn Fn(&str, &str, &str) -> Option<String>, depth: usize) -> Value {
    match kind {
        Kind::I32 | Kind::I64 => Value::from(0),
        Kind::Bool => Value::Bool(false),
        Kind::Double => Value::from(0.0),
        Kind::Msg(def) => decode_message(def, &[], defs, depth).unwrap_or(Value::Null),
        _ => Value::String(String::new()),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn utf8(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed("string field is not UTF-8"))
}

/// A protobuf writer: enough to encode the few documents the server sends as protobuf
/// (`/openapi/v2`). Fields are written in call order; zero values are skipped as
/// proto3 does.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }

    fn key(&mut self, tag: u32, wire: u8) {
        self.varint(u64::from(tag) << 3 | u64::from(wire));
    }

    /// A length-delimited field (bytes, or an encoded message), written even if empty.
    pub fn bytes(&mut self, tag: u32, b: &[u8]) -> &mut Self {
        self.key(tag, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    /// A string field; skipped when empty.
    pub fn string(&mut self, tag: u32, s: &str) -> &mut Self {
        if !s.is_empty() {
            self.bytes(tag, s.as_bytes());
        }
        self
    }

    /// A varint field (int32, int64, bool); skipped when zero.
    pub fn int(&mut self, tag: u32, v: i64) -> &mut Self {
        if v != 0 {
            self.key(tag, 0);
            self.varint(v as u64);
        }
        self
    }

    /// A double field; skipped when zero.
    pub fn double(&mut self, tag: u32, v: f64) -> &mut Self {
        if v != 0.0 {
            self.key(tag, 1);
            self.0.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        self
    }

    /// An embedded message built by `f`.
    pub fn message(&mut self, tag: u32, f: impl FnOnce(&mut Writer)) -> &mut Self {
        let mut w = Writer::default();
        f(&mut w);
        self.bytes(tag, &w.0)
    }
}

#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32,
}

fn varint(b: &[u8]) -> Result<(u64, usize), ProtoError> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(ProtoError::Malformed("truncated varint"))
}

/// Iterates over a message's (field number, value) pairs.
struct Reader<'a>(&'a [u8]);

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u32, Wire<'a>), ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let r = (|| {
            let (key, used) = varint(self.0)?;
            let mut rest = &self.0[used..];
            let tag = u32::try_from(key >> 3).map_err(|_| ProtoError::Malformed("bad tag"))?;
            if tag == 0 {
                return Err(ProtoError::Malformed("field number 0"));
            }
            let wire = match key & 7 {
                0 => {
                    let (v, used) = varint(rest)?;
                    rest = &rest[used..];
                    Wire::Varint(v)
                }
                1 => {
                    let b: [u8; 8] = rest
                        .get(..8)
                        .and_then(|s| s.try_into().ok())
                        .ok_or(ProtoError::Malformed("truncated fixed64"))?;
                    rest = &rest[8..];
                    Wire::Fixed64(u64::from_le_bytes(b))
                }
                2 => {
                    let (len, used) = varint(rest)?;
                    let len = usize::try_from(len)
                        .map_err(|_| ProtoError::Malformed("length overflows"))?;
                    let body = rest
                        .get(used..used.saturating_add(len))
                        .ok_or(ProtoError::Malformed("truncated length-delimited field"))?;
                    rest = &rest[used + len..];
                    Wire::Len(body)
                }
                5 => {
                    let b: [u8; 4] = rest
                        .get(..4)
                        .and_then(|s| s.try_into().ok())
                        .ok_or(ProtoError::Malformed("truncated fixed32"))?;
                    rest = &rest[4..];
                    {
                        let _ = b;
                        Wire::Fixed32
                    }
                }
                _ => return Err(ProtoError::Malformed("unsupported wire type")),
            };
            self.0 = rest;
            Ok((tag, wire))
        })();
        if r.is_err() {
            self.0 = &[];
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // go-to-protobuf writes zero-valued non-pointer fields, so these helpers always write.
    fn len(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(tag, body);
        w.0
    }
    fn num(tag: u32, v: u64) -> Vec<u8> {
        let mut w = Writer::default();
        w.key(tag, 0);
        w.varint(v);
        w.0
    }
    fn envelope_of(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [len(1, api_version.as_bytes()), len(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            len(1, &tm),
            len(2, raw),
            len(3, b""),
            len(4, b""),
        ]
        .concat()
    }
    fn defs(g: &str, v: &str, k: &str) -> Option<String> {
        crate::schema::schema().definition_for(g, v, k)
    }

    #[test]
    fn configmap_as_kubectl_sends_it() {
        // ObjectMeta as go-to-protobuf writes it: every non-pointer field, zero or not.
        let meta = [
            len(1, b"cm1"),
            len(2, b""),
            len(3, b""),
            num(7, 0),
            len(8, &[]), // creationTimestamp: the zero Time
            len(11, &[len(1, b"app"), len(2, b"web")].concat()),
        ]
        .concat();
        let raw = [
            len(1, &meta),
            len(2, &[len(1, b"k"), len(2, b"v")].concat()),
            len(3, &[len(1, b"bin"), len(2, &[0, 1, 2])].concat()),
        ]
        .concat();
        let obj = decode_body(&envelope_of("v1", "ConfigMap", &raw), &defs).unwrap();
        assert_eq!(
            obj,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cm1", "labels": {"app": "web"}},
                "data": {"k": "v"},
                "binaryData": {"bin": "AAEC"},
            })
        );
    }

    #[test]
    fn pointer_zero_is_kept_and_value_zero_dropped() {
        // DeploymentSpec: replicas (1, *int32) = 0 stays; minReadySeconds (5, int32) = 0 goes;
        // paused (7, bool) = false goes.
        let spec = [num(1, 0), num(5, 0), num(7, 0)].concat();
        let raw = [len(1, &len(1, b"d")), len(2, &spec), len(3, &[])].concat();
        let obj = decode_body(&envelope_of("apps/v1", "Deployment", &raw), &defs).unwrap();
        assert_eq!(obj["spec"], json!({"replicas": 0}));
        assert_eq!(obj["status"], json!({}));
    }

    #[test]
    fn special_types() {
        let ios = [num(1, 1), num(2, 0), len(3, b"http")].concat();
        let time = [num(1, 1_700_000_000), num(2, 0)].concat();
        let meta = [len(1, b"p"), len(8, &time)].concat();
        let obj = decode_message(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            &meta,
            &defs,
            0,
        )
        .unwrap();
        assert_eq!(
            obj,
            json!({"name": "p", "creationTimestamp": "2023-11-14T22:13:20Z"})
        );
        let ios_int = [num(1, 0), num(2, 8080)].concat();
        assert_eq!(
            decode_message(
                "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
                &ios_int,
                &defs,
                0
            )
            .unwrap(),
            json!(8080)
        );
        assert_eq!(
            decode_message(
                "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
                &ios,
                &defs,
                0
            )
            .unwrap(),
            json!("http")
        );
        assert_eq!(
            decode_message(
                "io.k8s.apimachinery.pkg.api.resource.Quantity",
                &len(1, b"100m"),
                &defs,
                0
            )
            .unwrap(),
            json!("100m")
        );
    }

    #[test]
    fn inline_structs_flatten() {
        // Volume{name=1, volumeSource=2{emptyDir=2{medium=1 ""}}}: JSON has no volumeSource.
        let vs = len(2, &len(1, b""));
        let vol = [len(1, b"data"), len(2, &vs)].concat();
        assert_eq!(
            decode_message("io.k8s.api.core.v1.Volume", &vol, &defs, 0).unwrap(),
            json!({"name": "data", "emptyDir": {}})
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // JSONSchemaProps.not (28) inside itself, 10k levels.
        let mut b = Vec::new();
        for _ in 0..10_000 {
            b = len(28, &b);
        }
        let def = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
        assert_eq!(
            decode_message(def, &b, &defs, 0),
            Err(ProtoError::Malformed("messages nest too deeply"))
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(decode_body(b"{}", &defs), Err(ProtoError::NoMagic));
        let truncated = [MAGIC, &[0x0a, 0x05, 0x01][..]].concat();
        assert!(matches!(
            decode_body(&truncated, &defs),
            Err(ProtoError::Malformed(_))
        ));
        let unknown = envelope_of("v1", "NoSuchKind", &[]);
        assert!(matches!(
            decode_body(&unknown, &defs),
            Err(ProtoError::UnknownKind { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let body = [MAGIC, &bytes[..]].concat();
            let _ = decode_body(&body, &defs);
            let _ = decode_message("io.k8s.api.core.v1.Pod", &bytes, &defs, 0);
        }
    }
}
