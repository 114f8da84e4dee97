//! Authentication and authorization against the real kubectl: client certificates,
//! tokens and anonymous access (401 and 403 in upstream's words), RBAC with the
//! bootstrap policy, escalation prevention, impersonation, the Node authorizer and
//! the review APIs (`kubectl auth can-i`, `--list`, `whoami`).

use std::path::Path;

use std::time::{Duration, Instant};

use e2e::{ApiServer, ControllerManager, have_kubectl};

const K: &str = "kubectl.1.33";

/// Runs kubectl as the user of `kubeconfig`; (success, stdout, stderr).
fn as_user(s: &ApiServer, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let kc = format!("--kubeconfig={}", kubeconfig.display());
    let mut all = vec![kc.as_str()];
    all.extend_from_slice(args);
    let out = s.kubectl(K, &all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn denied(s: &ApiServer, kubeconfig: &Path, args: &[&str], want: &str) {
    let (ok, out, err) = as_user(s, kubeconfig, args);
    assert!(!ok, "{args:?} should be refused: {out}");
    assert!(err.contains(want), "{args:?}: want {want:?}, got {err}");
}

fn allowed(s: &ApiServer, kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = as_user(s, kubeconfig, args);
    assert!(ok, "{args:?} should be allowed: {out}{err}");
    out
}

/// `kubectl auth can-i` as the admin, impersonating `user` (and groups).
fn can_i(s: &ApiServer, user: &str, groups: &[&str], what: &[&str]) -> bool {
    let mut args = vec!["auth", "can-i"];
    args.extend_from_slice(what);
    let as_user = format!("--as={user}");
    args.push(&as_user);
    let gs: Vec<String> = groups.iter().map(|g| format!("--as-group={g}")).collect();
    args.extend(gs.iter().map(String::as_str));
    let out = s.kubectl(K, &args);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        text == "yes" || text == "no",
        "can-i {what:?} as {user}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text == "yes"
}

/// Starts a controller manager as kubeadm does (its own identity, a service account
/// per controller) and waits until its clusterrole-aggregation controller has filled
/// in `admin`, `edit` and `view`.
fn aggregated(s: &ApiServer) -> ControllerManager {
    let kc = s.write_kubeconfig("kcm.conf", "system:kube-controller-manager", None);
    let kcm = ControllerManager::start_as(s, &kc, "kcm", &["--use-service-account-credentials"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    for role in ["admin", "edit", "view"] {
        loop {
            let rules = s.ok(
                K,
                &[
                    "get",
                    "clusterrole",
                    role,
                    "-o",
                    "jsonpath={.rules[*].verbs}",
                ],
            );
            if !rules.trim().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{role} not aggregated: {}",
                kcm.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    kcm
}

#[test]
fn unauthenticated_requests_are_refused() {
    if !have_kubectl() {
        return;
    }
    const UNAUTHORIZED: &str = "error: You must be logged in to the server (the server has asked for the client to provide credentials)";
    let s = ApiServer::start_with(&["--anonymous-auth=false"]);
    // No credentials at all (kubectl would prompt for a password): upstream's 401.
    let (code, body) = e2e::https_get(s.port, "/api/v1/namespaces/default/pods", &[]);
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
    );
    let bad = s.write_token_kubeconfig("bad.conf", "not-a-token");
    denied(&s, &bad, &["get", "pods"], UNAUTHORIZED);
    // A certificate from another CA: a 401, not a TLS failure.
    let other = ApiServer::start();
    let (crt, key) = other.client_cert("mallory", Some("system:masters"));
    let foreign = s.dir.path().join("foreign.conf");
    let text = std::fs::read_to_string(s.kubeconfig())
        .unwrap()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("client-certificate:") {
                format!("    client-certificate: {}", crt.display())
            } else if l.trim_start().starts_with("client-key:") {
                format!("    client-key: {}", key.display())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&foreign, text).unwrap();
    denied(&s, &foreign, &["get", "pods"], UNAUTHORIZED);
    // Token and certificate kubeconfigs both work.
    let tok = s.write_token_kubeconfig("token.conf", e2e::ADMIN_TOKEN);
    assert!(allowed(&s, &tok, &["get", "ns"]).contains("kube-system"));
    assert!(s.ok(K, &["get", "ns"]).contains("kube-system"));
    assert_eq!(
        s.ok(
            K,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}"
            ]
        ),
        "kubernetes-admin"
    );

    // With anonymous access on (the default), no credentials is system:anonymous,
    // who may read the version and health but nothing else.
    let (code, body) = e2e::https_get(other.port, "/api/v1/namespaces/default/pods", &[]);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(r#""message":"pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"""#)
            && body.contains(r#""details":{"kind":"pods"}"#),
        "{body}"
    );
    assert_eq!(e2e::https_get(other.port, "/version", &[]).0, 200);
    let (code, body) = e2e::https_get(other.port, "/api", &[]);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(
            r#""message":"forbidden: User \"system:anonymous\" cannot get path \"/api\"""#
        ),
        "{body}"
    );
    // A bad token is never anonymous.
    let bad = other.write_token_kubeconfig("bad.conf", "not-a-token");
    denied(&other, &bad, &["get", "--raw", "/version"], "Unauthorized");
}

#[test]
fn rbac_escalation_and_impersonation() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let _kcm = aggregated(&s);
    s.ok(K, &["create", "namespace", "dev"]);
    s.ok(
        K,
        &[
            "create",
            "secret",
            "generic",
            "s",
            "-n",
            "dev",
            "--from-literal=a=b",
        ],
    );
    let bob = s.write_kubeconfig("bob.conf", "bob", None);
    // Nothing granted yet.
    denied(
        &s,
        &bob,
        &["get", "pods", "-n", "dev"],
        r#"Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "dev""#,
    );
    s.ok(
        K,
        &[
            "create",
            "rolebinding",
            "bob-view",
            "--clusterrole=view",
            "--user=bob",
            "-n",
            "dev",
        ],
    );
    allowed(&s, &bob, &["get", "pods", "-n", "dev"]);
    allowed(
        &s,
        &bob,
        &["get", "deployments,services,configmaps", "-n", "dev"],
    );
    denied(
        &s,
        &bob,
        &["get", "secret", "s", "-n", "dev"],
        r#"secrets "s" is forbidden: User "bob" cannot get resource "secrets" in API group "" in the namespace "dev""#,
    );
    denied(
        &s,
        &bob,
        &["create", "deployment", "web", "--image=nginx", "-n", "dev"],
        "cannot create resource \"deployments\" in API group \"apps\"",
    );
    // A namespace-scoped user listing cluster-scoped resources.
    denied(
        &s,
        &bob,
        &["get", "nodes"],
        r#"nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope"#,
    );
    // Cluster-scoped resources have no namespaced paths: a namespace's bindings,
    // even to everything, never reach them.
    s.ok(
        K,
        &[
            "create",
            "role",
            "everything",
            "--verb=*",
            "--resource=*.*",
            "-n",
            "dev",
        ],
    );
    s.ok(
        K,
        &[
            "create",
            "rolebinding",
            "eve",
            "--role=everything",
            "--user=eve",
            "-n",
            "dev",
        ],
    );
    let eve = s.write_kubeconfig("eve.conf", "eve", None);
    allowed(&s, &eve, &["get", "pods", "-n", "dev"]);
    for path in [
        "/api/v1/namespaces/dev/nodes",
        "/api/v1/namespaces/dev/namespaces/kube-system",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/clusterroles",
    ] {
        denied(
            &s,
            &eve,
            &["get", "--raw", path],
            "Error from server (NotFound): the server could not find the requested resource",
        );
    }
    denied(&s, &eve, &["get", "nodes"], "at the cluster scope");
    // can-i and the rules review.
    assert_eq!(
        allowed(&s, &bob, &["auth", "can-i", "list", "pods", "-n", "dev"]).trim(),
        "yes"
    );
    let (ok, out, _) = as_user(&s, &bob, &["auth", "can-i", "get", "secrets", "-n", "dev"]);
    assert!(!ok && out.trim() == "no", "{out}");
    for bin in e2e::installed_kubectls() {
        let list = String::from_utf8_lossy(
            &s.kubectl(
                bin,
                &[
                    &format!("--kubeconfig={}", bob.display()),
                    "auth",
                    "can-i",
                    "--list",
                    "-n",
                    "dev",
                ],
            )
            .stdout,
        )
        .into_owned();
        assert!(
            list.lines()
                .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
            "{bin}: {list}"
        );
        assert!(
            list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
            "{bin}: {list}"
        );
        assert!(
            !list.lines().any(|l| l.starts_with("secrets ")),
            "{bin}: {list}"
        );
    }
    assert_eq!(
        allowed(
            &s,
            &bob,
            &["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"]
        ),
        r#"["system:authenticated"]"#
    );

    // Escalation: carol may write roles and bindings in dev and read pods, no more.
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role-writer, namespace: dev}
rules:
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, get, list, update]
- apiGroups: ['']
  resources: [pods]
  verbs: [get, list]
",
        ),
    );
    s.ok(
        K,
        &[
            "create",
            "rolebinding",
            "carol",
            "--role=role-writer",
            "--user=carol",
            "-n",
            "dev",
        ],
    );
    let carol = s.write_kubeconfig("carol.conf", "carol", None);
    allowed(
        &s,
        &carol,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get",
            "--resource=pods",
            "-n",
            "dev",
        ],
    );
    denied(
        &s,
        &carol,
        &[
            "create",
            "role",
            "secret-reader",
            "--verb=get",
            "--resource=secrets",
            "-n",
            "dev",
        ],
        "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"carol\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}",
    );
    allowed(
        &s,
        &carol,
        &[
            "create",
            "rolebinding",
            "dave",
            "--role=pod-reader",
            "--user=dave",
            "-n",
            "dev",
        ],
    );
    denied(
        &s,
        &carol,
        &[
            "create",
            "rolebinding",
            "root",
            "--clusterrole=cluster-admin",
            "--user=carol",
            "-n",
            "dev",
        ],
        "rolebindings.rbac.authorization.k8s.io \"root\" is forbidden: user \"carol\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:",
    );
    // With the bind verb on the role, the binding is allowed.
    s.ok(
        K,
        &[
            "create",
            "role",
            "binder",
            "--verb=bind",
            "--resource=clusterroles",
            "--resource-name=view",
            "-n",
            "dev",
        ],
    );
    s.ok(
        K,
        &[
            "create",
            "rolebinding",
            "carol-binder",
            "--role=binder",
            "--user=carol",
            "-n",
            "dev",
        ],
    );
    allowed(
        &s,
        &carol,
        &[
            "create",
            "rolebinding",
            "erin-view",
            "--clusterrole=view",
            "--user=erin",
            "-n",
            "dev",
        ],
    );

    // Impersonation needs the impersonate verb.
    denied(
        &s,
        &bob,
        &["get", "pods", "-n", "dev", "--as=carol"],
        r#"users "carol" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#,
    );
    // The admin may impersonate, and then meets bob's permissions.
    s.ok(K, &["get", "pods", "-n", "dev", "--as=bob"]);
    let e = s.fails(K, &["get", "secrets", "-n", "dev", "--as=bob"], None);
    assert!(
        e.contains(r#"User "bob" cannot list resource "secrets""#),
        "{e}"
    );

    // SubjectAccessReview for another user.
    let out = s.ok_stdin(
        K,
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.allowed} {.status.reason}",
        ],
        Some(
            "apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: bob
  resourceAttributes: {namespace: dev, verb: list, resource: pods}
",
        ),
    );
    assert_eq!(
        out,
        r#"true RBAC: allowed by RoleBinding "bob-view/dev" of ClusterRole "view" to User "bob""#
            .replace("bob-view/dev", "dev/bob-view")
    );
}

