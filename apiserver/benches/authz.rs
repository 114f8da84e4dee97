//! What deciding who may do what costs a request: the RBAC authorizer over upstream's
//! bootstrap policy plus 1000 RoleBindings in one namespace, the Node authorizer with
//! 200 pods on the node, and verifying a service account token, timed in-process.
//! Run: `cargo bench -p keelson-apiserver --bench authz`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::authn::UserInfo;
use apiserver::authz::node::NodeGraph;
use apiserver::authz::{Attributes, Authorizer};
use apiserver::rbac::RbacSource;
use apiserver::rbac::bootstrap::policy;
use apiserver::serviceaccount::{Authenticator, Key, Lookup, Signer, jwt};
use serde_json::{Value, json};

struct Policy {
    cluster_roles: Vec<Arc<Value>>,
    cluster_role_bindings: Vec<Arc<Value>>,
    role_bindings: Vec<Arc<Value>>,
}

impl RbacSource for Policy {
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>> {
        self.cluster_role_bindings.clone()
    }
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>> {
        if namespace == "team" {
            self.role_bindings.clone()
        } else {
            Vec::new()
        }
    }
    fn cluster_role(&self, name: &str) -> Option<Arc<Value>> {
        self.cluster_roles
            .iter()
            .find(|r| r["metadata"]["name"] == name)
            .cloned()
    }
    fn role(&self, _: &str, _: &str) -> Option<Arc<Value>> {
        None
    }
}

fn source() -> Box<dyn RbacSource> {
    let p = policy();
    let mut cluster_roles: Vec<Arc<Value>> =
        p.cluster_roles.iter().cloned().map(Arc::new).collect();
    // `view` as the aggregation controller leaves it (the bootstrap object has no rules).
    cluster_roles.retain(|r| r["metadata"]["name"] != "view");
    cluster_roles.push(Arc::new(json!({"metadata": {"name": "view"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "services", "configmaps"], "verbs": ["get", "list", "watch"]}]})));
    let role_bindings = (0..1000)
        .map(|i| {
            Arc::new(
                json!({"metadata": {"name": format!("b{i}"), "namespace": "team"},
                "roleRef": {"kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": format!("user{i}")}]}),
            )
        })
        .collect();
    Box::new(Policy {
        cluster_roles,
        cluster_role_bindings: p
            .cluster_role_bindings
            .iter()
            .cloned()
            .map(Arc::new)
            .collect(),
        role_bindings,
    })
}

struct Pods(Vec<Arc<Value>>);
impl NodeGraph for Pods {
    fn pods_on(&self, node: &str) -> Vec<Arc<Value>> {
        self.0
            .iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .cloned()
            .collect()
    }
    fn volume(&self, _: &str) -> Option<Arc<Value>> {
        None
    }
    fn attachment(&self, _: &str) -> Option<Arc<Value>> {
        None
    }
}

fn graph() -> Box<dyn NodeGraph> {
    Box::new(Pods(
        (0..200)
            .map(|i| {
                Arc::new(json!({"metadata": {"name": format!("p{i}"), "namespace": "team"},
                    "spec": {"nodeName": "n1", "volumes": [{"secret": {"secretName": format!("s{i}")}}],
                        "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": format!("c{i}")}}]}]}}))
            })
            .collect(),
    ))
}

struct OneAccount;
impl Lookup for OneAccount {
    fn get(&self, kind: &str, _: &str, _: &str) -> Option<Arc<Value>> {
        (kind == "ServiceAccount")
            .then(|| Arc::new(json!({"metadata": {"name": "sa", "uid": "u"}})))
    }
}

/// Median and p99 of `n` runs of `f`, in microseconds.
fn time(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(samples[n / 2]), us(samples[n * 99 / 100]))
}

fn main() {
    let a = Authorizer::new(&["Node".into(), "RBAC".into()], source, graph).expect("authorizer");
    let n = 2000;
    println!("| decision | p50 | p99 |");
    println!("|---|---|---|");
    let row = |what: &str, user: UserInfo, attrs: Attributes, allowed: bool| {
        assert_eq!(a.authorize(&user, &attrs).allowed(), allowed, "{what}");
        let (p50, p99) = time(n, || {
            black_box(a.authorize(&user, &attrs));
        });
        println!("| {what} | {p50:.1} µs | {p99:.1} µs |");
    };
    row(
        "system:masters (before any mode)",
        UserInfo::new("admin", &["system:masters", "system:authenticated"]),
        Attributes::resource("delete", "", "nodes", "", "n1"),
        true,
    );
    row(
        "controller account, allowed by a ClusterRoleBinding",
        UserInfo::new(
            "system:serviceaccount:kube-system:generic-garbage-collector",
            &["system:serviceaccounts", "system:authenticated"],
        ),
        Attributes::resource("delete", "apps", "replicasets", "team", "r"),
        true,
    );
    row(
        "user allowed by the 1000th RoleBinding",
        UserInfo::new("user999", &["system:authenticated"]),
        Attributes::resource("list", "", "pods", "team", ""),
        true,
    );
    row(
        "user denied (every binding walked)",
        UserInfo::new("nobody", &["system:authenticated"]),
        Attributes::resource("list", "", "secrets", "team", ""),
        false,
    );
    row(
        "kubelet reading a secret of one of its 200 pods",
        UserInfo::new("system:node:n1", &["system:nodes", "system:authenticated"]),
        Attributes::resource("get", "", "secrets", "team", "s199"),
        true,
    );

    let path = std::env::temp_dir().join(format!("keelson-bench-{}.key", std::process::id()));
    std::fs::write(&path, jwt::generate_pem().expect("key")).expect("write key");
    let key = Key::load_private(&path).expect("key");
    let _ = std::fs::remove_file(&path);
    let iss = "https://kubernetes.default.svc.cluster.local";
    let sa = json!({"metadata": {"name": "sa", "uid": "u"}});
    let now = apiserver::meta::unix_now();
    let (token, _) = Signer::new(key.clone(), iss).issue(
        "team",
        &sa,
        &[iss.into()],
        3600,
        false,
        None,
        None,
        now,
    );
    let authn = Authenticator::new(
        vec![key.verifying_key()],
        vec![iss.into()],
        vec![iss.into()],
        Box::new(OneAccount),
    );
    let (p50, p99) = time(n, || {
        black_box(authn.verify(&token, &[]).expect("valid").expect("ours"));
    });
    println!("| verifying a service account token (ES256) | {p50:.1} µs | {p99:.1} µs |");
}
