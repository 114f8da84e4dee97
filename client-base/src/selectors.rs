//! Selectors on k8s-openapi types, over the one matcher in
//! [`component_base::selectors`]: `metav1.LabelSelector` (workload selectors,
//! affinity terms), node selectors (`requiredDuringScheduling` node affinity,
//! `nodeSelectorTerms` with `matchExpressions` and `matchFields`), and taints
//! against tolerations, with upstream's semantics (`labels.SelectorFromSet`,
//! `metav1.LabelSelectorAsSelector`, `nodeaffinity`, `v1helper.TolerationsTolerateTaint`).

use std::collections::BTreeMap;

use component_base::selectors::{LabelSelector as Parsed, Op, Requirement};
use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A `metav1.LabelSelector` as a parsed selector, as upstream's
/// `LabelSelectorAsSelector`; `None` when an operator is unknown or a set operator
/// has no values (upstream refuses those: nothing matches). An empty selector
/// matches everything.
pub fn label_selector(sel: &LabelSelector) -> Option<Parsed> {
    let mut reqs = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        reqs.push(Requirement {
            key: k.clone(),
            op: Op::In(vec![v.clone()]),
        });
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default();
        let op = match e.operator.as_str() {
            "In" if !values.is_empty() => Op::In(values),
            "NotIn" if !values.is_empty() => Op::NotIn(values),
            "Exists" if values.is_empty() => Op::Exists,
            "DoesNotExist" if values.is_empty() => Op::DoesNotExist,
            _ => return None,
        };
        reqs.push(Requirement {
            key: e.key.clone(),
            op,
        });
    }
    Some(Parsed(reqs))
}

/// Whether `labels` match `sel` (an invalid selector matches nothing).
pub fn matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    label_selector(sel).is_some_and(|s| s.matches(labels))
}

/// Whether `labels` match a `map[string]string` selector (a pod's `nodeSelector`,
/// a Service's or ReplicationController's `selector`): every pair present.
pub fn matches_set(set: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    set.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn empty() -> &'static BTreeMap<String, String> {
    static EMPTY: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(BTreeMap::new)
}

/// A node's labels (empty when it has none).
pub fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    node.metadata.labels.as_ref().unwrap_or_else(|| empty())
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // Gt and Lt take exactly one integer, compared with the label's integer.
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) if r.operator == "Gt" => v > b,
                (Ok(v), Ok(b)) => v < b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether one node selector term matches: every expression on the labels and
/// every field requirement (only `metadata.name`, with In or NotIn) hold. A term
/// with neither matches nothing, as upstream's.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = name.to_owned();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(&name))
        })
}

/// Whether `node` matches a node selector: any of its terms.
pub fn node_selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let labels = node_labels(node);
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, name))
}

/// Whether `toleration` tolerates `taint`, as upstream's `ToleratesTaint`: an
/// empty effect tolerates every effect, an empty key with `Exists` every key;
/// `Exists` ignores the value, `Equal` (the default) compares it.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// The first of `taints` (filtered by `relevant`) that no toleration tolerates,
/// as upstream's `FindMatchingUntoleratedTaint`.
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    relevant: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| relevant(t))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_selectors_as_upstream() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(matches(&sel, &labels(&[("app", "web")])));
        assert!(!matches(&sel, &labels(&[("app", "web"), ("tier", "db")])));
        assert!(
            matches(&LabelSelector::default(), &labels(&[])),
            "empty matches all"
        );
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "In".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(
            !matches(&bad, &labels(&[("a", "b")])),
            "In without values selects nothing"
        );
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn node_selector_terms() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let t = |exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm {
                match_expressions: Some(exprs),
                match_fields: Some(fields),
            }
        };
        assert!(term_matches(
            &t(vec![req("zone", "In", &["a", "b"])], vec![]),
            &l,
            "n1"
        ));
        assert!(term_matches(
            &t(vec![req("cores", "Gt", &["4"])], vec![]),
            &l,
            "n1"
        ));
        assert!(!term_matches(
            &t(vec![req("cores", "Lt", &["4"])], vec![]),
            &l,
            "n1"
        ));
        assert!(!term_matches(
            &t(vec![req("cores", "Gt", &["x"])], vec![]),
            &l,
            "n1"
        ));
        assert!(term_matches(
            &t(vec![req("gpu", "DoesNotExist", &[])], vec![]),
            &l,
            "n1"
        ));
        assert!(term_matches(
            &t(vec![], vec![req("metadata.name", "In", &["n1"])]),
            &l,
            "n1"
        ));
        assert!(!term_matches(
            &t(vec![], vec![req("metadata.name", "In", &["n1"])]),
            &l,
            "n2"
        ));
        assert!(
            !term_matches(&t(vec![], vec![]), &l, "n1"),
            "an empty term matches nothing"
        );
    }

    #[test]
    fn tolerations_as_upstream() {
        let taint = Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        let exists_all = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&exists_all, &taint));
        let wrong_effect = Toleration {
            key: Some(taint.key.clone()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        };
        assert!(!tolerates(&wrong_effect, &taint));
        let equal_empty = Toleration {
            key: Some(taint.key.clone()),
            ..Default::default()
        };
        assert!(tolerates(&equal_empty, &taint), "Equal with an empty value");
        let t = [taint];
        assert!(untolerated_taint(&t, &[], |_| true).is_some());
        assert!(untolerated_taint(&t, &[exists_all], |_| true).is_none());
    }
}
