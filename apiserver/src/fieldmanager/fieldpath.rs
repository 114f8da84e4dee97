//! Field paths and sets of them, as structured-merge-diff's `fieldpath` package
//! defines them: a path element names a struct field or map key (`f:`), an
//! associative-list item by its keys (`k:`), a set item by its value (`v:`) or an
//! atomic-list item by index (`i:`). A [`Set`] is a tree: the members at each level,
//! and the children under each element. Its JSON form is `fieldsV1`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// One step into a value.
#[derive(Clone, Debug)]
pub enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// An associative-list item, by its key fields (sorted by name).
    Key(Vec<(String, Value)>),
    /// A set item, by its value.
    Value(Value),
    /// An item of a list without keys, by position.
    Index(usize),
}

/// A path from the root of an object.
pub type Path = Vec<PathElement>;

fn kind_rank(v: &Value) -> u8 {
    // structured-merge-diff's total order: numbers, strings, booleans, lists, maps, null.
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

/// structured-merge-diff's `value.Compare`: a total order over JSON values, with
/// integers and floats compared numerically.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => {
                let (f, g) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                f.partial_cmp(&g).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((ka, va), (kb, vb)) in xs.iter().zip(&ys) {
                let c = ka.cmp(kb).then_with(|| compare_values(va, vb));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => kind_rank(a).cmp(&kind_rank(b)),
    }
}

