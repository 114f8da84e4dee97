//! ValidatingAdmissionPolicy: CEL rules from ValidatingAdmissionPolicies, applied
//! through their ValidatingAdmissionPolicyBindings, as upstream's plugin
//! (admissionregistration.k8s.io/v1). Expressions are evaluated by the `cel` crate
//! (cel-rust), with its standard library and macros (`has`, `all`, `exists`,
//! `exists_one`, `map`, `filter`) and its strings and lists extensions.
//!
//! For each binding (in name order) whose policy exists:
//! - the policy's `matchConstraints` and the binding's `matchResources` must both
//!   select the request (resource rules with names, exclusions, namespace and
//!   object selectors);
//! - with a `paramKind`, the binding's `paramRef` names the parameter objects (by
//!   name or selector, in its namespace or the request's); none found is allowed or
//!   denied by `parameterNotFoundAction`; each is evaluated in turn as `params`;
//! - every `matchCondition` must be true, then every `variable` is evaluated (in
//!   order, visible as `variables.<name>`), then every `validation`;
//! - a false validation is reported by its `messageExpression`, else its `message`,
//!   else `failed expression: <expression>`, through the binding's
//!   `validationActions`: Deny refuses the request (`ValidatingAdmissionPolicy 'p'
//!   with binding 'b' denied request: ...`, reason Invalid and 422 unless the
//!   validation names another), Warn adds a `Warning` header, Audit records upstream's
//!   `validation.policy.admission.k8s.io/validation_failure` audit annotation;
//! - an expression that fails to compile or evaluate denies under `failurePolicy:
//!   Fail` (the default) and is skipped under `Ignore`.
//!
//! Expressions see `object`, `oldObject`, `request`, `params`, `namespaceObject`
//! and `variables`, as upstream's. Not yet: the `authorizer` variable, Kubernetes'
//! own CEL libraries (quantity, URL, IP, CIDR, regex `find`), type checking into
//! the policy's status, and the policy's own `auditAnnotations`. Variables are evaluated eagerly, so
//! one that fails fails the policy even when no validation uses it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::pods::{cached, cached_all};
use super::webhook::{any_rule_matches, selectors_match};
use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::catalog::catalog;
use crate::error::ApiError;

/// The plugin.
#[derive(Default)]
pub struct ValidatingAdmissionPolicy {
    env: CelEnv,
}

/// Compiles expressions once per text.
pub struct CelEnv {
    env: Arc<cel::Env>,
    programs: parking_lot::Mutex<HashMap<String, Arc<Result<cel::Program, String>>>>,
}

impl Default for CelEnv {
    fn default() -> Self {
        let mut env = cel::Env::stdlib();
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        CelEnv {
            env: Arc::new(env),
            programs: parking_lot::Mutex::new(HashMap::new()),
        }
    }
}

