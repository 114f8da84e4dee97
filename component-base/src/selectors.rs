//! Label and field selectors with upstream's syntax and matching rules
//! (`k8s.io/apimachinery/pkg/labels` and `pkg/fields`).
//!
//! Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
//! `a>1`, `a<1`, joined by commas. Field selectors: `k=v`, `k==v`, `k!=v`, with `\`
//! escaping `,`, `=` and `\` in values.

use std::collections::BTreeMap;

use serde_json::Value;

/// A label-selector operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=` or `==`, or `in` with its set.
    In(Vec<String>),
    /// `!=` or `notin`.
    NotIn(Vec<String>),
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>n`.
    Gt(i64),
    /// `key<n`.
    Lt(i64),
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The operator and its values.
    pub op: Op,
}

/// A parsed label selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

/// A selector that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SelectorError(pub String);

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Op(&'static str),
    Comma,
    Open,
    Close,
    End,
}

impl Lexer<'_> {
    fn next(&mut self) -> Tok {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Tok::End;
        }
        let rest = &self.s[self.i..];
        for op in ["==", "!=", "=", ">", "<", "!"] {
            if rest.starts_with(op.as_bytes()) {
                self.i += op.len();
                return Tok::Op(op);
            }
        }
        match rest[0] {
            b',' => {
                self.i += 1;
                return Tok::Comma;
            }
            b'(' => {
                self.i += 1;
                return Tok::Open;
            }
            b')' => {
                self.i += 1;
                return Tok::Close;
            }
            _ => {}
        }
        let start = self.i;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if c.is_ascii_whitespace() || b",()=!<>".contains(&c) {
                break;
            }
            self.i += 1;
        }
        Tok::Ident(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn peek(&mut self) -> Tok {
        let save = self.i;
        let t = self.next();
        self.i = save;
        t
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => s.clone(),
        Tok::Op(o) => (*o).to_owned(),
        Tok::Comma => ",".into(),
        Tok::Open => "(".into(),
        Tok::Close => ")".into(),
        Tok::End => String::new(),
    }
}

/// Validates a label key as upstream's `validateLabelKey` (qualified name).
fn check_key(k: &str) -> Result<(), SelectorError> {
    if crate::validation::qualified_name_errors(k).is_empty() {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "unable to parse requirement: {}",
            crate::validation::qualified_name_errors(k).join("; ")
        )))
    }
}

fn check_value(v: &str) -> Result<(), SelectorError> {
    let errs = crate::validation::label_value_errors(v);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "unable to parse requirement: values[0][{v}]: Invalid value: {v:?}: {}",
            errs.join("; ")
        )))
    }
}

impl LabelSelector {
    /// Parses a label selector.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut lx = Lexer {
            s: s.as_bytes(),
            i: 0,
        };
        let mut reqs = Vec::new();
        if lx.peek() == Tok::End {
            return Ok(Self(reqs));
        }
        loop {
            let req = match lx.next() {
                Tok::Op("!") => match lx.next() {
                    Tok::Ident(k) => {
                        check_key(&k)?;
                        Requirement {
                            key: k,
                            op: Op::DoesNotExist,
                        }
                    }
                    t => {
                        return Err(SelectorError(format!(
                            "found '{}', expected: identifier",
                            tok_text(&t)
                        )));
                    }
                },
                Tok::Ident(k) => {
                    check_key(&k)?;
                    match lx.peek() {
                        Tok::End | Tok::Comma => Requirement {
                            key: k,
                            op: Op::Exists,
                        },
                        _ => {
                            let op = lx.next();
                            let op = match op {
                                Tok::Op("=" | "==") => Op::In(vec![single(&mut lx)?]),
                                Tok::Op("!=") => Op::NotIn(vec![single(&mut lx)?]),
                                Tok::Op(">") | Tok::Op("<") => {
                                    let v = single(&mut lx)?;
                                    let n: i64 = v.parse().map_err(|_| {
                                        SelectorError("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer".to_owned())
                                    })?;
                                    if op == Tok::Op(">") {
                                        Op::Gt(n)
                                    } else {
                                        Op::Lt(n)
                                    }
                                }
                                Tok::Ident(w) if w == "in" => Op::In(set(&mut lx)?),
                                Tok::Ident(w) if w == "notin" => Op::NotIn(set(&mut lx)?),
                                t => {
                                    return Err(SelectorError(format!(
                                        "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                                        tok_text(&t)
                                    )));
                                }
                            };
                            Requirement { key: k, op }
                        }
                    }
                }
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        tok_text(&t)
                    )));
                }
            };
            reqs.push(req);
            match lx.next() {
                Tok::End => break,
                Tok::Comma => {}
                t => {
                    return Err(SelectorError(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        tok_text(&t)
                    )));
                }
            }
        }
        Ok(Self(reqs))
    }

    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`) as a
    /// selector; an unknown operator selects nothing, as upstream refuses it.
    pub fn from_meta(sel: &Value) -> Self {
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::In(vec![v.as_str().unwrap_or("").to_owned()]),
                });
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let vals: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                    "In" => Op::In(vals),
                    "NotIn" => Op::NotIn(vals),
                    "Exists" => Op::Exists,
                    "DoesNotExist" => Op::DoesNotExist,
                    _ => Op::In(Vec::new()),
                };
                reqs.push(Requirement { key, op });
            }
        }
        Self(reqs)
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| {
            let v = labels.get(&r.key);
            match &r.op {
                Op::In(set) => v.is_some_and(|v| set.contains(v)),
                Op::NotIn(set) => v.is_none_or(|v| !set.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                Op::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether it matches an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.matches(&labels_of(obj))
    }
}

/// An object's labels.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn single(lx: &mut Lexer<'_>) -> Result<String, SelectorError> {
    match lx.peek() {
        Tok::Ident(v) => {
            lx.next();
            check_value(&v)?;
            Ok(v)
        }
        // `a=` selects the empty value.
        Tok::End | Tok::Comma => Ok(String::new()),
        t => Err(SelectorError(format!(
            "found '{}', expected: identifier",
            tok_text(&t)
        ))),
    }
}

