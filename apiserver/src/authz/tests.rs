use std::sync::Arc;

use serde_json::Value;

use super::*;
use crate::rbac::RbacSource;

struct Empty;
impl RbacSource for Empty {
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>> {
        Vec::new()
    }
    fn role_bindings(&self, _: &str) -> Vec<Arc<Value>> {
        Vec::new()
    }
    fn cluster_role(&self, _: &str) -> Option<Arc<Value>> {
        None
    }
    fn role(&self, _: &str, _: &str) -> Option<Arc<Value>> {
        None
    }
}

/// Pods, given.
struct Pods(Vec<Value>);
impl NodeGraph for Pods {
    fn pods_on(&self, node: &str) -> Vec<Arc<Value>> {
        self.0
            .iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .cloned()
            .map(Arc::new)
            .collect()
    }
    fn attachment(&self, name: &str) -> Option<Arc<Value>> {
        (name == "va1").then(|| Arc::new(json!({"spec": {"nodeName": "n1"}})))
    }
    fn volume(&self, name: &str) -> Option<Arc<Value>> {
        let claim = match name {
            "pv1" => "data",
            "pv2" => "other",
            _ => return None,
        };
        Some(Arc::new(
            json!({"spec": {"claimRef": {"namespace": "dev", "name": claim}}}),
        ))
    }
}

fn chain(modes: &str) -> Authorizer {
    let modes: Vec<String> = modes.split(',').map(str::to_owned).collect();
    Authorizer::new(
        &modes,
        || Box::new(Empty),
        || {
            Box::new(Pods(vec![
                json!({"metadata": {"namespace": "dev", "name": "p"},
                "spec": {"nodeName": "n1", "serviceAccountName": "sa1",
                    "volumes": [{"secret": {"secretName": "s1"}},
                        {"persistentVolumeClaim": {"claimName": "data"}},
                        {"projected": {"sources": [{"configMap": {"name": "c1"}}]}}],
                    "containers": [{"envFrom": [{"secretRef": {"name": "s2"}}]}]}}),
            ]))
        },
    )
    .unwrap()
}

#[test]
fn modes_parse_with_upstreams_errors() {
    let bad = |m: &str| {
        Authorizer::new(
            &[m.to_owned()],
            || Box::new(Empty),
            || Box::new(Pods(vec![])),
        )
        .err()
        .unwrap()
    };
    assert_eq!(
        bad("Magic"),
        "authorization-mode \"Magic\" is not a valid mode"
    );
    assert!(chain("AlwaysAllow").is_always_allow());
    assert!(!chain("Node,RBAC").is_always_allow());
    assert!(chain("RBAC,AlwaysAllow").is_always_allow());
    assert!(
        Authorizer::new(
            &["RBAC".into(), "RBAC".into()],
            || Box::new(Empty),
            || Box::new(Pods(vec![]))
        )
        .is_err()
    );
}

#[test]
fn forbidden_messages_are_upstreams() {
    let a = chain("RBAC");
    let bob = UserInfo::new("bob", &["system:authenticated"]);
    let e = a
        .check(&bob, &Attributes::resource("list", "", "pods", "y", ""))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"y\""
    );
    let e = a
        .check(
            &bob,
            &Attributes::resource("get", "apps", "deployments", "", "d"),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "deployments.apps \"d\" is forbidden: User \"bob\" cannot get resource \"deployments\" in API group \"apps\" at the cluster scope"
    );
    let e = a
        .check(
            &bob,
            &Attributes {
                verb: "get".into(),
                path: "/metrics".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "forbidden: User \"bob\" cannot get path \"/metrics\""
    );
    // Masters pass before any mode; AlwaysDeny denies.
    let root = UserInfo::new("root", &["system:masters"]);
    assert!(
        a.authorize(&root, &Attributes::resource("delete", "", "nodes", "", "n"))
            .allowed()
    );
    assert_eq!(
        chain("AlwaysDeny").authorize(&bob, &Attributes::default()),
        Decision::Deny("Everything is forbidden.".into())
    );
}

