use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

/// Roles and bindings in vectors.
#[derive(Default)]
struct Fixed(Vec<Value>);

impl Fixed {
    fn of(&self, kind: &str) -> impl Iterator<Item = &Value> {
        self.0.iter().filter(move |o| o["kind"] == kind)
    }
}

impl RbacSource for Fixed {
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>> {
        self.of("ClusterRoleBinding")
            .cloned()
            .map(Arc::new)
            .collect()
    }
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>> {
        self.of("RoleBinding")
            .filter(|b| b["metadata"]["namespace"] == namespace)
            .cloned()
            .map(Arc::new)
            .collect()
    }
    fn cluster_role(&self, name: &str) -> Option<Arc<Value>> {
        self.of("ClusterRole")
            .find(|r| r["metadata"]["name"] == name)
            .cloned()
            .map(Arc::new)
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.of("Role")
            .find(|r| r["metadata"]["name"] == name && r["metadata"]["namespace"] == namespace)
            .cloned()
            .map(Arc::new)
    }
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo::new(name, groups)
}

fn fixture() -> Rbac {
    Rbac::new(Box::new(Fixed(vec![
        json!({"kind": "ClusterRole", "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]}),
        json!({"kind": "ClusterRole", "metadata": {"name": "health"},
            "rules": [{"nonResourceURLs": ["/healthz", "/api/*"], "verbs": ["get"]}]}),
        json!({"kind": "Role", "metadata": {"name": "one-secret", "namespace": "dev"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"], "verbs": ["get"]}]}),
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": "health"},
            "roleRef": {"kind": "ClusterRole", "name": "health"},
            "subjects": [{"kind": "Group", "name": "system:authenticated"}]}),
        json!({"kind": "RoleBinding", "metadata": {"name": "readers", "namespace": "dev"},
            "roleRef": {"kind": "ClusterRole", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "alice"},
                {"kind": "ServiceAccount", "name": "builder"}]}),
        json!({"kind": "RoleBinding", "metadata": {"name": "secret", "namespace": "dev"},
            "roleRef": {"kind": "Role", "name": "one-secret"},
            "subjects": [{"kind": "User", "name": "alice"}]}),
        json!({"kind": "RoleBinding", "metadata": {"name": "dangling", "namespace": "dev"},
            "roleRef": {"kind": "ClusterRole", "name": "gone"},
            "subjects": [{"kind": "User", "name": "bob"}]}),
    ])))
}

#[test]
fn bindings_grant_their_roles_in_their_namespace() {
    let r = fixture();
    let alice = user("alice", &["system:authenticated"]);
    let get_pods = Attributes::resource("get", "", "pods", "dev", "p");
    match r.authorize(&alice, &get_pods) {
        Decision::Allow(reason) => assert_eq!(
            reason,
            "RBAC: allowed by RoleBinding \"dev/readers\" of ClusterRole \"pod-reader\" to User \"alice\""
        ),
        d => panic!("{d:?}"),
    }
    // Not in another namespace, not another verb, not cluster-wide.
    for a in [
        Attributes::resource("get", "", "pods", "prod", "p"),
        Attributes::resource("delete", "", "pods", "dev", "p"),
        Attributes::resource("list", "", "pods", "", ""),
        Attributes::resource("get", "apps", "pods", "dev", "p"),
    ] {
        assert_eq!(
            r.authorize(&alice, &a),
            Decision::NoOpinion(String::new()),
            "{a:?}"
        );
    }
}

#[test]
fn subresources_and_resource_names() {
    let r = fixture();
    let alice = user("alice", &[]);
    let mut log = Attributes::resource("get", "", "pods", "dev", "p");
    log.subresource = "log".into();
    assert!(r.authorize(&alice, &log).allowed());
    log.subresource = "exec".into();
    assert!(!r.authorize(&alice, &log).allowed());
    assert!(
        r.authorize(
            &alice,
            &Attributes::resource("get", "", "secrets", "dev", "s1")
        )
        .allowed()
    );
    assert!(
        !r.authorize(
            &alice,
            &Attributes::resource("get", "", "secrets", "dev", "s2")
        )
        .allowed()
    );
    assert!(
        !r.authorize(
            &alice,
            &Attributes::resource("list", "", "secrets", "dev", "")
        )
        .allowed()
    );
}

#[test]
fn service_accounts_and_non_resource_urls() {
    let r = fixture();
    let sa = user(
        "system:serviceaccount:dev:builder",
        &["system:authenticated"],
    );
    assert!(
        r.authorize(&sa, &Attributes::resource("list", "", "pods", "dev", ""))
            .allowed()
    );
    let other = user("system:serviceaccount:prod:builder", &[]);
    assert!(
        !r.authorize(&other, &Attributes::resource("list", "", "pods", "dev", ""))
            .allowed()
    );
    let path = |p: &str| Attributes {
        verb: "get".into(),
        path: p.into(),
        ..Default::default()
    };
    assert!(r.authorize(&sa, &path("/healthz")).allowed());
    assert!(r.authorize(&sa, &path("/api/v1")).allowed());
    assert!(!r.authorize(&sa, &path("/apis")).allowed());
    assert!(!r.authorize(&user("x", &[]), &path("/healthz")).allowed());
}

#[test]
fn a_missing_role_is_reported() {
    let r = fixture();
    assert_eq!(
        r.authorize(
            &user("bob", &[]),
            &Attributes::resource("get", "", "pods", "dev", "p")
        ),
        Decision::NoOpinion(
            "RBAC: clusterrole.rbac.authorization.k8s.io \"gone\" not found".to_owned()
        )
    );
}

#[test]
fn rules_review_lists_what_is_held() {
    let r = fixture();
    let (res, non, errs) = r.rules_for(&user("alice", &["system:authenticated"]), "dev");
    assert!(errs.is_empty());
    assert_eq!(res.len(), 2);
    assert_eq!(res[1]["resourceNames"], json!(["s1"]));
    assert_eq!(non[0]["nonResourceURLs"], json!(["/healthz", "/api/*"]));
}

#[test]
fn covering_rules() {
    let owner = vec![
        json!({"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get", "list"]}),
        json!({"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}),
        json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["get"]}),
        json!({"nonResourceURLs": ["/logs/*"], "verbs": ["get"]}),
    ];
    assert!(covers(
        &owner,
        &[json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]})]
    ));
    assert!(covers(
        &owner,
        &[json!({"apiGroups": [""], "resources": ["services/status"], "verbs": ["list"]})]
    ));
    // `res/*` is not a wildcard for upstream (neither matching nor covering).
    let slash_star = vec![json!({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]})];
    assert!(!covers(
        &slash_star,
        &[json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]})]
    ));
    assert!(covers(
        &owner,
        &[
            json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete", "escalate"]})
        ]
    ));
    assert!(covers(
        &owner,
        &[
            json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["get"]})
        ]
    ));
    assert!(covers(
        &owner,
        &[json!({"nonResourceURLs": ["/logs/x"], "verbs": ["get"]})]
    ));
    // A verb wildcard is only covered by a wildcard.
    let missing = uncovered(
        &owner,
        &[json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]})],
    );
    assert_eq!(
        compact(&missing[0]),
        r#"{APIGroups:[""], Resources:["pods"], Verbs:["*"]}"#
    );
    // Go's %q of a list separates with spaces; names come after URLs.
    assert_eq!(
        compact(
            &json!({"apiGroups": ["", "apps"], "resources": ["pods"], "resourceNames": ["a"], "verbs": ["get", "list"]})
        ),
        r#"{APIGroups:["" "apps"], Resources:["pods"], ResourceNames:["a"], Verbs:["get" "list"]}"#
    );
    assert!(!covers(
        &owner,
        &[json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})]
    ));
    assert!(!covers(
        &owner,
        &[
            json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["b"], "verbs": ["get"]})
        ]
    ));
    assert!(!covers(
        &owner,
        &[json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]})]
    ));
}

