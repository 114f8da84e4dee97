//! Authorization: may this user do this? One place answers, used by the request path
//! (after authentication and impersonation, before the handler) and by the review
//! APIs (`SubjectAccessReview` and its local and self variants,
//! `SelfSubjectRulesReview`), so that `kubectl auth can-i` reports exactly what a
//! request would meet.
//!
//! `--authorization-mode` is an ordered list of AlwaysAllow, AlwaysDeny, Node and
//! RBAC. As upstream, members of `system:masters` are allowed before any mode is
//! asked; then the first mode that allows or denies decides, and when every mode
//! has no opinion the request is denied with their reasons.

pub mod node;
pub mod webhook;

use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::error::{ApiError, GroupResource};
use crate::rbac::{Rbac, RbacSource};

pub use node::{CacheGraph, NodeAuthorizer, NodeGraph};

/// The group whose members may do everything, as upstream's
/// `user.SystemPrivilegedGroup`.
pub const MASTERS: &str = "system:masters";

/// What is being asked, as upstream's `authorizer.Attributes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Verb: get, list, create, ... (or an HTTP verb for non-resource paths).
    pub verb: String,
    /// Whether this is a resource request.
    pub resource_request: bool,
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// The URL path of a non-resource request.
    pub path: String,
}

impl Attributes {
    /// A resource request.
    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Attributes {
            verb: verb.to_owned(),
            resource_request: true,
            group: group.to_owned(),
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ..Default::default()
        }
    }

    /// The attributes of a parsed request.
    pub fn from_request(info: &crate::request::RequestInfo) -> Self {
        Attributes {
            verb: info.verb.clone(),
            resource_request: info.is_resource,
            group: info.group.clone(),
            version: info.version.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone().unwrap_or_default(),
            namespace: info.namespace.clone().unwrap_or_default(),
            name: info.name.clone().unwrap_or_default(),
            path: info.path.clone(),
        }
    }

    /// The 403 for `user` asking this, in upstream's words (`forbiddenMessage` and
    /// `responsewriters.Forbidden`), with the authorizers' reason appended.
    pub fn forbidden(&self, user: &str, reason: &str) -> ApiError {
        let mut msg = if !self.resource_request {
            format!("User {user:?} cannot {} path {:?}", self.verb, self.path)
        } else {
            let mut resource = self.resource.clone();
            if !self.subresource.is_empty() {
                resource = format!("{resource}/{}", self.subresource);
            }
            if self.namespace.is_empty() {
                format!(
                    "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                    self.verb, self.group
                )
            } else {
                format!(
                    "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                    self.verb, self.group, self.namespace
                )
            }
        };
        if !reason.is_empty() {
            msg = format!("{msg}: {reason}");
        }
        let gr = GroupResource::new(&self.group, &self.resource);
        let message = if !self.resource_request || self.resource.is_empty() {
            format!("forbidden: {msg}")
        } else if self.name.is_empty() {
            format!("{gr} is forbidden: {msg}")
        } else {
            format!("{gr} {:?} is forbidden: {msg}", self.name)
        };
        ApiError::Forbidden {
            resource: (self.resource_request && !self.resource.is_empty()).then_some(gr),
            name: self.name.clone(),
            message,
        }
    }
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with a reason (may be empty).
    Allow(String),
    /// Denied, with a reason.
    Deny(String),
    /// No opinion: denied unless a later authorizer allows.
    NoOpinion(String),
}

impl Decision {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// One `--authorization-mode` entry.
pub enum Mode {
    /// `AlwaysAllow`.
    AlwaysAllow,
    /// `AlwaysDeny`.
    AlwaysDeny,
    /// `Node`: kubelets' access, from the graph of what is scheduled to them.
    Node(NodeAuthorizer),
    /// `RBAC`.
    Rbac(Rbac),
    /// `Webhook`: a SubjectAccessReview to an external service (set by
    /// [`Authorizer::set_webhook`]; without one it has no opinion).
    Webhook(Option<webhook::WebhookAuthorizer>),
}

/// The rules a user holds in a namespace, as `SelfSubjectRulesReview` reports them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    /// `resourceRules`.
    pub resource: Vec<Value>,
    /// `nonResourceRules`.
    pub non_resource: Vec<Value>,
    /// Whether some authorizer could not list its rules.
    pub incomplete: bool,
    /// Why (`evaluationError`).
    pub errors: Vec<String>,
}