/// Equality as structured-merge-diff sees it (numbers numerically).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        use PathElement::*;
        let rank = |p: &PathElement| match p {
            Field(_) => 0,
            Key(_) => 1,
            Value(_) => 2,
            Index(_) => 3,
        };
        match (self, other) {
            (Field(a), Field(b)) => a.cmp(b),
            (Key(a), Key(b)) => {
                for ((na, va), (nb, vb)) in a.iter().zip(b) {
                    let c = na.cmp(nb).then_with(|| compare_values(va, vb));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Value(a), Value(b)) => compare_values(a, b),
            (Index(a), Index(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

/// structured-merge-diff's `value.ToString`, used in human-readable paths.
fn value_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => go_quote(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(value_string).collect::<Vec<_>>().join(",")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}={}", value_string(v)))
                .collect::<Vec<_>>()
                .join(";")
        ),
        other => other.to_string(),
    }
}

/// Go's `%q` for the strings that occur in keys (printable text is kept as is).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(kv) => {
                let parts: Vec<String> = kv
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", value_string(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="app"].image`.
pub fn path_string(p: &[PathElement]) -> String {
    p.iter().map(ToString::to_string).collect()
}

/// JSON as Go's encoder writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped.
fn go_json(v: &Value) -> String {
    let s = v.to_string();
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

impl PathElement {
    /// The `fieldsV1` key: `f:name`, `k:{"name":"app"}`, `v:"x"`, `i:0`.
    pub fn serialize(&self) -> String {
        match self {
            PathElement::Field(n) => format!("f:{n}"),
            PathElement::Key(kv) => {
                let fields: Vec<String> = kv
                    .iter()
                    .map(|(k, v)| format!("{}:{}", go_json(&Value::String(k.clone())), go_json(v)))
                    .collect();
                format!("k:{{{}}}", fields.join(","))
            }
            PathElement::Value(v) => format!("v:{}", go_json(v)),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `fieldsV1` key.
    pub fn deserialize(s: &str) -> Result<PathElement, String> {
        if s.len() < 2 {
            return Err("key must be 2 characters long".into());
        }
        let (ty, rest) = s.split_at(2);
        match ty {
            "f:" => Ok(PathElement::Field(rest.to_owned())),
            "v:" => serde_json::from_str(rest)
                .map(PathElement::Value)
                .map_err(|e| e.to_string()),
            "k:" => {
                let v: serde_json::Map<String, Value> =
                    serde_json::from_str(rest).map_err(|e| e.to_string())?;
                let mut kv: Vec<(String, Value)> = v.into_iter().collect();
                kv.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(PathElement::Key(kv))
            }
            "i:" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|e: std::num::ParseIntError| e.to_string()),
            _ if !ty.ends_with(':') => Err(format!("missing colon: {s}")),
            _ => Err("unknown path element type".into()),
        }
    }
}

/// A set of paths, as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    /// The empty set.
    pub fn new() -> Self {
        Set::default()
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    /// Adds `path` (the empty path is not a member of anything and is ignored).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The members under `pe`, without `pe` itself.
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe).filter(|c| !c.is_empty())
    }

    fn normalized(mut self) -> Self {
        self.children.retain(|_, c| !c.is_empty());
        self
    }

    /// Paths in either set.
    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out.normalized()
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| {
                other
                    .children
                    .get(pe)
                    .map(|o| (pe.clone(), c.intersection(o)))
            })
            .collect();
        Set { members, children }.normalized()
    }

    /// Paths in `self` but not in `other`.
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .map(|(pe, c)| match other.children.get(pe) {
                Some(o) => (pe.clone(), c.difference(o)),
                None => (pe.clone(), c.clone()),
            })
            .collect();
        Set { members, children }.normalized()
    }

    /// Paths in `self` none of whose prefixes (nor themselves) are members of `other`.
    pub fn recursive_difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(pe, _)| !other.members.contains(*pe))
            .map(|(pe, c)| match other.children.get(pe) {
                Some(o) => (pe.clone(), c.recursive_difference(o)),
                None => (pe.clone(), c.clone()),
            })
            .collect();
        Set { members, children }.normalized()
    }

    /// Calls `f` with every member path: each level's members first, then its
    /// children in order (upstream's `Set.Iterate`).
    pub fn iterate(&self, f: &mut impl FnMut(&[PathElement])) {
        let mut prefix = Vec::new();
        self.iterate_prefix(&mut prefix, f);
    }

    fn iterate_prefix(&self, prefix: &mut Path, f: &mut impl FnMut(&[PathElement])) {
        for m in &self.members {
            prefix.push(m.clone());
            f(prefix);
            prefix.pop();
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.iterate_prefix(prefix, f);
            prefix.pop();
        }
    }

    /// The level's own members.
    pub(crate) fn members(&self) -> &BTreeSet<PathElement> {
        &self.members
    }

    /// The level's children.
    pub(crate) fn children(&self) -> &BTreeMap<PathElement, Set> {
        &self.children
    }

    /// Builds a set from one level's parts.
    pub(crate) fn from_parts(
        members: BTreeSet<PathElement>,
        children: BTreeMap<PathElement, Set>,
    ) -> Set {
        Set { members, children }.normalized()
    }

    /// The `fieldsV1` JSON text, in upstream's order: `.` first, then members and
    /// children interleaved in path-element order.
    pub fn to_fields_v1(&self) -> String {
        let mut out = String::new();
        self.emit(false, &mut out);
        out
    }

    fn emit(&self, include_self: bool, out: &mut String) {
        out.push('{');
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push(',');
            }
            first = false;
        };
        if include_self {
            sep(out);
            out.push_str("\".\":{}");
        }
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            sep(out);
            out.push_str(&go_json(&Value::String(pe.serialize())));
            out.push(':');
            match self.children.get(pe) {
                Some(c) if !c.is_empty() => c.emit(self.members.contains(pe), out),
                _ => out.push_str("{}"),
            }
        }
        out.push('}');
    }

    /// Parses `fieldsV1`.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let (set, _) = Self::parse_level(v)?;
        Ok(set)
    }

    /// One level: the set below, and whether `.` marked the parent a member.
    fn parse_level(v: &Value) -> Result<(Set, bool), String> {
        let Some(m) = v.as_object() else {
            return Err(format!("expected an object, got {v}"));
        };
        let mut set = Set::new();
        let mut is_member = false;
        for (k, child) in m {
            if k == "." {
                is_member = true;
                continue;
            }
            let pe = PathElement::deserialize(k)?;
            let (sub, member) = Self::parse_level(child)?;
            let leaf = child.as_object().is_some_and(serde_json::Map::is_empty);
            if member || leaf {
                set.members.insert(pe.clone());
            }
            if !sub.is_empty() {
                set.children.insert(pe, sub);
            }
        }
        Ok((set, is_member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn fields_v1_round_trip_in_upstream_order() {
        let text = r#"{"f:data":{".":{},"f:a":{},"f:b":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}},"f:finalizers":{"v:\"a\"":{}}}}"#;
        let set = Set::from_fields_v1(&serde_json::from_str(text).unwrap()).unwrap();
        assert!(set.has(&[f("data")]));
        assert!(set.has(&[f("data"), f("a")]));
        assert!(!set.has(&[f("metadata")]));
        assert_eq!(set.to_fields_v1(), text);
    }

    #[test]
    fn key_elements_order_numerically_and_print_like_upstream() {
        let k = |p: i64| PathElement::Key(vec![("port".into(), json!(p))]);
        assert!(k(80) < k(8080));
        assert!(f("z") < k(1));
        let pe = PathElement::Key(vec![
            ("containerPort".into(), json!(80)),
            ("protocol".into(), json!("TCP")),
        ]);
        assert_eq!(
            path_string(&[f("spec"), f("ports"), pe.clone(), f("name")]),
            ".spec.ports[containerPort=80,protocol=\"TCP\"].name"
        );
        assert_eq!(
            pe.serialize(),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
        );
        assert_eq!(PathElement::deserialize(&pe.serialize()).unwrap(), pe);
        assert_eq!(
            PathElement::Value(json!("a<b")).serialize(),
            "v:\"a\\u003cb\""
        );
        assert_eq!(
            path_string(&[f("f"), PathElement::Value(json!("x"))]),
            ".f[=\"x\"]"
        );
    }

    #[test]
    fn set_algebra() {
        let mut a = Set::new();
        a.insert(&[f("a"), f("b")]);
        a.insert(&[f("a")]);
        a.insert(&[f("c")]);
        let mut b = Set::new();
        b.insert(&[f("a"), f("b")]);
        assert_eq!(a.intersection(&b), b);
        let d = a.difference(&b);
        assert!(d.has(&[f("a")]) && d.has(&[f("c")]) && !d.has(&[f("a"), f("b")]));
        assert_eq!(d.union(&b), a);
        let mut only_a = Set::new();
        only_a.insert(&[f("a")]);
        let r = a.recursive_difference(&only_a);
        assert!(r.has(&[f("c")]) && !r.has(&[f("a"), f("b")]));
        let mut seen = Vec::new();
        a.iterate(&mut |p| seen.push(path_string(p)));
        assert_eq!(seen, vec![".a", ".c", ".a.b"]);
    }

    #[test]
    fn bad_fields_v1_is_an_error() {
        assert!(Set::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"f": {}})).is_err());
        assert!(Set::from_fields_v1(&json!([])).is_err());
    }
}