#[test]
fn escalation_is_refused_with_upstreams_message() {
    let r = fixture();
    let alice = user("alice", &["system:authenticated"]);
    r.confirm_no_escalation(
        &alice,
        "dev",
        &[json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]})],
    )
    .unwrap();
    let e = r
        .confirm_no_escalation(
            &alice,
            "dev",
            &[json!({"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["list"]})],
        )
        .unwrap_err();
    assert_eq!(
        e,
        "user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"list\"]}"
    );
    r.confirm_no_escalation(
        &user("root", &["system:masters"]),
        "",
        &[json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})],
    )
    .unwrap();
}

#[test]
fn the_bootstrap_policy_parses_and_reconciles() {
    let p = bootstrap::policy();
    let names: Vec<&str> = p.cluster_roles.iter().map(crate::meta::name).collect();
    for want in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node",
        "system:node-proxier",
        "system:controller:generic-garbage-collector",
    ] {
        assert!(names.contains(&want), "{want} missing");
    }
    assert!(!bootstrap::node_rules().is_empty());
    let expected = &p.cluster_roles[names.iter().position(|n| *n == "system:discovery").unwrap()];
    // An edited role regains what it lost, keeps what it gained.
    let mut edited = expected.clone();
    edited["rules"] = json!([{"nonResourceURLs": ["/custom"], "verbs": ["get"]}]);
    let fixed = bootstrap::reconcile_role(&edited, expected).unwrap();
    assert!(covers(
        fixed["rules"].as_array().unwrap(),
        expected["rules"].as_array().unwrap()
    ));
    assert!(covers(
        fixed["rules"].as_array().unwrap(),
        &[json!({"nonResourceURLs": ["/custom"], "verbs": ["get"]})]
    ));
    assert!(bootstrap::reconcile_role(&fixed, expected).is_none());
    // autoupdate=false protects it.
    edited["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] =
        json!("false");
    assert!(bootstrap::reconcile_role(&edited, expected).is_none());
}

#[test]
fn only_gc_updates_skip_the_escalation_check() {
    let old = json!({"metadata": {"name": "r", "resourceVersion": "1"}, "rules": []});
    let mut gc = old.clone();
    gc["metadata"]["finalizers"] = json!(["x"]);
    gc["metadata"]["resourceVersion"] = json!("2");
    assert!(only_gc_fields_changed(&old, &gc));
    // A label can make a role feed an aggregated one: checked in full.
    let mut relabel = old.clone();
    relabel["metadata"]["labels"] = json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"});
    assert!(!only_gc_fields_changed(&old, &relabel));
}
