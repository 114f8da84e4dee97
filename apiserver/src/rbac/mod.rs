//! RBAC: Roles and ClusterRoles hold rules; RoleBindings and ClusterRoleBindings grant
//! them to users, groups and service accounts.
//!
//! - [`Rbac`] is the authorizer: it walks the ClusterRoleBindings, then the
//!   RoleBindings of the request's namespace, and allows on the first rule that
//!   matches, as upstream's `RBACAuthorizer` (with its `RBAC: allowed by ...`
//!   reasons and its `RBAC: ... not found` resolution errors).
//! - [`covers`] and [`Rbac::confirm_no_escalation`] are the escalation check: nobody
//!   writes a role or binding granting more than they hold, unless they may
//!   `escalate` (roles) or `bind` (bindings).
//! - [`bootstrap`] is upstream's bootstrap policy, created and reconciled at start.
//!
//! Roles and bindings are read through [`RbacSource`]: the watch caches in the server,
//! plain vectors in tests.

pub mod bootstrap;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::authz::{Attributes, Decision};
use crate::catalog::catalog;
use crate::registry::Registry;

/// Where roles and bindings come from.
pub trait RbacSource: Send + Sync {
    /// Every ClusterRoleBinding.
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>>;
    /// The RoleBindings of one namespace.
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>>;
    /// One ClusterRole.
    fn cluster_role(&self, name: &str) -> Option<Arc<Value>>;
    /// One Role.
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>>;
}

/// The registry's watch caches as an [`RbacSource`].
pub struct CacheSource {
    caches: [Option<Arc<crate::cache::WatchCache>>; 4],
    keys: [String; 4],
}

impl CacheSource {
    /// Reads from `registry`'s caches.
    pub fn new(registry: &Registry) -> CacheSource {
        let res = |p: &str| {
            catalog()
                .get("rbac.authorization.k8s.io", "v1", p)
                .expect("rbac resource")
        };
        let plurals = [
            "clusterrolebindings",
            "rolebindings",
            "clusterroles",
            "roles",
        ];
        CacheSource {
            caches: plurals.map(|p| registry.cache(res(p))),
            keys: plurals.map(|p| registry.collection(res(p), None)),
        }
    }
    fn list(&self, i: usize, sub: &str) -> Vec<Arc<Value>> {
        self.caches[i]
            .as_ref()
            .map(|c| c.snapshot(sub).0)
            .unwrap_or_default()
    }
    fn get(&self, i: usize, key: &str) -> Option<Arc<Value>> {
        self.caches[i]
            .as_ref()
            .and_then(|c| c.get(&format!("{}{key}", self.keys[i])))
    }
}

impl RbacSource for CacheSource {
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>> {
        self.list(0, "")
    }
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>> {
        self.list(1, &format!("{namespace}/"))
    }
    fn cluster_role(&self, name: &str) -> Option<Arc<Value>> {
        self.get(2, name)
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.get(3, &format!("{namespace}/{name}"))
    }
}

fn has_or_star(v: &Value, key: &str, want: &str) -> bool {
    v.get(key)
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(want) || x == "*"))
}

/// Whether a non-resource URL pattern (`/healthz`, `/api/*`, `*`) matches `path`.
fn url_matches(pattern: &str, path: &str) -> bool {
    pattern == "*"
        || pattern == path
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// Whether one PolicyRule allows the request, as upstream's `RuleAllows`.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !has_or_star(rule, "verbs", &a.verb) {
        return false;
    }
    if !a.resource_request {
        return rule
            .get("nonResourceURLs")
            .and_then(Value::as_array)
            .is_some_and(|u| {
                u.iter()
                    .filter_map(Value::as_str)
                    .any(|p| url_matches(p, &a.path))
            });
    }
    if !has_or_star(rule, "apiGroups", &a.group) {
        return false;
    }
    let resources = crate::meta::strings(rule, "resources");
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
    });
    if !resource_ok {
        return false;
    }
    let names = crate::meta::strings(rule, "resourceNames");
    names.is_empty() || names.contains(&a.name)
}

