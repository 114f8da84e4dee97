//! The admission chain against the real kubectl: webhooks served by a test HTTPS
//! server (mutation by JSONPatch, refusals, failure policies, selectors, mutating
//! before validating), and the built-in defaulting plugins.

use serde_json::{Value, json};

use e2e::{ApiServer, TestWebhook, have_kubectl};

const K: &str = "kubectl.1.33";

fn allow(review: &Value, patch: Option<Value>, denied: Option<&str>) -> Value {
    use base64::Engine;
    let uid = review
        .pointer("/request/uid")
        .cloned()
        .unwrap_or(Value::Null);
    let mut r = json!({"uid": uid, "allowed": denied.is_none()});
    if let Some(msg) = denied {
        r["status"] = json!({"code": 403, "reason": "Forbidden", "message": msg});
    }
    if let Some(p) = patch {
        r["patchType"] = json!("JSONPatch");
        r["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(p.to_string()));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
}

fn pod(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n"
    )
}

#[test]
fn admission_webhooks_mutate_validate_and_fail_closed() {
    if !have_kubectl() {
        return;
    }
    let hook = TestWebhook::start(|path, review| {
        let obj = review
            .pointer("/request/object")
            .cloned()
            .unwrap_or(Value::Null);
        let label = |k: &str| {
            obj.pointer(&format!("/metadata/labels/{k}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match path {
            "/mutate" => allow(
                &review,
                Some(
                    json!([{"op": "add", "path": "/metadata/annotations", "value": {"keelson.test/mutated": review.pointer("/request/userInfo/username").cloned().unwrap_or(Value::Null)}}]),
                ),
                None,
            ),
            "/validate" => {
                if label("deny").is_some() {
                    allow(&review, None, Some("pods labelled deny are not welcome"))
                } else if obj
                    .pointer("/metadata/annotations/keelson.test~1mutated")
                    .is_none()
                {
                    allow(
                        &review,
                        None,
                        Some("the mutating webhook did not run first"),
                    )
                } else {
                    allow(&review, None, None)
                }
            }
            _ => allow(&review, None, Some("unexpected path")),
        }
    });
    let s = ApiServer::start();
    s.ok(K, &["create", "namespace", "hooked"]);
    s.ok(K, &["label", "namespace", "hooked", "webhooks=on"]);
    let closed = e2e::free_port();
    let config = format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: keelson-mutate}}
webhooks:
- name: mutate.keelson.test
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {{url: 'https://127.0.0.1:{port}/mutate', caBundle: {ca}}}
  namespaceSelector: {{matchLabels: {{webhooks: 'on'}}}}
  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: keelson-validate}}
webhooks:
- name: validate.keelson.test
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {{url: 'https://127.0.0.1:{port}/validate', caBundle: {ca}}}
  namespaceSelector: {{matchLabels: {{webhooks: 'on'}}}}
  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]
- name: broken-closed.keelson.test
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  clientConfig: {{url: 'https://127.0.0.1:{closed}/x', caBundle: {ca}}}
  objectSelector: {{matchLabels: {{broken: closed}}}}
  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]
- name: broken-open.keelson.test
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Ignore
  clientConfig: {{url: 'https://127.0.0.1:{closed}/x', caBundle: {ca}}}
  objectSelector: {{matchLabels: {{broken: open}}}}
  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}}]