fn set(lx: &mut Lexer<'_>) -> Result<Vec<String>, SelectorError> {
    match lx.next() {
        Tok::Open => {}
        t => {
            return Err(SelectorError(format!(
                "unable to parse requirement: found '{}', expected: '('",
                tok_text(&t)
            )));
        }
    }
    let mut out = Vec::new();
    loop {
        match lx.next() {
            Tok::Ident(v) => {
                check_value(&v)?;
                out.push(v);
                match lx.next() {
                    Tok::Comma => {}
                    Tok::Close => break,
                    t => {
                        return Err(SelectorError(format!(
                            "found '{}', expected: ',' or ')'",
                            tok_text(&t)
                        )));
                    }
                }
            }
            Tok::Close => {
                out.push(String::new());
                break;
            }
            Tok::Comma => out.push(String::new()),
            t => {
                return Err(SelectorError(format!(
                    "found '{}', expected: ',', ')' or identifier",
                    tok_text(&t)
                )));
            }
        }
    }
    Ok(out)
}

/// One field requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, e.g. `spec.nodeName`.
    pub field: String,
    /// The value.
    pub value: String,
    /// `!=` rather than `=`.
    pub negate: bool,
}

/// A parsed field selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    /// Parses a field selector.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut out = Vec::new();
        if s.is_empty() {
            return Ok(Self(out));
        }
        for term in split_unescaped(s, ',') {
            let (field, value, negate) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], &term[i + 2..], true)
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], &term[i + 2..], false)
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], &term[i + 1..], false)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            out.push(FieldRequirement {
                field: field.to_owned(),
                value: unescape(value)
                    .map_err(|e| SelectorError(format!("invalid selector: '{s}'; {e}")))?,
                negate,
            });
        }
        Ok(Self(out))
    }

    /// Whether the fields of an object satisfy every requirement. `get` returns the
    /// value of a field label for the object.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| {
            let v = get(&r.field).unwrap_or_default();
            (v == r.value) != r.negate
        })
    }

    /// The value required by an `=` term on `field`, if any (used to narrow reads).
    pub fn required(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.field == field && !r.negate)
            .map(|r| r.value.as_str())
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            cur.push('\\');
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if esc {
        cur.push('\\');
    }
    out.push(cur);
    out
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        if s[i..].starts_with(pat) {
            return Some(i);
        }
    }
    None
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence: \\{e}")),
                None => return Err("unterminated escape sequence".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("missing!=x", true),
            ("n>4", true),
            ("n<5", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("app in (db)", false),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&l),
                want,
                "{sel}"
            );
        }
    }

    #[test]
    fn label_errors() {
        for bad in [
            "app in",
            "app in (a",
            "=x",
            "app=web,",
            "a b",
            "-bad=x",
            "a>x",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
        let get = |f: &str| match f {
            "spec.nodeName" => Some("n1".to_owned()),
            "status.phase" => Some("Running".to_owned()),
            _ => None,
        };
        assert!(s.matches(get));
        let e = FieldSelector::parse("metadata.name=a\\,b").unwrap();
        assert_eq!(e.0[0].value, "a,b");
        assert!(FieldSelector::parse("nonsense").is_err());
        assert!(FieldSelector::parse("a=\\x").is_err());
    }

    proptest! {
        #[test]
        fn label_parser_never_panics(s in "\\PC{0,40}") {
            let _ = LabelSelector::parse(&s);
        }

        #[test]
        fn field_parser_never_panics(s in "\\PC{0,40}") {
            let _ = FieldSelector::parse(&s);
        }

        #[test]
        fn equality_selector_matches_its_own_label(
            k in "[a-z]([a-z0-9-]{0,10}[a-z0-9])?",
            v in "[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?",
        ) {
            let sel = LabelSelector::parse(&format!("{k}={v}")).unwrap();
            prop_assert!(sel.matches(&labels(&[(&k, &v)])));
            prop_assert!(!sel.matches(&labels(&[])));
            let neg = LabelSelector::parse(&format!("{k}!={v}")).unwrap();
            prop_assert!(!neg.matches(&labels(&[(&k, &v)])));
        }

        #[test]
        fn escaped_field_values_round_trip(v in "[a-z,=\\\\]{0,12}") {
            let esc = v.replace('\\', "\\\\").replace(',', "\\,").replace('=', "\\=");
            let s = FieldSelector::parse(&format!("metadata.name={esc}")).unwrap();
            prop_assert_eq!(&s.0[0].value, &v);
        }
    }
}