#[test]
fn kubelets_reach_only_their_pods_secrets() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start_with(&["--enable-admission-plugins=NodeRestriction"]);
    s.ok(K, &["create", "namespace", "dev"]);
    for n in ["s1", "s2"] {
        s.ok(
            K,
            &[
                "create",
                "secret",
                "generic",
                n,
                "-n",
                "dev",
                "--from-literal=a=b",
            ],
        );
    }
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1
kind: Pod
metadata: {name: p, namespace: dev}
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox
    envFrom: [{secretRef: {name: s1}}]
",
        ),
    );
    let n1 = s.write_kubeconfig("n1.conf", "system:node:n1", Some("system:nodes"));
    let n2 = s.write_kubeconfig("n2.conf", "system:node:n2", Some("system:nodes"));
    allowed(&s, &n1, &["get", "secret", "s1", "-n", "dev"]);
    denied(
        &s,
        &n1,
        &["get", "secret", "s2", "-n", "dev"],
        r#"secrets "s2" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "dev": no relationship found between node 'n1' and this object"#,
    );
    denied(
        &s,
        &n2,
        &["get", "secret", "s1", "-n", "dev"],
        "no relationship found between node 'n2' and this object",
    );
    denied(
        &s,
        &n1,
        &["get", "secrets", "-n", "dev"],
        "can only get individual resources of this type",
    );
    allowed(&s, &n1, &["get", "pods", "-A"]);
    allowed(&s, &n1, &["get", "nodes"]);
    denied(
        &s,
        &n1,
        &["delete", "namespace", "dev"],
        r#"User "system:node:n1" cannot delete resource "namespaces""#,
    );
    // NodeRestriction: its own Node and mirror pods bound to it, nothing else.
    for n in ["n1", "n2"] {
        s.ok_stdin(
            K,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n"
            )),
        );
    }
    allowed(&s, &n1, &["label", "node", "n1", "disk=ssd"]);
    denied(
        &s,
        &n1,
        &["label", "node", "n2", "disk=ssd"],
        r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#,
    );
    denied(
        &s,
        &n1,
        &[
            "label",
            "node",
            "n1",
            "node-restriction.kubernetes.io/pool=a",
        ],
        "is not allowed to modify labels: node-restriction.kubernetes.io/pool",
    );
    let mirror = |node: &str, name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: dev\n  annotations: {{kubernetes.io/config.mirror: mirror}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: busybox}}]\n"
        )
    };
    let kc = format!("--kubeconfig={}", n1.display());
    let out = s.kubectl_stdin(
        K,
        &[&kc, "create", "-f", "-"],
        Some(&mirror("n1", "static-web")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = String::from_utf8_lossy(
        &s.kubectl_stdin(
            K,
            &[&kc, "create", "-f", "-"],
            Some(&mirror("n2", "elsewhere")),
        )
        .stderr,
    )
    .into_owned();
    assert!(e.contains(r#"pods "elsewhere" is forbidden: node "n1" can only create pods with spec.nodeName set to itself"#), "{e}");
    s.ok_stdin(
        K,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: q, namespace: dev}\nspec:\n  nodeName: n2\n  containers: [{name: c, image: busybox}]\n"),
    );
    denied(
        &s,
        &n1,
        &["delete", "pod", "q", "-n", "dev"],
        r#"pods "q" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself"#,
    );
}

#[test]
fn bootstrap_roles_hold_upstreams_permissions() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let _kcm = aggregated(&s);
    let sched = "system:kube-scheduler";
    assert!(can_i(
        &s,
        sched,
        &[],
        &["create", "pods", "--subresource=binding"]
    ));
    assert!(can_i(&s, sched, &[], &["list", "nodes"]));
    assert!(can_i(
        &s,
        sched,
        &[],
        &["update", "pods", "--subresource=status"]
    ));
    assert!(can_i(&s, sched, &[], &["create", "events.events.k8s.io"]));
    assert!(!can_i(&s, sched, &[], &["delete", "nodes"]));
    assert!(!can_i(
        &s,
        sched,
        &[],
        &["get", "secrets", "-n", "kube-system"]
    ));
    let kcm = "system:kube-controller-manager";
    assert!(can_i(&s, kcm, &[], &["list", "secrets", "-A"]));
    assert!(can_i(
        &s,
        kcm,
        &[],
        &["create", "serviceaccounts/token", "-n", "kube-system"]
    ));
    assert!(!can_i(
        &s,
        kcm,
        &[],
        &["delete", "deployments", "-n", "default"]
    ));
    let proxy = "system:kube-proxy";
    assert!(can_i(
        &s,
        proxy,
        &[],
        &["list", "endpointslices.discovery.k8s.io"]
    ));
    assert!(can_i(&s, proxy, &[], &["watch", "services"]));
    assert!(!can_i(&s, proxy, &[], &["delete", "pods"]));
    let gc = "system:serviceaccount:kube-system:generic-garbage-collector";
    assert!(can_i(
        &s,
        gc,
        &[],
        &["delete", "replicasets.apps", "-n", "default"]
    ));
    let rs = "system:serviceaccount:kube-system:replicaset-controller";
    assert!(can_i(&s, rs, &[], &["create", "pods", "-n", "default"]));
    assert!(!can_i(&s, rs, &[], &["delete", "nodes"]));
    // Every authenticated user: discovery, self reviews; anonymous: version only.
    let auth = &["system:authenticated"][..];
    assert!(can_i(&s, "zed", auth, &["get", "/api"]));
    assert!(can_i(
        &s,
        "zed",
        auth,
        &["create", "selfsubjectaccessreviews.authorization.k8s.io"]
    ));
    assert!(!can_i(&s, "zed", auth, &["list", "pods"]));
    let anon = &["system:unauthenticated"][..];
    // Anonymous users cannot ask for themselves; a SubjectAccessReview asks for them.
    let sar = |path: &str| {
        let out = s.ok_stdin(
            K,
            &["create", "-f", "-", "-o", "jsonpath={.status.allowed}"],
            Some(&format!(
                "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  user: system:anonymous\n  groups: {anon:?}\n  nonResourceAttributes: {{verb: get, path: {path}}}\n"
            )),
        );
        out == "true"
    };
    assert!(sar("/version"));
    assert!(sar("/healthz"));
    assert!(!sar("/api"));
    // view < edit < admin, through RoleBindings in a namespace.
    s.ok(K, &["create", "namespace", "team"]);
    for role in ["view", "edit", "admin"] {
        s.ok(
            K,
            &[
                "create",
                "rolebinding",
                role,
                &format!("--clusterrole={role}"),
                &format!("--user={role}-user"),
                "-n",
                "team",
            ],
        );
    }
    let ns = ["-n", "team"];
    let check = |u: &str, verb: &str, res: &str| {
        let mut w = vec![verb, res];
        w.extend_from_slice(&ns);
        can_i(&s, u, &[], &w)
    };
    assert!(check("view-user", "list", "pods"));
    assert!(!check("view-user", "get", "secrets"));
    assert!(!check("view-user", "create", "pods"));
    assert!(check("edit-user", "create", "deployments.apps"));
    assert!(check("edit-user", "get", "secrets"));
    assert!(!check(
        "edit-user",
        "create",
        "roles.rbac.authorization.k8s.io"
    ));
    assert!(check(
        "admin-user",
        "create",
        "roles.rbac.authorization.k8s.io"
    ));
    assert!(check(
        "admin-user",
        "create",
        "rolebindings.rbac.authorization.k8s.io"
    ));
    assert!(!check("admin-user", "create", "resourcequotas"));
    assert!(!can_i(&s, "admin-user", &[], &["list", "nodes"]));
    assert!(can_i(&s, "root", &["system:masters"], &["delete", "nodes"]));
    // The controllers run as their own service accounts, and the garbage collector
    // can still do its work with just its role.
    s.ok(
        K,
        &[
            "get",
            "serviceaccount",
            "-n",
            "kube-system",
            "generic-garbage-collector",
            "clusterrole-aggregation-controller",
        ],
    );
    s.ok(K, &["create", "configmap", "owner", "-n", "team"]);
    let uid = s.ok(
        K,
        &[
            "get",
            "configmap",
            "owner",
            "-n",
            "team",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
    );
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  namespace: team\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}]\n"
        )),
    );
    s.ok(K, &["delete", "configmap", "owner", "-n", "team"]);
    assert!(
        s.wait_gone(
            K,
            &["configmap", "dependent", "-n", "team"],
            Duration::from_secs(30)
        ),
        "the garbage collector did not delete the dependent"
    );
    // The bootstrap objects are there, labelled as upstream's.
    let roles = s.ok(
        K,
        &[
            "get",
            "clusterroles",
            "-l",
            "kubernetes.io/bootstrapping=rbac-defaults",
            "-o",
            "name",
        ],
    );
    for r in [
        "cluster-admin",
        "system:node-proxier",
        "system:controller:namespace-controller",
    ] {
        assert!(
            roles.contains(&format!("clusterrole.rbac.authorization.k8s.io/{r}\n")),
            "{r}: {roles}"
        );
    }
}

