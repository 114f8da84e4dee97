//! Authorization: may this user do this? One place that answers, used both by the
//! request path (after authentication, before the handler) and by the review APIs
//! (`SelfSubjectAccessReview`, `SelfSubjectRulesReview`), so that `kubectl auth
//! can-i` reports exactly what a request would meet.
//!
//! Today the one mode is upstream's `AlwaysAllow`, applied to authenticated users:
//! authentication already refuses anonymous requests (401) except to the public
//! health and version paths. RBAC, Node and Webhook modes (`--authorization-mode`)
//! plug in here.

use serde_json::{Value, json};

use crate::authn::UserInfo;

/// What is being asked, as upstream's `authorizer.Attributes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Verb: get, list, create, ... (or an HTTP verb for non-resource paths).
    pub verb: String,
    /// Whether this is a resource request.
    pub resource_request: bool,
    /// API group.
    pub group: String,
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

/// The authorizers, in `--authorization-mode` order.
#[derive(Clone, Debug, Default)]
pub struct Authorizer;

impl Authorizer {
    /// Decides one request.
    pub fn authorize(&self, user: &UserInfo, _attrs: &Attributes) -> Decision {
        if user.name == "system:anonymous"
            || user.groups.iter().any(|g| g == "system:unauthenticated")
        {
            return Decision::NoOpinion(String::new());
        }
        Decision::Allow(String::new())
    }

    /// What `user` may do in `namespace`, as `SelfSubjectRulesReview` reports it:
    /// (resourceRules, nonResourceRules, incomplete).
    pub fn rules_for(&self, user: &UserInfo, _namespace: &str) -> (Vec<Value>, Vec<Value>, bool) {
        match self.authorize(user, &Attributes::default()) {
            Decision::Allow(_) => (
                vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})],
                vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})],
                false,
            ),
            _ => (Vec::new(), Vec::new(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_allow_for_the_authenticated_only() {
        let a = Authorizer;
        let admin = UserInfo {
            name: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        };
        assert!(matches!(
            a.authorize(&admin, &Attributes::default()),
            Decision::Allow(_)
        ));
        let anon = UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        };
        assert!(matches!(
            a.authorize(&anon, &Attributes::default()),
            Decision::NoOpinion(_)
        ));
        assert!(a.rules_for(&anon, "default").0.is_empty());
        assert_eq!(a.rules_for(&admin, "default").0[0]["verbs"], json!(["*"]));
    }
}