",
        port = hook.port,
        ca = hook.ca_bundle
    );
    s.ok_stdin(K, &["apply", "-f", "-"], Some(&config));

    // Mutated (by the JSONPatch), then validated.
    s.ok_stdin(
        K,
        &["create", "-n", "hooked", "-f", "-"],
        Some(&pod("ok", "app: web")),
    );
    assert_eq!(
        s.ok(
            K,
            &[
                "get",
                "pod",
                "ok",
                "-n",
                "hooked",
                "-o",
                "jsonpath={.metadata.annotations.keelson\\.test/mutated}"
            ]
        ),
        "kubernetes-admin"
    );
    // Refused by the validating webhook, in upstream's words and code.
    let e = s.fails(
        K,
        &["create", "-n", "hooked", "-f", "-"],
        Some(&pod("denied", "deny: 'yes'")),
    );
    assert!(
        e.contains(r#"Error from server (Forbidden): error when creating "STDIN": admission webhook "validate.keelson.test" denied the request: pods labelled deny are not welcome"#),
        "{e}"
    );
    // A webhook that cannot be reached: refused under Fail, skipped under Ignore.
    let e = s.fails(
        K,
        &["create", "-n", "hooked", "-f", "-"],
        Some(&pod("closed", "broken: closed")),
    );
    assert!(
        e.contains(r#"Internal error occurred: failed calling webhook "broken-closed.keelson.test": failed to call webhook: Post "https://127.0.0.1:"#)
            && e.contains("connection refused"),
        "{e}"
    );
    s.ok_stdin(
        K,
        &["create", "-n", "hooked", "-f", "-"],
        Some(&pod("open", "broken: open")),
    );
    // Outside the selected namespaces nothing is called.
    s.ok_stdin(
        K,
        &["create", "-n", "default", "-f", "-"],
        Some(&pod("plain", "deny: 'yes'")),
    );
    // A dry run reaches webhooks without side effects.
    let out = s.ok_stdin(
        K,
        &[
            "create",
            "-n",
            "hooked",
            "--dry-run=server",
            "-o",
            "jsonpath={.metadata.annotations}",
            "-f",
            "-",
        ],
        Some(&pod("dry", "app: web")),
    );
    assert!(out.contains("keelson.test/mutated"), "{out}");
}

#[test]
fn defaulting_plugins() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    s.ok_stdin(K, &["create", "-f", "-"], Some(&pod("p", "app: web")));
    let tol = s.ok(
        K,
        &[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={range .spec.tolerations[*]}{.key}={.tolerationSeconds} {end}",
        ],
    );
    assert_eq!(
        tol.trim(),
        "node.kubernetes.io/not-ready=300 node.kubernetes.io/unreachable=300"
    );
    assert_eq!(
        s.ok(K, &["get", "pod", "p", "-o", "jsonpath={.spec.priority}"]),
        "0"
    );
    // Priority classes: the system ones exist; a pod naming one gets its value.
    s.ok_stdin(
        K,
        &["create", "-n", "kube-system", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: crit}\nspec:\n  priorityClassName: system-node-critical\n  containers: [{name: c, image: busybox}]\n"),
    );
    assert_eq!(
        s.ok(
            K,
            &[
                "get",
                "pod",
                "crit",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={.spec.priority}"
            ]
        ),
        "2000001000"
    );
    let e = s.fails(
        K,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: nope}\nspec:\n  priorityClassName: missing\n  containers: [{name: c, image: busybox}]\n"),
    );
    assert!(
        e.contains(r#"pods "nope" is forbidden: no PriorityClass with name missing was found"#),
        "{e}"
    );
    // New nodes are tainted not-ready; claims get the protection finalizer and the
    // default class.
    s.ok_stdin(
        K,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"),
    );
    assert_eq!(
        s.ok(
            K,
            &["get", "node", "n1", "-o", "jsonpath={.spec.taints[0].key}"]
        ),
        "node.kubernetes.io/not-ready"
    );
    s.ok_stdin(
        K,
        &["create", "-f", "-"],
        Some("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: fast\n  annotations: {storageclass.kubernetes.io/is-default-class: 'true'}\nprovisioner: example.com/fast\n"),
    );
    s.ok_stdin(
        K,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n"),
    );
    assert_eq!(
        s.ok(
            K,
            &[
                "get",
                "pvc",
                "data",
                "-o",
                "jsonpath={.spec.storageClassName} {.metadata.finalizers}"
            ]
        ),
        r#"fast ["kubernetes.io/pvc-protection"]"#
    );
}

#[test]
fn the_admission_flags_are_checked() {
    let out = std::process::Command::new(e2e::binary("kube-apiserver"))
        .args([
            "--enable-admission-plugins=NodeRestriction,Bogus",
            "--data-dir=/nonexistent",
        ])
        .output()
        .expect("run kube-apiserver");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"enable-admission-plugins plugin "Bogus" is unknown"#),
        "{err}"
    );
}