/// JSON as a CEL value: integers stay `int` (JSON has no unsigned type to keep).
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => n
                .as_u64()
                .map(cel::Value::UInt)
                .unwrap_or_else(|| cel::Value::Float(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<cel::objects::Key, cel::Value> = m
                .iter()
                .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// What one evaluation found.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// The policy applies (every match condition held).
    pub applies: bool,
    /// Failed validations: (message, reason, index among the validations).
    pub failures: Vec<(String, String, usize)>,
    /// An expression that could not be compiled or evaluated.
    pub error: Option<String>,
}

impl CelEnv {
    fn program(&self, expr: &str) -> Arc<Result<cel::Program, String>> {
        if let Some(p) = self.programs.lock().get(expr) {
            return p.clone();
        }
        let compiled = Arc::new(
            self.env
                .compile(expr)
                .map_err(|e| format!("compilation failed: {e}")),
        );
        self.programs
            .lock()
            .insert(expr.to_owned(), compiled.clone());
        compiled
    }

    fn eval(&self, expr: &str, vars: &BTreeMap<&str, cel::Value>) -> Result<cel::Value, String> {
        let program = self.program(expr);
        let program = program.as_ref().as_ref().map_err(Clone::clone)?;
        let mut ctx = cel::Context::with_env(self.env.clone());
        for (k, v) in vars {
            ctx.add_variable_from_value(*k, v.clone());
        }
        program.execute(&ctx).map_err(|e| e.to_string())
    }

    fn eval_bool(&self, expr: &str, vars: &BTreeMap<&str, cel::Value>) -> Result<bool, String> {
        match self.eval(expr, vars) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "expression '{expr}' resulted in error: expected a bool, got {other:?}"
            )),
            Err(e) => Err(format!("expression '{expr}' resulted in error: {e}")),
        }
    }

    /// Evaluates a policy's spec against the variables (`object`, `request`, ...).
    pub fn evaluate(&self, spec: &Value, mut vars: BTreeMap<&str, cel::Value>) -> Outcome {
        let mut out = Outcome::default();
        for c in list(spec, "matchConditions") {
            match self.eval_bool(str_at(c, "expression"), &vars) {
                Ok(true) => {}
                Ok(false) => return out,
                Err(e) => {
                    out.applies = true;
                    out.error = Some(e);
                    return out;
                }
            }
        }
        out.applies = true;
        let mut variables = HashMap::new();
        for v in list(spec, "variables") {
            let name = str_at(v, "name");
            match self.eval(str_at(v, "expression"), &vars) {
                Ok(value) => {
                    variables.insert(cel::objects::Key::String(Arc::new(name.to_owned())), value);
                    vars.insert(
                        "variables",
                        cel::Value::Map(cel::objects::Map {
                            map: Arc::new(variables.clone()),
                        }),
                    );
                }
                Err(e) => {
                    out.error = Some(format!(
                        "expression '{}' resulted in error: {e}",
                        str_at(v, "expression")
                    ));
                    return out;
                }
            }
        }
        for (index, v) in list(spec, "validations").enumerate() {
            let expr = str_at(v, "expression");
            match self.eval_bool(expr, &vars) {
                Ok(true) => {}
                Ok(false) => {
                    let from_expression = v
                        .get("messageExpression")
                        .and_then(Value::as_str)
                        .and_then(|m| match self.eval(m, &vars) {
                            Ok(cel::Value::String(s)) => Some(s.to_string()),
                            _ => None,
                        })
                        .filter(|m| !m.trim().is_empty() && !m.contains('\n'));
                    let message = from_expression
                        .or_else(|| {
                            v.get("message")
                                .and_then(Value::as_str)
                                .filter(|m| !m.is_empty())
                                .map(str::to_owned)
                        })
                        .unwrap_or_else(|| format!("failed expression: {}", expr.trim()));
                    let reason = v
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("Invalid")
                        .to_owned();
                    out.failures.push((message, reason, index));
                }
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        out
    }
}

fn list<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Whether match resources (a policy's constraints or a binding's narrowing) select
/// the request. An empty `resourceRules` selects everything (bindings only).
fn resources_match(api: &Api, m: &Value, req: &AdmissionRequest, rules_required: bool) -> bool {
    let exact = m.get("matchPolicy").and_then(Value::as_str) == Some("Exact");
    let rules = m.get("resourceRules");
    let has_rules = rules
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    if (has_rules || rules_required) && !any_rule_matches(rules, exact, req) {
        return false;
    }
    if any_rule_matches(m.get("excludeResourceRules"), exact, req) {
        return false;
    }
    selectors_match(api, m, req)
}

/// The `request` variable, as upstream's AdmissionRequest.
fn request_value(req: &AdmissionRequest) -> Value {
    let res = req.resource;
    json!({
        "kind": {"group": res.group, "version": res.version, "kind": res.kind},
        "resource": {"group": res.group, "version": res.version, "resource": res.plural},
        "requestKind": {"group": res.group, "version": res.version, "kind": res.kind},
        "requestResource": {"group": res.group, "version": res.version, "resource": res.plural},
        "subResource": req.subresource.clone().unwrap_or_default(),
        "name": req.name,
        "namespace": req.namespace,
        "operation": req.operation.as_str(),
        "userInfo": {
            "username": req.user.name,
            "uid": req.user.uid,
            "groups": req.user.groups,
            "extra": req.user.extra,
        },
        "dryRun": req.dry_run,
    })
}

/// The parameter objects a binding names; `Err` for a binding that cannot work.
fn params(
    api: &Api,
    policy: &Value,
    binding: &Value,
    req: &AdmissionRequest,
) -> Result<Vec<Value>, String> {
    let Some(kind) = policy.pointer("/spec/paramKind") else {
        return Ok(vec![Value::Null]);
    };
    let Some(pref) = binding.pointer("/spec/paramRef") else {
        return Err("failed to configure binding: no paramRef in binding".into());
    };
    let (group, version) = match str_at(kind, "apiVersion").split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), str_at(kind, "apiVersion").to_owned()),
    };
    let Some(res) = catalog()
        .group_version(&group, &version)
        .into_iter()
        .find(|r| r.kind == str_at(kind, "kind"))
    else {
        return Err(format!(
            "failed to configure policy: failed to find resource referenced by paramKind: '{}, Kind={}'",
            str_at(kind, "apiVersion"),
            str_at(kind, "kind")
        ));
    };
    let ns = if res.namespaced {
        match pref.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ if !req.namespace.is_empty() => req.namespace.clone(),
            _ => {
                return Err(
                    "cannot use namespaced paramRef in policy binding that matches cluster-scoped resources"
                        .into(),
                );
            }
        }
    } else {
        String::new()
    };
    let name = str_at(pref, "name");
    let found: Vec<Value> = if !name.is_empty() {
        cached(api, res.group, res.version, res.plural, &ns, name)
            .map(|o| vec![(*o).clone()])
            .unwrap_or_default()
    } else {
        let selector = crate::selectors::LabelSelector::from_meta(
            pref.get("selector").unwrap_or(&Value::Null),
        );
        cached_all(api, res.group, res.version, res.plural)
            .into_iter()
            .filter(|o| crate::meta::namespace(o) == ns)
            .filter(|o| {
                let labels = o
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                selector.matches(&labels)
            })
            .map(|o| (*o).clone())
            .collect()
    };
    if found.is_empty() {
        if str_at(pref, "parameterNotFoundAction") == "Deny" {
            return Err(
                "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
                    .into(),
            );
        }
        return Ok(Vec::new());
    }
    Ok(found)
}