/// The authorizers, in `--authorization-mode` order.
pub struct Authorizer {
    modes: Vec<Mode>,
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer {
            modes: vec![Mode::AlwaysAllow],
        }
    }
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.modes.iter().map(|m| match m {
                Mode::AlwaysAllow => "AlwaysAllow",
                Mode::AlwaysDeny => "AlwaysDeny",
                Mode::Node(_) => "Node",
                Mode::Rbac(_) => "RBAC",
                Mode::Webhook(_) => "Webhook",
            }))
            .finish()
    }
}

impl Authorizer {
    /// Builds the chain for `--authorization-mode`, with RBAC and Node reading
    /// from `source`.
    pub fn new(
        modes: &[String],
        source: impl Fn() -> Box<dyn RbacSource>,
        graph: impl Fn() -> Box<dyn NodeGraph>,
    ) -> Result<Authorizer, String> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for m in modes.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
            if !seen.insert(m.to_owned()) {
                return Err(format!(
                    "authorization-mode {m:?} has mode specified more than once"
                ));
            }
            out.push(match m {
                "AlwaysAllow" => Mode::AlwaysAllow,
                "AlwaysDeny" => Mode::AlwaysDeny,
                "RBAC" => Mode::Rbac(Rbac::new(source())),
                "Node" => Mode::Node(NodeAuthorizer::new(graph())),
                "Webhook" => Mode::Webhook(None),
                "ABAC" => {
                    return Err(format!(
                        "authorization mode {m:?} is not supported by this server"
                    ));
                }
                other => {
                    return Err(format!("authorization-mode {other:?} is not a valid mode"));
                }
            });
        }
        if out.is_empty() {
            return Err("at least one authorization-mode must be passed".to_owned());
        }
        Ok(Authorizer { modes: out })
    }

    /// Whether AlwaysAllow is among the modes (anonymous access is then turned off,
    /// as upstream's `ApplyAuthorization` does).
    pub fn is_always_allow(&self) -> bool {
        self.modes.iter().any(|m| matches!(m, Mode::AlwaysAllow))
    }

    /// The RBAC authorizer, when configured (for escalation checks).
    pub fn rbac(&self) -> Option<&Rbac> {
        self.modes.iter().find_map(|m| match m {
            Mode::Rbac(r) => Some(r),
            _ => None,
        })
    }

    /// Whether the Webhook mode is among the modes.
    pub fn has_webhook(&self) -> bool {
        self.modes.iter().any(|m| matches!(m, Mode::Webhook(_)))
    }

    /// Gives the Webhook mode its webhook.
    pub fn set_webhook(&mut self, w: webhook::WebhookAuthorizer) {
        if let Some(Mode::Webhook(slot)) = self
            .modes
            .iter_mut()
            .find(|m| matches!(m, Mode::Webhook(_)))
        {
            *slot = Some(w);
        }
    }

    /// Decides one request.
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        self.decide(user, attrs).0
    }

    /// Decides one request; also returns the modes' errors (an unreachable webhook),
    /// which upstream turns into a 500 when no mode allowed.
    pub fn decide(&self, user: &UserInfo, attrs: &Attributes) -> (Decision, Option<String>) {
        if user.in_group(MASTERS) {
            return (Decision::Allow(String::new()), None);
        }
        let mut reasons = Vec::new();
        let mut errors = Vec::new();
        for m in &self.modes {
            let d = match m {
                Mode::AlwaysAllow => Decision::Allow(String::new()),
                Mode::AlwaysDeny => Decision::Deny("Everything is forbidden.".to_owned()),
                Mode::Node(n) => n.authorize(user, attrs),
                Mode::Rbac(r) => r.authorize(user, attrs),
                Mode::Webhook(None) => Decision::NoOpinion(String::new()),
                Mode::Webhook(Some(w)) => match w.authorize(user, attrs) {
                    Ok(d) => d,
                    Err(e) => {
                        errors.push(e);
                        Decision::NoOpinion(String::new())
                    }
                },
            };
            match d {
                Decision::NoOpinion(r) => {
                    if !r.is_empty() {
                        reasons.push(r);
                    }
                }
                d => return (d, None),
            }
        }
        let error = (!errors.is_empty()).then(|| errors.join(", "));
        (Decision::NoOpinion(reasons.join("\n")), error)
    }

    /// Authorizes or returns the 403.
    pub fn check(&self, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
        match self.authorize(user, attrs) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(r) | Decision::NoOpinion(r) => Err(attrs.forbidden(&user.name, &r)),
        }
    }

    /// What `user` may do in `namespace`: every mode's rules together.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Rules {
        let mut rules = Rules::default();
        let all = |rules: &mut Rules| {
            rules
                .resource
                .push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
            rules
                .non_resource
                .push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
        };
        if user.in_group(MASTERS) {
            all(&mut rules);
        }
        for m in &self.modes {
            match m {
                Mode::AlwaysAllow => all(&mut rules),
                Mode::AlwaysDeny => {}
                // Upstream's webhook cannot list rules: the answer is incomplete.
                Mode::Webhook(_) => rules.incomplete = true,
                Mode::Node(_) => {
                    // The node graph has no rule list; upstream marks it incomplete.
                    if user.in_group(node::NODES) {
                        rules.incomplete = true;
                    }
                }
                Mode::Rbac(r) => {
                    let (res, non, errs) = r.rules_for(user, namespace);
                    rules.resource.extend(res);
                    rules.non_resource.extend(non);
                    if !errs.is_empty() {
                        rules.incomplete = true;
                        rules.errors.extend(errs);
                    }
                }
            }
        }
        rules
    }
}