#[test]
fn service_account_tokens() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    s.ok(K, &["create", "namespace", "dev"]);
    s.ok(K, &["create", "serviceaccount", "builder", "-n", "dev"]);
    s.ok(
        K,
        &[
            "create",
            "role",
            "pods",
            "--verb=get,list",
            "--resource=pods",
            "-n",
            "dev",
        ],
    );
    s.ok(
        K,
        &[
            "create",
            "rolebinding",
            "builder",
            "--role=pods",
            "--serviceaccount=dev:builder",
            "-n",
            "dev",
        ],
    );
    let token = s.ok(K, &["create", "token", "builder", "-n", "dev"]);
    let kc = s.write_token_kubeconfig("builder.conf", token.trim());
    // A 3607-second request that is not a kubelet's (no pod binding) is not extended.
    let t3607 = s.ok(
        K,
        &[
            "create",
            "token",
            "builder",
            "-n",
            "dev",
            "--duration=3607s",
        ],
    );
    let claims: serde_json::Value = {
        use base64::Engine;
        let part = t3607.trim().split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3607,
        "{claims}"
    );
    allowed(&s, &kc, &["get", "pods", "-n", "dev"]);
    denied(
        &s,
        &kc,
        &["get", "secrets", "-n", "dev"],
        r#"secrets is forbidden: User "system:serviceaccount:dev:builder" cannot list resource "secrets" in API group "" in the namespace "dev""#,
    );
    assert_eq!(
        allowed(
            &s,
            &kc,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"
            ]
        ),
        r#"system:serviceaccount:dev:builder ["system:serviceaccounts","system:serviceaccounts:dev","system:authenticated"]"#
    );
    // Service accounts may read the issuer's discovery documents; anonymous may not.
    let bearer = format!("Bearer {}", token.trim());
    let (code, conf) = e2e::https_get(
        s.port,
        "/.well-known/openid-configuration",
        &[("authorization", &bearer)],
    );
    assert_eq!(code, 200, "{conf}");
    let conf: serde_json::Value = serde_json::from_str(&conf).unwrap();
    assert_eq!(
        conf["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        conf["jwks_uri"],
        "https://kubernetes.default.svc.cluster.local/openid/v1/jwks"
    );
    let (code, jwks) = e2e::https_get(s.port, "/openid/v1/jwks", &[("authorization", &bearer)]);
    assert_eq!(code, 200, "{jwks}");
    let jwks: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(jwks["keys"][0]["use"], "sig");
    assert_eq!(e2e::https_get(s.port, "/openid/v1/jwks", &[]).0, 403);

    // TokenReview says who a token is.
    let review = s.ok_stdin(
        K,
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.authenticated} {.status.user.username}",
        ],
        Some(&format!(
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {}\n",
            token.trim()
        )),
    );
    assert_eq!(review, "true system:serviceaccount:dev:builder");

    // Another audience, too short a life, a missing account: refused.
    const UNAUTHORIZED: &str = "You must be logged in to the server";
    let vault = s.ok(
        K,
        &[
            "create",
            "token",
            "builder",
            "-n",
            "dev",
            "--audience=vault",
        ],
    );
    let kc_vault = s.write_token_kubeconfig("vault.conf", vault.trim());
    denied(&s, &kc_vault, &["get", "pods", "-n", "dev"], UNAUTHORIZED);
    let e = s.fails(
        K,
        &["create", "token", "builder", "-n", "dev", "--duration=1m"],
        None,
    );
    assert!(
        e.contains(r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#),
        "{e}"
    );
    let e = s.fails(K, &["create", "token", "nobody", "-n", "dev"], None);
    assert!(e.contains(r#"serviceaccounts "nobody" not found"#), "{e}");

    // A token bound to a pod dies with the pod.
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: dev}\nspec:\n  serviceAccountName: builder\n  containers: [{name: c, image: busybox}]\n"),
    );
    let bound = s.ok(
        K,
        &[
            "create",
            "token",
            "builder",
            "-n",
            "dev",
            "--bound-object-kind=Pod",
            "--bound-object-name=p",
        ],
    );
    let kc_bound = s.write_token_kubeconfig("bound.conf", bound.trim());
    allowed(&s, &kc_bound, &["get", "pods", "-n", "dev"]);
    let who = allowed(
        &s,
        &kc_bound,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo.extra}"],
    );
    assert!(
        who.contains(r#""authentication.kubernetes.io/pod-name":["p"]"#),
        "{who}"
    );
    s.ok(
        K,
        &[
            "delete",
            "pod",
            "p",
            "-n",
            "dev",
            "--grace-period=0",
            "--force",
        ],
    );
    assert!(s.wait_gone(K, &["pod", "p", "-n", "dev"], Duration::from_secs(10)));
    denied(&s, &kc_bound, &["get", "pods", "-n", "dev"], UNAUTHORIZED);
    // Deleting the account ends its tokens too.
    s.ok(K, &["delete", "serviceaccount", "builder", "-n", "dev"]);
    assert!(s.wait_gone(
        K,
        &["serviceaccount", "builder", "-n", "dev"],
        Duration::from_secs(10)
    ));
    denied(&s, &kc, &["get", "pods", "-n", "dev"], UNAUTHORIZED);
}