#[test]
fn pod_security_levels_are_enforced_and_warned() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    for (ns, labels) in [
        (
            "secure",
            vec!["pod-security.kubernetes.io/enforce=restricted"],
        ),
        (
            "base",
            vec![
                "pod-security.kubernetes.io/enforce=baseline",
                "pod-security.kubernetes.io/warn=restricted",
            ],
        ),
    ] {
        s.ok(K, &["create", "namespace", ns]);
        let mut args = vec!["label", "namespace", ns];
        args.extend(labels);
        s.ok(K, &args);
    }
    let e = s.fails(
        K,
        &["create", "-n", "secure", "-f", "-"],
        Some(&pod("plain", "app: web")),
    );
    assert!(
        e.contains(r#"Error from server (Forbidden): error when creating "STDIN": pods "plain" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#),
        "{e}"
    );
    let hardened = "apiVersion: v1
kind: Pod
metadata: {name: hardened}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: busybox
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
";
    s.ok_stdin(K, &["create", "-n", "secure", "-f", "-"], Some(hardened));
    // Baseline refuses privileged pods; its restricted warn level warns about the rest.
    let privileged = "apiVersion: v1\nkind: Pod\nmetadata: {name: root}\nspec:\n  containers:\n  - {name: c, image: busybox, securityContext: {privileged: true}}\n";
    let e = s.fails(K, &["create", "-n", "base", "-f", "-"], Some(privileged));
    assert!(
        e.contains(r#"pods "root" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#),
        "{e}"
    );
    let out = s.kubectl_stdin(
        K,
        &["create", "-n", "base", "-f", "-"],
        Some(&pod("warned", "app: web")),
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#), "{err}");
    // Workloads are warned about, not refused.
    let out = s.kubectl(
        K,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "-n",
            "secure",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(r#"Warning: would violate PodSecurity "restricted:latest""#),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `args` until its output is `want` (trimmed); panics with the last output.
fn wait_for(s: &ApiServer, args: &[&str], want: &str, what: &str, log: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = s.kubectl(K, args);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if text == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: got {text:?}, want {want:?}\n{}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The serviceaccount and root CA controllers fill every namespace, as the
/// controller manager's own least-privilege identities; the ServiceAccount plugin
/// then defaults pods to `default`, mounts the projected API volume, copies pull
/// secrets, and refuses pods whose account does not exist.
#[test]
fn service_accounts_are_created_defaulted_and_mounted() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start_with(&["--enable-admission-plugins=ServiceAccount"]);
    let kc = s.write_kubeconfig("kcm.conf", "system:kube-controller-manager", None);
    let ca = s.dir.path().join("pki/ca.crt");
    let kcm = e2e::ControllerManager::start_as(
        &s,
        &kc,
        "kcm",
        &[
            "--use-service-account-credentials",
            "--root-ca-file",
            &ca.display().to_string(),
            "--controllers=serviceaccount,root-ca-cert-publisher",
        ],
    );
    s.ok(K, &["create", "namespace", "team"]);
    let sa = [
        "get",
        "sa",
        "default",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.name}",
    ];
    wait_for(&s, &sa, "default", "default account", || kcm.log());
    let pem = std::fs::read_to_string(&ca).unwrap();
    let cm = [
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ];
    wait_for(&s, &cm, pem.trim(), "root CA", || kcm.log());
    // Deleted or edited, both come back as they were.
    s.ok(K, &["delete", "sa", "default", "-n", "team"]);
    s.ok(
        K,
        &[
            "patch",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team",
            "-p",
            r#"{"data":{"ca.crt":"forged"}}"#,
        ],
    );
    wait_for(&s, &sa, "default", "default account recreated", || {
        kcm.log()
    });
    wait_for(&s, &cm, pem.trim(), "root CA restored", || kcm.log());

    // A pod naming no account runs as default, with the API volume mounted.
    s.ok(K, &["run", "p", "--image=busybox", "-n", "team"]);
    let get = |name: &str, path: &str| {
        s.ok(
            K,
            &[
                "get",
                "pod",
                name,
                "-n",
                "team",
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
    };
    assert_eq!(get("p", "{.spec.serviceAccountName}"), "default");
    let vol = get("p", "{.spec.volumes[0].name}");
    assert!(
        vol.starts_with("kube-api-access-") && vol.len() == 21,
        "{vol}"
    );
    assert_eq!(
        get(
            "p",
            "{.spec.volumes[0].projected.sources[*].serviceAccountToken.expirationSeconds} {.spec.volumes[0].projected.sources[1].configMap.name} {.spec.volumes[0].projected.sources[2].downwardAPI.items[0].fieldRef.fieldPath} {.spec.volumes[0].projected.defaultMode}"
        ),
        "3607 kube-root-ca.crt metadata.namespace 420"
    );
    assert_eq!(
        get(
            "p",
            "{.spec.containers[0].volumeMounts[0].mountPath} {.spec.containers[0].volumeMounts[0].readOnly}"
        ),
        "/var/run/secrets/kubernetes.io/serviceaccount true"
    );
    // An account's pull secrets are copied; its automount opt-out is honoured.
    s.ok_stdin(
        K,
        &["create", "-n", "team", "-f", "-"],
        Some("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot}\nautomountServiceAccountToken: false\nimagePullSecrets: [{name: registry}]\n"),
    );
    s.ok_stdin(
        K,
        &["create", "-n", "team", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: r}\nspec:\n  serviceAccountName: robot\n  containers: [{name: c, image: busybox}]\n"),
    );
    assert_eq!(
        get("r", "{.spec.imagePullSecrets[0].name}|{.spec.volumes}"),
        "registry|"
    );
    // A missing account is refused in upstream's words.
    let e = s.fails(
        K,
        &["create", "-n", "team", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  serviceAccountName: ghost\n  containers: [{name: c, image: busybox}]\n"),
    );
    assert!(
        e.contains(r#"pods "q" is forbidden: error looking up service account team/ghost: serviceaccount "ghost" not found"#),
        "{e}"
    );
    // kubectl create token works in a fresh namespace now that default exists.
    let token = s.ok(K, &["create", "token", "default", "-n", "team"]);
    assert_eq!(token.trim().split('.').count(), 3, "{token}");
    // upstream's publisher metrics.
    let auth = format!("Bearer {}", e2e::ADMIN_TOKEN);
    let (_, metrics) = e2e::https_get(kcm.port, "/metrics", &[("Authorization", &auth)]);
    assert!(
        metrics.contains("root_ca_cert_publisher_sync_total{code=\"200\"}"),
        "{metrics}"
    );
}

/// ResourceQuota end to end: not enforced until the controller has counted (upstream
/// reads the limits from `status.hard`), then charged atomically on admission, refused over the limit in upstream's words, and given
/// back by the controller when objects go.
#[test]
fn resource_quotas_are_counted_charged_and_enforced() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    s.ok(K, &["create", "namespace", "q"]);
    s.ok(
        K,
        &[
            "create",
            "quota",
            "q",
            "-n",
            "q",
            "--hard=pods=3,requests.cpu=1,services=1",
        ],
    );
    let cpu_pod = |name: &str, cpu: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: '{cpu}'}}}}}}]\n"
        )
    };
    let create = |text: &str| s.kubectl_stdin(K, &["create", "-n", "q", "-f", "-"], Some(text));
    let refused = |text: &str, want: &str| {
        let out = create(text);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "want {want:?}, got {err}"
        );
    };
    // No status yet: the quota limits nothing until it has been counted.
    assert!(create(&cpu_pod("early", "100m")).status.success());
    let kc = s.write_kubeconfig("kcm.conf", "system:kube-controller-manager", None);
    let kcm = e2e::ControllerManager::start_as(
        &s,
        &kc,
        "kcm",
        &[
            "--use-service-account-credentials",
            "--controllers=resourcequota",
        ],
    );
    let used = [
        "get",
        "quota",
        "q",
        "-n",
        "q",
        "-o",
        "jsonpath={.status.used}",
    ];
    wait_for(
        &s,
        &used,
        r#"{"pods":"1","requests.cpu":"100m","services":"0"}"#,
        "first count",
        || kcm.log(),
    );
    // Charged at admission, before any controller runs again.
    assert!(create(&cpu_pod("p1", "500m")).status.success());
    assert_eq!(
        s.ok(K, &used),
        r#"{"pods":"2","requests.cpu":"600m","services":"0"}"#
    );
    refused(
        &cpu_pod("p2", "600m"),
        r#"pods "p2" is forbidden: exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"#,
    );
    refused(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bare}\nspec:\n  containers: [{name: c, image: busybox}]\n",
        r#"pods "bare" is forbidden: failed quota: q: must specify requests.cpu for: c"#,
    );
    assert!(create(&cpu_pod("p3", "400m")).status.success());
    refused(
        &cpu_pod("p4", "0"),
        r#"pods "p4" is forbidden: exceeded quota: q, requested: pods=1, used: pods=3, limited: pods=3"#,
    );
    s.ok(
        K,
        &["create", "service", "clusterip", "a", "--tcp=80", "-n", "q"],
    );
    let out = s.kubectl(
        K,
        &["create", "service", "clusterip", "b", "--tcp=80", "-n", "q"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            r#"services "b" is forbidden: exceeded quota: q, requested: services=1, used: services=1, limited: services=1"#
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A dry run is checked but not charged.
    assert!(
        s.kubectl_stdin(
            K,
            &["create", "-n", "q", "--dry-run=server", "-f", "-"],
            Some(&cpu_pod("p5", "2"))
        )
        .stderr
        .starts_with(b"Error from server (Forbidden)")
    );
    // Deleting gives the usage back, through the controller.
    s.ok(K, &["delete", "pod", "p1", "-n", "q", "--wait=false"]);
    wait_for(
        &s,
        &used,
        r#"{"pods":"2","requests.cpu":"500m","services":"1"}"#,
        "replenished",
        || kcm.log(),
    );
    let described = s.ok(K, &["describe", "quota", "q", "-n", "q"]);
    assert!(described.contains("requests.cpu  500m  1"), "{described}");
}

/// LimitRanger: a LimitRange's defaults fill pods' containers (and the range itself
/// is defaulted as upstream's), and its bounds refuse pods and claims.
#[test]
fn limit_ranges_default_and_bound_pods_and_claims() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    s.ok(K, &["create", "namespace", "lr"]);
    s.ok_stdin(
        K,
        &["create", "-n", "lr", "-f", "-"],
        Some("apiVersion: v1\nkind: LimitRange\nmetadata: {name: bounds}\nspec:\n  limits:\n  - {type: Container, max: {cpu: '1'}, defaultRequest: {memory: 64Mi}}\n  - {type: PersistentVolumeClaim, min: {storage: 1Gi}}\n"),
    );
    assert_eq!(
        s.ok(
            K,
            &[
                "get",
                "limitrange",
                "bounds",
                "-n",
                "lr",
                "-o",
                "jsonpath={.spec.limits[0].default} {.spec.limits[0].defaultRequest}"
            ]
        ),
        r#"{"cpu":"1"} {"cpu":"1","memory":"64Mi"}"#
    );
    s.ok(K, &["run", "p", "--image=busybox", "-n", "lr"]);
    assert_eq!(
        s.ok(
            K,
            &[
                "get",
                "pod",
                "p",
                "-n",
                "lr",
                "-o",
                "jsonpath={.spec.containers[0].resources} {.metadata.annotations.kubernetes\\.io/limit-ranger}"
            ]
        ),
        r#"{"limits":{"cpu":"1"},"requests":{"cpu":"1","memory":"64Mi"}} LimitRanger plugin set: cpu, memory request for container p; cpu limit for container p"#
    );
    let e = s.fails(
        K,
        &["create", "-n", "lr", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers: [{name: c, image: busybox, resources: {limits: {cpu: '2'}}}]\n"),
    );
    assert!(
        e.contains(
            r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#
        ),
        "{e}"
    );
    let e = s.fails(
        K,
        &["create", "-n", "lr", "-f", "-"],
        Some("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: small}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 500Mi}}\n"),
    );
    assert!(
        e.contains(r#"persistentvolumeclaims "small" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"#),
        "{e}"
    );
}

/// ValidatingAdmissionPolicy: CEL validations with parameters, bound per namespace,
/// denying with the binding's action, warning with another, and failing closed on an
/// expression that cannot be evaluated.
#[test]
fn validating_admission_policies_deny_warn_and_fail_closed() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    s.ok(
        K,
        &[
            "create",
            "configmap",
            "replica-limit",
            "--from-literal=maxReplicas=3",
        ],
    );
    for (ns, env) in [("prod", "prod"), ("dev", "dev")] {
        s.ok(K, &["create", "namespace", ns]);
        s.ok(K, &["label", "namespace", ns, &format!("env={env}")]);
    }
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: replica-limit}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  validations:
  - expression: "object.spec.replicas <= int(params.data.maxReplicas)"
    messageExpression: "'replicas must be no greater than ' + params.data.maxReplicas"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: replica-limit-prod}