/// Whether a binding subject is `user`, as upstream's `appliesToUser`.
fn applies_to(subject: &Value, user: &UserInfo, binding_namespace: &str) -> bool {
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match subject.get("kind").and_then(Value::as_str).unwrap_or("") {
        "User" => user.name == name,
        "Group" => user.in_group(name),
        "ServiceAccount" => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// A subject as upstream's `describeSubject` prints it.
fn describe_subject(s: &Value, binding_namespace: &str) -> String {
    let kind = s.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = s.get("name").and_then(Value::as_str).unwrap_or("");
    if kind == "ServiceAccount" {
        let ns = s
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_namespace);
        format!("{kind} {:?}", format!("{ns}/{name}"))
    } else {
        format!("{kind} {name:?}")
    }
}

/// The RBAC authorizer.
pub struct Rbac {
    source: Box<dyn RbacSource>,
}

/// One binding's grant, as the visitor sees it.
struct Grant<'a> {
    binding: &'a Value,
    subject: &'a Value,
    rules: Vec<Value>,
}

impl Rbac {
    /// Reads roles and bindings from `source`.
    pub fn new(source: Box<dyn RbacSource>) -> Rbac {
        Rbac { source }
    }

    fn role_rules(&self, binding: &Value, namespace: &str) -> Result<Vec<Value>, String> {
        let kind = binding
            .pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = binding
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let role = match kind {
            "ClusterRole" => self.source.cluster_role(name).ok_or_else(|| {
                format!("clusterrole.rbac.authorization.k8s.io {name:?} not found")
            })?,
            "Role" => self
                .source
                .role(namespace, name)
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {name:?} not found"))?,
            other => return Err(format!("unsupported role reference kind: {other:?}")),
        };
        Ok(role
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Visits every rule granted to `user` in `namespace` (cluster-wide ones first);
    /// `visit` returns true to stop. Returns the resolution errors met.
    fn visit(
        &self,
        user: &UserInfo,
        namespace: &str,
        mut visit: impl FnMut(&Grant<'_>, &Value) -> bool,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let mut walk = |bindings: Vec<Arc<Value>>, ns: &str, errors: &mut Vec<String>| -> bool {
            for b in &bindings {
                let Some(subject) = b
                    .get("subjects")
                    .and_then(Value::as_array)
                    .and_then(|s| s.iter().find(|s| applies_to(s, user, ns)))
                else {
                    continue;
                };
                match self.role_rules(b, ns) {
                    Ok(rules) => {
                        let g = Grant {
                            binding: b,
                            subject,
                            rules,
                        };
                        for r in &g.rules {
                            if visit(&g, r) {
                                return true;
                            }
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            false
        };
        if walk(self.source.cluster_role_bindings(), "", &mut errors) {
            return errors;
        }
        if !namespace.is_empty() {
            walk(self.source.role_bindings(namespace), namespace, &mut errors);
        }
        errors
    }

    /// Decides a request: allowed by a rule, or no opinion.
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        let mut allowed = None;
        let errors = self.visit(user, &a.namespace, |g, rule| {
            if !rule_allows(rule, a) {
                return false;
            }
            let b = g.binding;
            let ns = crate::meta::namespace(b);
            let bkind = if ns.is_empty() {
                format!("ClusterRoleBinding {:?}", crate::meta::name(b))
            } else {
                format!("RoleBinding {:?}", format!("{ns}/{}", crate::meta::name(b)))
            };
            let rkind = b
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let rname = b
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            allowed = Some(format!(
                "RBAC: allowed by {bkind} of {rkind} {rname:?} to {}",
                describe_subject(g.subject, ns)
            ));
            true
        });
        match allowed {
            Some(reason) => Decision::Allow(reason),
            None if errors.is_empty() => Decision::NoOpinion(String::new()),
            None => Decision::NoOpinion(format!("RBAC: {}", errors.join(", "))),
        }
    }

    /// Every rule `user` holds in `namespace`: (resource rules, non-resource rules,
    /// resolution errors), as `SelfSubjectRulesReview` lists them.
    pub fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> (Vec<Value>, Vec<Value>, Vec<String>) {
        let mut res = Vec::new();
        let mut non = Vec::new();
        let errors = self.visit(user, namespace, |_, r| {
            if r.get("nonResourceURLs")
                .and_then(Value::as_array)
                .is_some_and(|u| !u.is_empty())
            {
                non.push(
                    json!({"verbs": r.get("verbs").cloned().unwrap_or(json!([])),
                    "nonResourceURLs": r["nonResourceURLs"].clone()}),
                );
            } else {
                let mut o = json!({"verbs": r.get("verbs").cloned().unwrap_or(json!([]))});
                for k in ["apiGroups", "resources", "resourceNames"] {
                    if let Some(v) = r
                        .get(k)
                        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
                    {
                        o[k] = v.clone();
                    }
                }
                res.push(o);
            }
            false
        });
        (res, non, errors)
    }

    /// Refuses `rules` unless `user` holds every one of them in `namespace` ("" for
    /// cluster-wide), as upstream's `ConfirmNoEscalation`: the message lists what is
    /// missing.
    pub fn confirm_no_escalation(
        &self,
        user: &UserInfo,
        namespace: &str,
        rules: &[Value],
    ) -> Result<(), String> {
        let (mut owned, errors) = self.rules_for_covering(user, namespace);
        if user.in_group(crate::authz::MASTERS) {
            owned.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
            owned.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
        }
        let missing = uncovered(&owned, rules);
        if missing.is_empty() {
            return Ok(());
        }
        let mut msg = format!(
            "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            go_quoted(&user.groups),
            missing.iter().map(compact).collect::<Vec<_>>().join("\n")
        );
        if !errors.is_empty() {
            msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
        }
        Err(msg)
    }

    /// The raw rules (as stored) `user` holds in `namespace`, and resolution errors.
    fn rules_for_covering(&self, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<String>) {
        let mut out = Vec::new();
        let errors = self.visit(user, namespace, |_, r| {
            out.push(r.clone());
            false
        });
        (out, errors)
    }
}

/// The escalation check on writes of roles and bindings, as upstream's `policybased`
/// storage: members of `system:masters` and users allowed to `escalate` (roles) or
/// `bind` (the referenced role) pass; everyone else may only write what they hold.
/// Updates that leave the rules (or the roleRef and subjects) alone pass.
pub fn confirm_write(
    api: &crate::api::Api,
    user: &UserInfo,
    res: &crate::catalog::Resource,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), crate::error::ApiError> {
    if res.group != "rbac.authorization.k8s.io" || user.in_group(crate::authz::MASTERS) {
        return Ok(());
    }
    let name = crate::meta::name(obj);
    let ns = crate::meta::namespace(obj);
    let forbidden = |message: String| crate::error::ApiError::Forbidden {
        resource: Some(res.gr()),
        name: name.to_owned(),
        message: format!("{} {name:?} is forbidden: {message}", res.gr()),
    };
    let authz = &api.authorizer;
    let rules: Vec<Value> = match res.kind {
        "Role" | "ClusterRole" => {
            if old.is_some_and(|o| only_gc_fields_changed(o, obj)) {
                return Ok(());
            }
            let escalate = Attributes::resource("escalate", res.group, res.plural, ns, name);
            if authz.authorize(user, &escalate).allowed() {
                return Ok(());
            }
            if obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                return Err(forbidden(
                    "must have cluster-admin privileges to write aggregated cluster roles".into(),
                ));
            }
            obj.get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            if old.is_some_and(|o| only_gc_fields_changed(o, obj)) {
                return Ok(());
            }
            let kind = obj
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role = obj
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let plural = if kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            let bind = Attributes::resource("bind", res.group, plural, ns, role);
            if authz.authorize(user, &bind).allowed() {
                return Ok(());
            }
            let Some(rbac) = authz.rbac() else {
                return Err(forbidden(format!(
                    "user {:?} cannot bind {kind} {role:?}",
                    user.name
                )));
            };
            rbac.role_rules(obj, ns).map_err(forbidden)?
        }
        _ => return Ok(()),
    };
    match authz.rbac() {
        Some(rbac) => rbac
            .confirm_no_escalation(user, ns, &rules)
            .map_err(forbidden),
        None => Err(forbidden(format!(
            "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held",
            user.name,
            go_quoted(&user.groups)
        ))),
    }
}

/// Whether an update changes nothing but what the garbage collector writes (owner
/// references, finalizers) and server bookkeeping, as upstream's
/// `IsOnlyMutatingGCFields`: such updates skip the escalation check; any other change
/// (labels included: they feed aggregation) is checked in full.
fn only_gc_fields_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "ownerReferences",
                "finalizers",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                m.remove(k);
            }
        }
        v
    };
    strip(old) == strip(new)
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// A rule as upstream's `CompactString` prints it, each list with Go's `%q`:
/// `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`.
pub fn compact(rule: &Value) -> String {
    let mut parts = Vec::new();
    for (k, label) in [
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("resourceNames", "ResourceNames"),
        ("verbs", "Verbs"),
    ] {
        let v = crate::meta::strings(rule, k);
        if !v.is_empty() {
            parts.push(format!("{label}:{}", go_quoted(&v)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Splits a rule into rules of one verb, group, resource and name (or URL), as
/// upstream's `BreakdownRule`.
fn breakdown(rule: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let verbs = crate::meta::strings(rule, "verbs");
    for g in crate::meta::strings(rule, "apiGroups") {
        for r in crate::meta::strings(rule, "resources") {
            let names = crate::meta::strings(rule, "resourceNames");
            for v in &verbs {
                if names.is_empty() {
                    out.push(json!({"apiGroups": [g], "resources": [r], "verbs": [v]}));
                }
                for n in &names {
                    out.push(
                        json!({"apiGroups": [g], "resources": [r], "resourceNames": [n], "verbs": [v]}),
                    );
                }
            }
        }
    }
    for u in crate::meta::strings(rule, "nonResourceURLs") {
        for v in &verbs {
            out.push(json!({"nonResourceURLs": [u], "verbs": [v]}));
        }
    }
    out
}

/// Whether `owner` covers the single-valued rule `sub`, as upstream's `ruleCovers`.
fn rule_covers(owner: &Value, sub: &Value) -> bool {
    let one = |k: &str| {
        crate::meta::strings(sub, k)
            .into_iter()
            .next()
            .unwrap_or_default()
    };
    if !has_or_star(owner, "verbs", &one("verbs")) {
        return false;
    }
    let urls = crate::meta::strings(sub, "nonResourceURLs");
    if let Some(u) = urls.first() {
        return crate::meta::strings(owner, "nonResourceURLs")
            .iter()
            .any(|p| {
                p == "*" || p == u || (p.ends_with('*') && u.starts_with(p.trim_end_matches('*')))
            });
    }
    if !crate::meta::strings(owner, "nonResourceURLs").is_empty()
        && crate::meta::strings(owner, "resources").is_empty()
    {
        return false;
    }
    if !has_or_star(owner, "apiGroups", &one("apiGroups")) {
        return false;
    }
    let r = one("resources");
    let resource_ok = crate::meta::strings(owner, "resources").iter().any(|o| {
        o == "*"
            || *o == r
            || r.split_once('/')
                .is_some_and(|(_, sub)| *o == format!("*/{sub}"))
    });
    if !resource_ok {
        return false;
    }
    let names = crate::meta::strings(owner, "resourceNames");
    names.is_empty()
        || crate::meta::strings(sub, "resourceNames")
            .first()
            .is_some_and(|n| names.contains(n))
}

/// The parts of `wanted` that no rule in `owned` covers, as upstream's `Covers`.
pub fn uncovered(owned: &[Value], wanted: &[Value]) -> Vec<Value> {
    let mut missing = Vec::new();
    for w in wanted {
        for sub in breakdown(w) {
            if !owned.iter().any(|o| rule_covers(o, &sub)) && !missing.contains(&sub) {
                missing.push(sub);
            }
        }
    }
    missing
}

/// Whether every rule in `wanted` is held by `owned`.
pub fn covers(owned: &[Value], wanted: &[Value]) -> bool {
    uncovered(owned, wanted).is_empty()
}

#[cfg(test)]
mod tests;