/// The embedded store's client URL, from the apiserver's log.
fn store_url(s: &ApiServer) -> String {
    let log = s.log();
    let i = log
        .rfind("started the embedded store url=")
        .expect("store url in the log");
    let rest = &log[i + "started the embedded store url=".len()..];
    rest.trim_start_matches('"')
        .split(['"', ' '])
        .next()
        .unwrap()
        .to_owned()
}

/// The raw value of `key`, read from the store with etcdctl.
fn etcdctl_get(s: &ApiServer, key: &str) -> Vec<u8> {
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &store_url(s),
            "get",
            key,
            "--print-value-only",
        ])
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn secrets_are_encrypted_at_rest() {
    if !have_kubectl()
        || std::process::Command::new("etcdctl")
            .arg("version")
            .output()
            .is_err()
    {
        eprintln!("skipping: kubectl or etcdctl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("encryption.yaml");
    let key1 = "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/IDMyIGI=";
    let key2 = "AAECAwQFBgcICQoLDA0ODw==";
    std::fs::write(
        &config,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - {{name: key1, secret: '{key1}'}}\n  - identity: {{}}\n"
        ),
    )
    .unwrap();
    let flag = format!("--encryption-provider-config={}", config.display());
    let mut s = ApiServer::start_with(&[&flag]);
    s.ok(
        K,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=hunter2",
        ],
    );
    s.ok(
        K,
        &[
            "create",
            "configmap",
            "plain",
            "--from-literal=note=visible",
        ],
    );
    let raw = etcdctl_get(&s, "/registry/secrets/default/db");
    assert!(
        raw.starts_with(b"k8s:enc:aescbc:v1:key1:"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    for needle in [&b"hunter2"[..], b"aHVudGVyMg=="] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "plaintext in the store"
        );
    }
    assert!(
        String::from_utf8_lossy(&etcdctl_get(&s, "/registry/configmaps/default/plain"))
            .contains("visible")
    );
    assert_eq!(
        s.ok(
            K,
            &["get", "secret", "db", "-o", "jsonpath={.data.password}"]
        ),
        "aHVudGVyMg=="
    );

    // Rotation: a new first key; old data still reads, rewritten data uses the new key.
    std::fs::write(
        &config,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - {{name: key2, secret: '{key2}'}}\n  - aescbc:\n      keys:\n      - {{name: key1, secret: '{key1}'}}\n"
        ),
    )
    .unwrap();
    s.restart();
    assert_eq!(
        s.ok(
            K,
            &["get", "secret", "db", "-o", "jsonpath={.data.password}"]
        ),
        "aHVudGVyMg=="
    );
    let json = s.ok(K, &["get", "secret", "db", "-o", "json"]);
    s.ok_stdin(K, &["replace", "-f", "-"], Some(&json));
    assert!(
        etcdctl_get(&s, "/registry/secrets/default/db").starts_with(b"k8s:enc:aesgcm:v1:key2:")
    );
    assert_eq!(
        s.ok(
            K,
            &["get", "secret", "db", "-o", "jsonpath={.data.password}"]
        ),
        "aHVudGVyMg=="
    );
}