spec:
  policyName: replica-limit
  validationActions: [Deny]
  paramRef: {name: replica-limit, namespace: default, parameterNotFoundAction: Deny}
  matchResources:
    namespaceSelector: {matchLabels: {env: prod}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: team-label}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}
  validations:
  - expression: "has(object.metadata.labels) && 'team' in object.metadata.labels"
    message: a team label is expected
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: team-label-warn}
spec:
  policyName: team-label
  validationActions: [Warn]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: broken}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [secrets], resourceNames: [guarded]}
  validations:
  - expression: "object.data.missing == 'x'"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: broken}
spec:
  policyName: broken
  validationActions: [Deny]
"#,
        ),
    );
    let create = |ns: &str, replicas: &str| {
        s.kubectl(
            K,
            &[
                "create",
                "deployment",
                "web",
                "--image=nginx",
                "-n",
                ns,
                &format!("--replicas={replicas}"),
            ],
        )
    };
    let out = create("prod", "5");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(r#"deployments.apps "web" is forbidden: ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-prod' denied request: replicas must be no greater than 3"#),
        "{err}"
    );
    // Within the limit it is admitted, with the Warn binding's warning.
    let out = create("prod", "2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'team-label' with binding 'team-label-warn': a team label is expected"),
        "{err}"
    );
    // The binding selects prod only.
    assert!(create("dev", "5").status.success());
    // An expression that cannot be evaluated fails closed, for the one name it guards.
    let e = s.fails(
        K,
        &[
            "create",
            "secret",
            "generic",
            "guarded",
            "--from-literal=a=b",
        ],
        None,
    );
    assert!(
        e.contains(r#"secrets "guarded" is forbidden: ValidatingAdmissionPolicy 'broken' with binding 'broken' denied request: expression 'object.data.missing == 'x'' resulted in error"#),
        "{e}"
    );
    s.ok(
        K,
        &["create", "secret", "generic", "other", "--from-literal=a=b"],
    );
    // A policy that refuses everything still cannot lock policies themselves.
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: deny-all}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: ["*"], apiVersions: ["*"], operations: ["*"], resources: ["*"]}
  validations: [{expression: "false", message: closed}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: deny-all}