#[test]
fn kubelets_reach_only_what_their_pods_use() {
    let a = chain("Node,RBAC");
    let n1 = UserInfo::new("system:node:n1", &["system:nodes", "system:authenticated"]);
    let n2 = UserInfo::new("system:node:n2", &["system:nodes", "system:authenticated"]);
    for (res, name) in [
        ("secrets", "s1"),
        ("secrets", "s2"),
        ("configmaps", "c1"),
        ("persistentvolumeclaims", "data"),
    ] {
        let at = Attributes::resource("get", "", res, "dev", name);
        assert!(a.authorize(&n1, &at).allowed(), "{res}/{name}");
        assert!(!a.authorize(&n2, &at).allowed(), "{res}/{name}");
    }
    let pv = Attributes::resource("get", "", "persistentvolumes", "", "pv1");
    assert!(a.authorize(&n1, &pv).allowed());
    assert!(!a.authorize(&n2, &pv).allowed());
    // Attachments by their node; CSINodes by name, with upstream's verbs.
    let va = Attributes::resource("get", "storage.k8s.io", "volumeattachments", "", "va1");
    assert!(a.authorize(&n1, &va).allowed());
    assert!(!a.authorize(&n2, &va).allowed());
    let csi =
        |verb: &str, name: &str| Attributes::resource(verb, "storage.k8s.io", "csinodes", "", name);
    assert!(a.authorize(&n1, &csi("patch", "n1")).allowed());
    assert!(!a.authorize(&n1, &csi("patch", "n2")).allowed());
    assert_eq!(
        a.authorize(&n1, &csi("deletecollection", "")),
        Decision::NoOpinion("can only get, create, update, patch, or delete a CSINode".into())
    );
    // A volume bound to a claim no pod of the node uses is out of reach.
    let other = Attributes::resource("get", "", "persistentvolumes", "", "pv2");
    assert!(!a.authorize(&n1, &other).allowed());
    let e = a
        .check(
            &n2,
            &Attributes::resource("get", "", "secrets", "dev", "s1"),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "secrets \"s1\" is forbidden: User \"system:node:n2\" cannot get resource \"secrets\" in API group \"\" in the namespace \"dev\": no relationship found between node 'n2' and this object"
    );
    assert!(
        !a.authorize(&n1, &Attributes::resource("list", "", "secrets", "dev", ""))
            .allowed()
    );
    let mut token = Attributes::resource("create", "", "serviceaccounts", "dev", "sa1");
    token.subresource = "token".into();
    assert!(a.authorize(&n1, &token).allowed());
    let lease = |n: &str| {
        Attributes::resource(
            "update",
            "coordination.k8s.io",
            "leases",
            "kube-node-lease",
            n,
        )
    };
    assert!(a.authorize(&n1, &lease("n1")).allowed());
    assert!(!a.authorize(&n1, &lease("n2")).allowed());
    // The system:node rules: nodes and pod status.
    assert!(
        a.authorize(&n1, &Attributes::resource("get", "", "nodes", "", "n1"))
            .allowed()
    );
    let mut status = Attributes::resource("patch", "", "pods", "dev", "p");
    status.subresource = "status".into();
    assert!(a.authorize(&n1, &status).allowed());
    assert!(
        !a.authorize(
            &n1,
            &Attributes::resource("delete", "", "namespaces", "", "dev")
        )
        .allowed()
    );
}

#[test]
fn impersonation_needs_the_verb() {
    let a = chain("RBAC");
    let mut h = http::HeaderMap::new();
    h.insert("impersonate-user", "alice".parse().unwrap());
    let bob = UserInfo::new("bob", &["system:authenticated"]);
    let e = impersonate(&a, bob, &h).unwrap_err();
    assert_eq!(
        e.to_string(),
        "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    let root = UserInfo::new("root", &["system:masters"]);
    h.append("impersonate-group", "dev".parse().unwrap());
    let u = impersonate(&a, root.clone(), &h).unwrap();
    assert_eq!(u.name, "alice");
    assert_eq!(u.groups, ["dev", "system:authenticated"]);
    let mut only_group = http::HeaderMap::new();
    only_group.insert("impersonate-group", "dev".parse().unwrap());
    assert_eq!(
        impersonate(&a, root.clone(), &only_group)
            .unwrap_err()
            .to_string(),
        "Internal error occurred: requested [{Group  dev    }] without impersonating a user"
    );
    // An empty user header asks for nothing.
    let mut empty = http::HeaderMap::new();
    empty.insert("impersonate-user", "".parse().unwrap());
    assert_eq!(impersonate(&a, root.clone(), &empty).unwrap().name, "root");
    // Asking for system:unauthenticated leaves system:authenticated out.
    let mut unauth = http::HeaderMap::new();
    unauth.insert("impersonate-user", "carl".parse().unwrap());
    unauth.insert(
        "impersonate-group",
        "system:unauthenticated".parse().unwrap(),
    );
    assert_eq!(
        impersonate(&a, root.clone(), &unauth).unwrap().groups,
        ["system:unauthenticated"]
    );
    // A malformed service account name is a plain user: no service account groups.
    let mut odd = http::HeaderMap::new();
    odd.insert(
        "impersonate-user",
        "system:serviceaccount:a:b:c".parse().unwrap(),
    );
    assert_eq!(
        impersonate(&a, root.clone(), &odd).unwrap().groups,
        ["system:authenticated"]
    );
    let mut sa = http::HeaderMap::new();
    sa.insert(
        "impersonate-user",
        "system:serviceaccount:dev:ci".parse().unwrap(),
    );
    assert_eq!(
        impersonate(&a, root, &sa).unwrap().groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:dev",
            "system:authenticated"
        ]
    );
}