#[test]
fn bootstrap_tokens() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start_with(&["--enable-bootstrap-token-auth"]);
    s.ok(
        K,
        &[
            "create",
            "secret",
            "generic",
            "bootstrap-token-abcdef",
            "-n",
            "kube-system",
            "--type=bootstrap.kubernetes.io/token",
            "--from-literal=token-id=abcdef",
            "--from-literal=token-secret=0123456789abcdef",
            "--from-literal=usage-bootstrap-authentication=true",
            "--from-literal=auth-extra-groups=system:bootstrappers:kubeadm:default-node-token",
        ],
    );
    let kc = s.write_token_kubeconfig("bootstrap.conf", "abcdef.0123456789abcdef");
    assert_eq!(
        allowed(
            &s,
            &kc,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username} {.status.userInfo.groups}"
            ]
        ),
        r#"system:bootstrap:abcdef ["system:bootstrappers","system:bootstrappers:kubeadm:default-node-token","system:authenticated"]"#
    );
    denied(
        &s,
        &kc,
        &["get", "secrets", "-n", "kube-system"],
        r#"User "system:bootstrap:abcdef" cannot list resource "secrets""#,
    );
    let wrong = s.write_token_kubeconfig("wrong.conf", "abcdef.0000000000000000");
    denied(
        &s,
        &wrong,
        &["auth", "whoami"],
        "You must be logged in to the server",
    );
    s.ok(
        K,
        &[
            "delete",
            "secret",
            "bootstrap-token-abcdef",
            "-n",
            "kube-system",
        ],
    );
    assert!(s.wait_gone(
        K,
        &["secret", "bootstrap-token-abcdef", "-n", "kube-system"],
        Duration::from_secs(10)
    ));
    denied(
        &s,
        &kc,
        &["auth", "whoami"],
        "You must be logged in to the server",
    );
}