spec: {policyName: deny-all, validationActions: [Deny]}
"#,
        ),
    );
    let e = s.fails(K, &["create", "configmap", "blocked"], None);
    assert!(e.contains("denied request: closed"), "{e}");
    s.ok(
        K,
        &["delete", "validatingadmissionpolicybinding", "deny-all"],
    );
    s.ok(K, &["create", "configmap", "open"]);
}

/// ResourceQuotaConfiguration's limitedResources: consuming cpu needs a quota that
/// covers it, even in a namespace without any.
#[test]
fn limited_resources_need_a_covering_quota() {
    if !have_kubectl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("admission.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: ResourceQuota\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: ResourceQuotaConfiguration\n    limitedResources:\n    - resource: pods\n      matchContains: [cpu]\n",
    )
    .unwrap();
    let s = ApiServer::start_with(&[&format!(
        "--admission-control-config-file={}",
        config.display()
    )]);
    let pod = |name: &str, resources: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox, resources: {resources}}}]\n"
        )
    };
    let e = s.fails(
        K,
        &["create", "-f", "-"],
        Some(&pod("hungry", "{requests: {cpu: 100m}}")),
    );
    assert!(
        e.contains(
            r#"pods "hungry" is forbidden: insufficient quota to consume: cpu,requests.cpu"#
        ),
        "{e}"
    );
    // What consumes no cpu needs no quota.
    s.ok_stdin(K, &["create", "-f", "-"], Some(&pod("light", "{}")));
    // A counted quota covering cpu lets it in, and is charged.
    s.ok(
        K,
        &["create", "quota", "cpu", "--hard=cpu=1,requests.cpu=1"],
    );
    s.ok(
        K,
        &[
            "patch",
            "quota",
            "cpu",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"hard":{"cpu":"1","requests.cpu":"1"},"used":{"cpu":"0","requests.cpu":"0"}}}"#,
        ],
    );
    s.ok_stdin(
        K,
        &["create", "-f", "-"],
        Some(&pod("hungry", "{requests: {cpu: 100m}}")),
    );
    assert_eq!(
        s.ok(K, &["get", "quota", "cpu", "-o", "jsonpath={.status.used}"]),
        r#"{"cpu":"100m","requests.cpu":"100m"}"#
    );
}
