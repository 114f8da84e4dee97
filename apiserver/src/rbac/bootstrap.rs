//! Upstream's bootstrap RBAC policy (`bootstrap-policy.yaml`, from
//! `plugin/pkg/auth/authorizer/rbac/bootstrappolicy`) and its reconciliation at start,
//! as the `rbac/bootstrap-roles` post-start hook does:
//!
//! - a missing role or binding is created;
//! - an existing one whose `rbac.authorization.kubernetes.io/autoupdate` annotation is
//!   not `"false"` gains the rules, aggregation selectors, subjects, labels and
//!   annotations it lacks; extra permissions are never removed;
//! - a binding whose roleRef changed is deleted and recreated (roleRef is immutable).

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::api::Api;
use crate::catalog::catalog;
use crate::error::ApiError;
use crate::meta;

/// The bootstrap objects, by kind.
#[derive(Debug, Default)]
pub struct Policy {
    /// ClusterRoles.
    pub cluster_roles: Vec<Value>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<Value>,
    /// Roles (kube-system, kube-public).
    pub roles: Vec<Value>,
    /// RoleBindings.
    pub role_bindings: Vec<Value>,
}

/// The parsed policy.
pub fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let docs: Vec<Value> = serde_saphyr::from_multiple(include_str!("bootstrap-policy.yaml"))
            .expect("bootstrap-policy.yaml parses");
        let mut p = Policy::default();
        for d in docs.into_iter().filter(|d| d.is_object()) {
            match d.get("kind").and_then(Value::as_str) {
                Some("ClusterRole") => p.cluster_roles.push(d),
                Some("ClusterRoleBinding") => p.cluster_role_bindings.push(d),
                Some("Role") => p.roles.push(d),
                Some("RoleBinding") => p.role_bindings.push(d),
                _ => {}
            }
        }
        p
    })
}

/// The rules of one bootstrap ClusterRole.
pub fn cluster_role_rules(name: &str) -> Vec<Value> {
    policy()
        .cluster_roles
        .iter()
        .find(|r| meta::name(r) == name)
        .and_then(|r| r.get("rules"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Upstream's `NodeRules()`: the `system:node` ClusterRole's rules, which the Node
/// authorizer applies to every kubelet.
pub fn node_rules() -> Vec<Value> {
    cluster_role_rules("system:node")
}

fn protected(existing: &Value) -> bool {
    existing
        .pointer("/metadata/annotations/rbac.authorization.kubernetes.io~1autoupdate")
        .and_then(Value::as_str)
        == Some("false")
}

/// Adds `expected`'s labels and annotations that `existing` lacks; true if any.
fn merge_meta(existing: &mut Value, expected: &Value) -> bool {
    let mut changed = false;
    for k in ["labels", "annotations"] {
        if let Some(want) = expected
            .pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_object)
        {
            let m = &mut existing["metadata"];
            if !m.get(k).is_some_and(Value::is_object) {
                m[k] = json!({});
            }
            for (key, v) in want {
                if m[k].get(key).is_none() {
                    m[k][key] = v.clone();
                    changed = true;
                }
            }
        }
    }
    changed
}

fn array(v: &Value, ptr: &str) -> Vec<Value> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The role `existing` should become to hold `expected`, or `None` if it already does.
pub fn reconcile_role(existing: &Value, expected: &Value) -> Option<Value> {
    if protected(existing) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_meta(&mut out, expected);
    let want_sel = array(expected, "/aggregationRule/clusterRoleSelectors");
    let have_sel = array(existing, "/aggregationRule/clusterRoleSelectors");
    if !want_sel.is_empty() {
        let mut sel = have_sel.clone();
        for s in want_sel {
            if !sel.contains(&s) {
                sel.push(s);
            }
        }
        if sel != have_sel {
            out["aggregationRule"] = json!({"clusterRoleSelectors": sel});
            changed = true;
        }
    }
    // Both aggregated: the aggregation controller owns the rules.
    let aggregated = expected
        .get("aggregationRule")
        .is_some_and(|v| !v.is_null())
        && existing
            .get("aggregationRule")
            .is_some_and(|v| !v.is_null());
    if !aggregated {
        let have = array(existing, "/rules");
        let missing = super::uncovered(&have, &array(expected, "/rules"));
        if !missing.is_empty() {
            let mut rules = have;
            rules.extend(missing);
            out["rules"] = Value::Array(rules);
            changed = true;
        }
    }
    changed.then_some(out)
}

/// The binding `existing` should become to hold `expected`'s subjects, or `None`.
pub fn reconcile_binding(existing: &Value, expected: &Value) -> Option<Value> {
    if protected(existing) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_meta(&mut out, expected);
    let mut subjects = array(existing, "/subjects");
    for s in array(expected, "/subjects") {
        if !subjects.contains(&s) {
            subjects.push(s);
            changed = true;
        }
    }
    if changed {
        out["subjects"] = Value::Array(subjects);
    }
    changed.then_some(out)
}

async fn ensure_one(api: &Api, plural: &str, expected: &Value) -> Result<(), ApiError> {
    let res = catalog()
        .get("rbac.authorization.k8s.io", "v1", plural)
        .expect("rbac resource");
    let (ns, name) = (meta::namespace(expected), meta::name(expected));
    let binding = plural.ends_with("bindings");
    match api.registry.get(res, ns, name).await {
        Ok(existing) => {
            if binding
                && existing.get("roleRef") != expected.get("roleRef")
                && !protected(&existing)
            {
                tracing::info!(
                    plural,
                    name,
                    "recreating a bootstrap binding whose roleRef changed"
                );
                let rv = meta::rv(&existing).unwrap_or(0);
                api.registry.delete(res, &existing, rv).await?;
                return create(api, res, expected).await;
            }
            api.registry
                .guaranteed_update(res, ns, name, |cur| {
                    Ok(if binding {
                        reconcile_binding(&cur, expected)
                    } else {
                        reconcile_role(&cur, expected)
                    })
                })
                .await?;
            Ok(())
        }
        Err(ApiError::NotFound { .. }) => create(api, res, expected).await,
        Err(e) => Err(e),
    }
}

async fn create(
    api: &Api,
    res: &'static crate::catalog::Resource,
    expected: &Value,
) -> Result<(), ApiError> {
    let mut obj = expected.clone();
    crate::defaults::apply(res.kind, &mut obj);
    crate::strategy::prepare_for_create(res, &mut obj);
    match api.registry.create(res, &obj).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates and reconciles the whole bootstrap policy.
pub async fn reconcile(api: &Api) -> Result<(), ApiError> {
    let p = policy();
    for (plural, objs) in [
        ("clusterroles", &p.cluster_roles),
        ("clusterrolebindings", &p.cluster_role_bindings),
        ("roles", &p.roles),
        ("rolebindings", &p.role_bindings),
    ] {
        for o in objs {
            ensure_one(api, plural, o).await?;
        }
    }
    Ok(())
}