#[test]
fn audit_log_follows_the_policy() {
    if !have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let log = dir.path().join("audit/audit.log");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ['/healthz*', '/readyz*', '/livez*', /version, '/openapi*', /api, '/api/*', /apis, '/apis/*']
- level: Metadata
  resources: [{group: '', resources: [secrets]}]
- level: RequestResponse
  resources: [{group: '', resources: [configmaps]}]
- level: None
",
    )
    .unwrap();
    let s = ApiServer::start_with(&[
        &format!("--audit-policy-file={}", policy.display()),
        &format!("--audit-log-path={}", log.display()),
        "--audit-log-maxbackup=3",
    ]);
    s.ok(
        K,
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=password=hunter2",
        ],
    );
    s.ok(K, &["create", "configmap", "c", "--from-literal=k=v"]);
    let bob = s.write_kubeconfig("bob.conf", "bob", None);
    denied(&s, &bob, &["get", "configmap", "c"], "forbidden");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("aHVudGVyMg"),
        "secret data in the audit log"
    );
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["apiVersion"] == "audit.k8s.io/v1" && e["kind"] == "Event")
    );
    assert!(
        events.iter().all(|e| e["stage"] != "RequestReceived"),
        "omitted stage logged"
    );
    assert!(
        !events.iter().any(|e| e["requestURI"] == "/api"),
        "discovery logged"
    );
    let find = |verb: &str, resource: &str, user: &str| {
        events
            .iter()
            .find(|e| {
                e["verb"] == verb
                    && e["objectRef"]["resource"] == resource
                    && e["user"]["username"] == user
            })
            .unwrap_or_else(|| panic!("no {verb} {resource} by {user} in {text}"))
    };
    let secret = find("create", "secrets", "kubernetes-admin");
    assert_eq!(secret["level"], "Metadata");
    assert_eq!(secret["stage"], "ResponseComplete");
    assert_eq!(secret["responseStatus"]["code"], 201);
    assert_eq!(secret["objectRef"]["namespace"], "default");
    assert_eq!(
        secret["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    assert!(secret.get("requestObject").is_none());
    let cm = find("create", "configmaps", "kubernetes-admin");
    assert_eq!(cm["level"], "RequestResponse");
    assert_eq!(cm["requestObject"]["data"]["k"], "v");
    assert_eq!(cm["responseObject"]["metadata"]["name"], "c");
    let refused = find("get", "configmaps", "bob");
    assert_eq!(refused["responseStatus"]["code"], 403);
    assert_eq!(
        refused["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert!(
        refused["responseStatus"]["message"]
            .as_str()
            .unwrap()
            .contains(r#"User "bob" cannot get resource "configmaps""#)
    );
    assert!(!refused["auditID"].as_str().unwrap().is_empty());

    // A failed authentication is logged at ResponseStarted, judged as nobody's.
    let (code, _) = e2e::https_get(
        s.port,
        "/api/v1/namespaces/default/secrets",
        &[("authorization", "Bearer not-a-token")],
    );
    assert_eq!(code, 401);
    // A watch is logged when it starts and again when it ends.
    let _ = s.kubectl(K, &["get", "secrets", "--watch", "--request-timeout=1s"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed = events
        .iter()
        .find(|e| e["responseStatus"]["code"] == 401)
        .unwrap_or_else(|| panic!("no 401 in {text}"));
    assert_eq!(failed["stage"], "ResponseStarted");
    assert_eq!(
        failed["responseStatus"]["message"],
        "Authentication failed, attempted: bearer"
    );
    assert_eq!(failed["objectRef"]["resource"], "secrets");
    let watch_stages: Vec<&str> = events
        .iter()
        .filter(|e| e["verb"] == "watch" && e["objectRef"]["resource"] == "secrets")
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        watch_stages,
        ["ResponseStarted", "ResponseComplete"],
        "{text}"
    );
}

/// A PEM certificate request for `cn` in `org`, base64-encoded as a CSR object's
/// `spec.request`.
fn csr_request(cn: &str, org: &str) -> String {
    use base64::Engine as _;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, org);
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    base64::engine::general_purpose::STANDARD.encode(pem)
}

fn csr(name: &str, signer: &str, org: &str) -> String {
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {}\n  signerName: {signer}\n  usages: [client auth]\n",
        csr_request(name, org)
    )
}

/// The certificate plugins: approving needs `approve` on the signer, issuing needs
/// `sign`, and nobody may ask the apiserver-client signer for system:masters.
#[test]
fn certificate_requests_need_signer_permissions() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some("apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: csr-handler}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests, certificatesigningrequests/approval, certificatesigningrequests/status]
  verbs: [create, get, list, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-csr}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csr-handler}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
"),
    );
    let alice = s.write_kubeconfig("alice.conf", "alice", None);
    let create = |kc: &Path, text: &str| {
        let out = s.kubectl_stdin(
            K,
            &[
                &format!("--kubeconfig={}", kc.display()),
                "create",
                "-f",
                "-",
            ],
            Some(text),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(create(&alice, &csr("one", "example.com/signer", "dev")).0);
    denied(
        &s,
        &alice,
        &["certificate", "approve", "one"],
        r#"certificatesigningrequests.certificates.k8s.io "one" is forbidden: user not permitted to approve requests with signerName "example.com/signer""#,
    );
    // The domain wildcard is enough.
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: example-approver}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [signers]
  resourceNames: [example.com/*]
  verbs: [approve]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-approves}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: example-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
",
        ),
    );
    allowed(&s, &alice, &["certificate", "approve", "one"]);
    assert_eq!(
        s.ok(
            K,
            &[
                "get",
                "csr",
                "one",
                "-o",
                "jsonpath={.status.conditions[0].type} {.spec.signerName}"
            ]
        ),
        "Approved example.com/signer"
    );
    // Issuing the certificate needs `sign`.
    let mut issued: serde_json::Value =
        serde_json::from_str(&s.ok(K, &["get", "csr", "one", "-o", "json"])).unwrap();
    use base64::Engine as _;
    let pem = std::fs::read(s.dir.path().join("pki/ca.crt")).unwrap();
    issued["status"]["certificate"] =
        serde_json::json!(base64::engine::general_purpose::STANDARD.encode(pem));
    let kc = format!("--kubeconfig={}", alice.display());
    let out = s.kubectl_stdin(
        K,
        &[&kc, "replace", "--subresource=status", "-f", "-"],
        Some(&issued.to_string()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"certificatesigningrequests.certificates.k8s.io "one" is forbidden: user not permitted to sign requests with signerName "example.com/signer""#),
        "{err}"
    );
    // system:masters is never requested from the apiserver-client signer, even by an admin.
    let (ok, err) = create(
        &s.kubeconfig(),
        &csr(
            "evil",
            "kubernetes.io/kube-apiserver-client",
            "system:masters",
        ),
    );
    assert!(!ok);
    assert!(
        err.contains(r#"certificatesigningrequests.certificates.k8s.io "evil" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"#),
        "{err}"
    );
    assert!(
        create(
            &s.kubeconfig(),
            &csr("fine", "kubernetes.io/kube-apiserver-client", "dev")
        )
        .0
    );
}

/// The Webhook mode: SubjectAccessReviews to an external service, whose allow and
/// deny answers decide (cached), whose silence defers to RBAC, and whose absence
/// is a 500 unless another mode allows.
#[test]
fn webhook_authorization() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    if !have_kubectl() {
        return;
    }
    let carol_reviews = Arc::new(AtomicUsize::new(0));
    let seen = carol_reviews.clone();
    let hook = e2e::TestWebhook::start(move |path, review| {
        let spec = review.get("spec").cloned().unwrap_or_default();
        let user = spec.get("user").and_then(|u| u.as_str()).unwrap_or("");
        let resource = spec
            .pointer("/resourceAttributes/resource")
            .and_then(|r| r.as_str())
            .unwrap_or("");
        let status = match (path, user, resource) {
            ("/authorize", "carol", "pods") => {
                seen.fetch_add(1, Ordering::SeqCst);
                assert!(
                    spec["groups"].as_array().is_some(),
                    "v1 names groups: {spec}"
                );
                serde_json::json!({"allowed": true})
            }
            ("/authorize", "mallory", _) => {
                serde_json::json!({"allowed": false, "denied": true, "reason": "mallory is banned"})
            }
            _ => serde_json::json!({"allowed": false}),
        };
        serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "status": status})
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authz-webhook.conf");
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: authz\n  cluster:\n    server: https://127.0.0.1:{}/authorize\n    certificate-authority-data: {}\nusers:\n- name: apiserver\n  user: {{token: shared-secret}}\ncontexts:\n- name: c\n  context: {{cluster: authz, user: apiserver}}\ncurrent-context: c\n",
            hook.port, hook.ca_bundle
        ),
    )
    .unwrap();
    let flag = format!("--authorization-webhook-config-file={}", config.display());
    let s = ApiServer::start_with(&[
        "--authorization-mode=Node,Webhook,RBAC",
        &flag,
        "--authorization-webhook-version=v1",
    ]);
    // RBAC would let mallory list pods; the webhook's deny comes first.
    s.ok(
        K,
        &[
            "create",
            "clusterrolebinding",
            "mallory-view",
            "--clusterrole=view",
            "--user=mallory",
        ],
    );
    let carol = s.write_kubeconfig("carol.conf", "carol", None);
    let mallory = s.write_kubeconfig("mallory.conf", "mallory", None);
    allowed(&s, &carol, &["get", "pods"]);
    allowed(&s, &carol, &["get", "pods", "-A"]);
    denied(
        &s,
        &carol,
        &["get", "secrets"],
        r#"User "carol" cannot list resource "secrets" in API group "" in the namespace "default""#,
    );
    denied(&s, &mallory, &["get", "pods"], "mallory is banned");
    // One review per distinct request: the second list in default came from the cache.
    allowed(&s, &carol, &["get", "pods"]);
    assert_eq!(carol_reviews.load(Ordering::SeqCst), 2);
    // The webhook gone: still-cached answers hold, new questions are a 500.
    drop(hook);
    allowed(&s, &carol, &["get", "pods"]);
    denied(
        &s,
        &carol,
        &["get", "configmaps"],
        "Internal error occurred: error contacting webhook: Post",
    );
    // The flags are checked together.
    let out = std::process::Command::new(e2e::binary("kube-apiserver"))
        .args(["--authorization-mode=Webhook", "--data-dir=/nonexistent"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("authorization-mode Webhook's authorization config file not passed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Admission's audit annotations reach the audit event: PodSecurity's audit mode
/// (and the enforced policy), and a ValidatingAdmissionPolicy's Audit action.
#[test]
fn admission_annotates_audit_events() {
    if !have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let log = dir.path().join("audit.log");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  resources: [{group: '', resources: [pods, configmaps]}]\n- level: None\n",
    )
    .unwrap();
    let s = ApiServer::start_with(&[
        &format!("--audit-policy-file={}", policy.display()),
        &format!("--audit-log-path={}", log.display()),
    ]);
    s.ok(K, &["create", "namespace", "watched"]);
    s.ok(
        K,
        &[
            "label",
            "namespace",
            "watched",
            "pod-security.kubernetes.io/audit=restricted",
        ],
    );
    s.ok_stdin(
        K,
        &["create", "-n", "watched", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: root}\nspec:\n  containers: [{name: c, image: busybox, securityContext: {privileged: true}}]\n"),
    );
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: small-configmaps}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  validations:
  - {expression: 'size(object.data) <= 1', message: too many keys}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: small-configmaps-audit}
spec:
  policyName: small-configmaps
  validationActions: [Audit]
",
        ),
    );
    s.ok(
        K,
        &[
            "create",
            "configmap",
            "big",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
    );
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let created = |resource: &str, name: &str| {
        events
            .iter()
            .find(|e| {
                e["verb"] == "create"
                    && e["objectRef"]["resource"] == resource
                    && e["objectRef"]["name"] == name
                    && e["stage"] == "ResponseComplete"
            })
            .unwrap_or_else(|| panic!("no event for {resource}/{name}: {events:?}"))
            .clone()
    };
    let pod = created("pods", "root");
    let a = &pod["annotations"];
    assert_eq!(
        a["pod-security.kubernetes.io/enforce-policy"],
        "privileged:latest"
    );
    assert!(
        a["pod-security.kubernetes.io/audit-violations"]
            .as_str()
            .unwrap_or("")
            .starts_with("would violate PodSecurity \"restricted:latest\": privileged (container \"c\" must not set securityContext.privileged=true)"),
        "{a}"
    );
    let cm = created("configmaps", "big");
    let failures: serde_json::Value = serde_json::from_str(
        cm["annotations"]["validation.policy.admission.k8s.io/validation_failure"]
            .as_str()
            .unwrap_or("null"),
    )
    .unwrap();
    assert_eq!(
        failures,
        serde_json::json!([{"message": "too many keys", "policy": "small-configmaps", "binding": "small-configmaps-audit", "expressionIndex": 0, "validationActions": ["Audit"]}])
    );
}

/// The front-proxy (requestheader) authenticator: a proxy presenting a certificate
/// from --requestheader-client-ca-file with an allowed name vouches for the user in
/// X-Remote-* headers; the same headers from anyone else are ignored.
#[test]
fn a_front_proxy_names_the_user_in_headers() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    if !have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "front-proxy-ca");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.path().join("front-proxy-ca.crt"), ca.pem()).unwrap();
    let issue = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        let (c, k) = (
            dir.path().join(format!("{cn}.crt")),
            dir.path().join(format!("{cn}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    };
    let proxy = issue("front-proxy-client");
    let stranger = issue("someone-else");
    let s = ApiServer::start_with(&[
        &format!(
            "--requestheader-client-ca-file={}",
            dir.path().join("front-proxy-ca.crt").display()
        ),
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
    ]);
    // (view is aggregated by the controller manager, absent here: a plain role.)
    s.ok(
        K,
        &[
            "create",
            "clusterrole",
            "pod-reader",
            "--verb=list",
            "--resource=pods",
        ],
    );
    s.ok(
        K,
        &[
            "create",
            "clusterrolebinding",
            "devs-read",
            "--clusterrole=pod-reader",
            "--group=devs",
        ],
    );
    let pods = "/api/v1/namespaces/default/pods";
    let get = |headers: &[(&str, &str)],
               client: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        e2e::https_get_as(
            s.port,
            pods,
            headers,
            client.map(|(c, k)| (c.as_path(), k.as_path())),
        )
    };
    // The proxy names alice: she is who RBAC sees.
    let (code, body) = get(&[("X-Remote-User", "alice")], Some(&proxy));
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(r#"User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""#),
        "{body}"
    );
    // With her group, she may.
    let (code, body) = get(
        &[("X-Remote-User", "alice"), ("X-Remote-Group", "devs")],
        Some(&proxy),
    );
    assert_eq!(code, 200, "{body}");
    // A certificate from the CA with a name not allowed is not a proxy, and not a
    // client certificate either.
    let (code, body) = get(
        &[("X-Remote-User", "alice"), ("X-Remote-Group", "devs")],
        Some(&stranger),
    );
    assert_eq!(code, 401, "{body}");
    // Without a certificate the headers mean nothing: anonymous.
    let (code, body) = get(
        &[("X-Remote-User", "alice"), ("X-Remote-Group", "devs")],
        None,
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"User \"system:anonymous\""#), "{body}");
}
