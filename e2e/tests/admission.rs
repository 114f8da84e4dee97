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