/// Applies the `Impersonate-*` headers, as upstream's `WithImpersonation`: each
/// requested attribute needs the `impersonate` verb on users (or the service account),
/// groups, uids or userextras; the request then runs as the impersonated user.
pub fn impersonate(
    authorizer: &Authorizer,
    requestor: UserInfo,
    headers: &http::HeaderMap,
) -> Result<UserInfo, ApiError> {
    let get = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // Empty headers ask for nothing, as upstream's `len(...) > 0`.
    let user = get("impersonate-user").filter(|u| !u.is_empty());
    let uid = get("impersonate-uid").filter(|u| !u.is_empty());
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let mut extra: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix("impersonate-extra-")
            && let Ok(v) = v.to_str()
        {
            extra
                .entry(crate::authn::unescape(key))
                .or_default()
                .push(v.to_owned());
        }
    }
    let Some(name) = user else {
        if !groups.is_empty() || !extra.is_empty() || uid.is_some() {
            // Go's %v of the []ObjectReference upstream builds: Kind, Namespace, Name,
            // UID, APIVersion, ResourceVersion, FieldPath, space-separated; a 500.
            let reference =
                |kind: &str, name: &str, field: &str| format!("{{{kind}  {name}    {field}}}");
            let mut what: Vec<String> = groups.iter().map(|g| reference("Group", g, "")).collect();
            for (k, vals) in &extra {
                what.extend(vals.iter().map(|v| reference("UserExtra", v, k)));
            }
            if let Some(u) = &uid {
                what.push(reference("UID", u, ""));
            }
            return Err(ApiError::Internal(format!(
                "requested [{}] without impersonating a user",
                what.join(" ")
            )));
        }
        return Ok(requestor);
    };
    let check = |a: Attributes| authorizer.check(&requestor, &a);
    let sa = service_account_of(&name);
    match sa {
        Some((ns, sa_name)) => check(Attributes::resource(
            "impersonate",
            "",
            "serviceaccounts",
            ns,
            sa_name,
        ))?,
        None => check(Attributes::resource("impersonate", "", "users", "", &name))?,
    }
    for g in &groups {
        check(Attributes::resource("impersonate", "", "groups", "", g))?;
    }
    for (k, vals) in &extra {
        for v in vals {
            check(Attributes {
                subresource: k.clone(),
                ..Attributes::resource("impersonate", "authentication.k8s.io", "userextras", "", v)
            })?;
        }
    }
    if let Some(u) = &uid {
        check(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "uids",
            "",
            u,
        ))?;
    }
    let mut out = UserInfo {
        name: name.clone(),
        uid: uid.unwrap_or_default(),
        groups,
        extra,
    };
    if let Some((ns, _)) = sa
        && out.groups.is_empty()
    {
        out.groups = vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ];
    }
    if name == crate::authn::ANONYMOUS {
        if !out.in_group(crate::authn::UNAUTHENTICATED) {
            out.groups.push(crate::authn::UNAUTHENTICATED.into());
        }
    } else if !out.in_group(crate::authn::AUTHENTICATED)
        && !out.in_group(crate::authn::UNAUTHENTICATED)
    {
        out.groups.push(crate::authn::AUTHENTICATED.into());
    }
    Ok(out)
}

/// Upstream's `serviceaccount.SplitUsername`: `system:serviceaccount:<ns>:<name>`
/// with exactly those two valid parts; anything else is a plain user name.
fn service_account_of(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("system:serviceaccount:")?;
    let (ns, sa) = rest.split_once(':')?;
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let subdomain = |s: &str| s.len() <= 253 && s.split('.').all(label);
    (label(ns) && subdomain(sa)).then_some((ns, sa))
}

#[cfg(test)]
mod tests;