/// upstream's `reasonToCode`.
fn code_for(reason: &str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

impl Plugin for ValidatingAdmissionPolicy {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionPolicy"
    }

    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if req.is_admission_configuration() {
                return Ok(());
            }
            let group = "admissionregistration.k8s.io";
            let policies = cached_all(api, group, "v1", "validatingadmissionpolicies");
            if policies.is_empty() {
                return Ok(());
            }
            let mut bindings = cached_all(api, group, "v1", "validatingadmissionpolicybindings");
            bindings.sort_by(|a, b| crate::meta::name(a).cmp(crate::meta::name(b)));
            let deny = |policy: &str, binding: &str, message: &str, reason: &str| {
                let text = format!(
                    "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {message}"
                );
                let ApiError::Forbidden { message, .. } = super::pods::forbidden(req, &text) else {
                    unreachable!("forbidden builds a Forbidden")
                };
                ApiError::Webhook {
                    code: code_for(reason),
                    reason: reason.to_owned(),
                    message,
                }
            };
            let mut audited: Vec<Value> = Vec::new();
            let record = |audited: &Vec<Value>| {
                if !audited.is_empty() {
                    req.annotate(
                        "validation.policy.admission.k8s.io/validation_failure",
                        Value::Array(audited.clone()).to_string(),
                    );
                }
            };
            for b in &bindings {
                let pname = b
                    .pointer("/spec/policyName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let bname = crate::meta::name(b);
                let Some(policy) = policies.iter().find(|p| crate::meta::name(p) == pname) else {
                    continue;
                };
                let spec = policy.get("spec").cloned().unwrap_or(Value::Null);
                let constraints = spec.get("matchConstraints").cloned().unwrap_or(Value::Null);
                if !resources_match(api, &constraints, req, true) {
                    continue;
                }
                if let Some(m) = b.pointer("/spec/matchResources")
                    && !resources_match(api, m, req, false)
                {
                    continue;
                }
                let fail = str_at(&spec, "failurePolicy") != "Ignore";
                let actions = crate::meta::strings(
                    b.get("spec").unwrap_or(&Value::Null),
                    "validationActions",
                );
                let params = match params(api, policy, b, req) {
                    Ok(p) => p,
                    Err(e) if fail => return Err(deny(pname, bname, &e, "Invalid")),
                    Err(_) => continue,
                };
                let namespace_object = if req.resource.namespaced && !req.namespace.is_empty() {
                    cached(api, "", "v1", "namespaces", "", &req.namespace)
                        .map(|n| (*n).clone())
                        .unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                let object = match req.operation {
                    Operation::Delete => Value::Null,
                    _ => req.object.clone().unwrap_or(Value::Null),
                };
                let old = match req.operation {
                    Operation::Create => Value::Null,
                    _ => req.old_object.clone().unwrap_or(Value::Null),
                };
                for param in params {
                    let vars: BTreeMap<&str, cel::Value> = [
                        ("object", to_cel(&object)),
                        ("oldObject", to_cel(&old)),
                        ("request", to_cel(&request_value(req))),
                        ("params", to_cel(&param)),
                        ("namespaceObject", to_cel(&namespace_object)),
                        ("variables", to_cel(&json!({}))),
                    ]
                    .into();
                    let outcome = self.env.evaluate(&spec, vars);
                    if let Some(e) = outcome.error {
                        if fail {
                            record(&audited);
                            return Err(deny(pname, bname, &e, "Invalid"));
                        }
                        continue;
                    }
                    for (message, reason, index) in outcome.failures {
                        if actions.iter().any(|a| a == "Audit") {
                            audited.push(json!({
                                "message": message,
                                "policy": pname,
                                "binding": bname,
                                "expressionIndex": index,
                                "validationActions": actions,
                            }));
                        }
                        if actions.iter().any(|a| a == "Warn") {
                            req.warnings.lock().push(format!(
                                "Validation failed for ValidatingAdmissionPolicy '{pname}' with binding '{bname}': {message}"
                            ));
                        }
                        if actions.iter().any(|a| a == "Deny") {
                            record(&audited);
                            return Err(deny(pname, bname, &message, &reason));
                        }
                    }
                }
            }
            record(&audited);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(object: Value) -> BTreeMap<&'static str, cel::Value> {
        [
            ("object", to_cel(&object)),
            ("oldObject", cel::Value::Null),
            ("params", to_cel(&json!({"data": {"max": "3"}}))),
            ("variables", to_cel(&json!({}))),
        ]
        .into()
    }

    #[test]
    fn validations_report_upstreams_messages() {
        let env = CelEnv::default();
        let spec = json!({
            "variables": [{"name": "replicas", "expression": "object.spec.replicas"}],
            "validations": [
                {"expression": "variables.replicas <= int(params.data.max)", "messageExpression": "'replicas must be at most ' + params.data.max"},
                {"expression": "has(object.metadata.labels) && 'team' in object.metadata.labels", "message": "a team label is required", "reason": "Forbidden"},
                {"expression": "object.spec.template.spec.containers.all(c, c.image.startsWith('registry.local/'))"},
            ],
        });
        let d = json!({"metadata": {"name": "d"}, "spec": {"replicas": 5, "template": {"spec": {"containers": [{"image": "nginx"}]}}}});
        let out = env.evaluate(&spec, vars(d));
        assert!(out.applies && out.error.is_none(), "{out:?}");
        assert_eq!(
            out.failures,
            [
                ("replicas must be at most 3".to_owned(), "Invalid".to_owned(), 0),
                ("a team label is required".to_owned(), "Forbidden".to_owned(), 1),
                (
                    "failed expression: object.spec.template.spec.containers.all(c, c.image.startsWith('registry.local/'))".to_owned(),
                    "Invalid".to_owned(),
                    2
                ),
            ]
        );
        let ok = json!({"metadata": {"labels": {"team": "a"}}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "registry.local/x"}]}}}});
        assert!(env.evaluate(&spec, vars(ok)).failures.is_empty());
    }

    #[test]
    fn match_conditions_gate_and_errors_are_reported() {
        let env = CelEnv::default();
        let gated = json!({
            "matchConditions": [{"name": "only-web", "expression": "object.metadata.name == 'web'"}],
            "validations": [{"expression": "false"}],
        });
        let other = env.evaluate(&gated, vars(json!({"metadata": {"name": "db"}})));
        assert!(!other.applies && other.failures.is_empty());
        let web = env.evaluate(&gated, vars(json!({"metadata": {"name": "web"}})));
        assert_eq!(web.failures.len(), 1);
        let broken = json!({"validations": [{"expression": "object.spec.missing > 1"}]});
        let out = env.evaluate(&broken, vars(json!({"spec": {}})));
        assert!(
            out.error
                .as_deref()
                .unwrap_or("")
                .starts_with("expression 'object.spec.missing > 1' resulted in error: "),
            "{out:?}"
        );
        let not_bool = json!({"validations": [{"expression": "1 + 1"}]});
        assert!(env.evaluate(&not_bool, vars(json!({}))).error.is_some());
        let syntax = json!({"validations": [{"expression": "object.("}]});
        assert!(env.evaluate(&syntax, vars(json!({}))).error.is_some());
    }
}
