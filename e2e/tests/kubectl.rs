//! The real kubectl (1.33, 1.32 and 1.27) against a freshly started kube-apiserver
//! with its embedded store. Skipped with a message when kubectl is not installed.

use std::time::Duration;

use e2e::{ApiServer, ControllerManager, have_kubectl, installed_kubectls};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
";

#[test]
fn kubectl_versions_discover_and_read() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    for bin in installed_kubectls() {
        let ns = s.ok(bin, &["get", "ns"]);
        for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(ns.contains(n), "{bin}: {ns}");
        }
        assert!(ns.starts_with("NAME"), "server-side table: {ns}");
        let res = s.ok(bin, &["api-resources"]);
        assert!(
            res.contains("deployments") && res.contains("deploy") && res.contains("apps/v1"),
            "{res}"
        );
        let vs = s.ok(bin, &["api-versions"]);
        assert!(
            vs.contains("autoscaling/v2") && vs.contains("rbac.authorization.k8s.io/v1"),
            "{vs}"
        );
        // kubectl before 1.28 reads /openapi/v2 as protobuf for explain.
        let explain = s.ok(bin, &["explain", "deploy.spec.replicas"]);
        assert!(
            explain.contains("replicas") && explain.contains("<integer>"),
            "{bin}: {explain}"
        );
        let svc = s.ok(bin, &["get", "svc", "kubernetes", "-o", "wide"]);
        assert!(
            svc.contains("10.0.0.1") && svc.contains("443/TCP") && svc.contains("SELECTOR"),
            "{svc}"
        );
    }
    let v = s.ok("kubectl.1.33", &["version", "-o", "json"]);
    assert!(v.contains("\"minor\": \"33\""), "{v}");
    let explain = s.ok("kubectl.1.33", &["explain", "pods.spec.restartPolicy"]);
    assert!(
        explain.contains("Restart policy for all containers"),
        "{explain}"
    );
    let info = s.ok("kubectl.1.33", &["cluster-info"]);
    assert!(info.contains(&format!("127.0.0.1:{}", s.port)), "{info}");
}

#[test]
fn kubectl_writes_and_errors() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let k = "kubectl.1.33";
    let f = s.write("dep.yaml", DEPLOYMENT);
    assert!(
        s.ok(k, &["create", "-f", &f])
            .contains("deployment.apps/web created")
    );
    let err = s.fails(k, &["create", "-f", &f], None);
    assert!(
        err.contains("Error from server (AlreadyExists): error when creating")
            && err.contains("deployments.apps \"web\" already exists"),
        "{err}"
    );
    // Defaults are applied server-side.
    let y = s.ok(k, &["get", "deploy", "web", "-o", "yaml"]);
    for want in [
        "progressDeadlineSeconds: 600",
        "maxSurge: 25%",
        "imagePullPolicy: IfNotPresent",
        "restartPolicy: Always",
        "generation: 1",
    ] {
        assert!(y.contains(want), "missing {want}: {y}");
    }
    // Client-side apply of a change bumps the generation.
    let f2 = s.write("dep2.yaml", &DEPLOYMENT.replace("1.27", "1.28"));
    assert!(s.ok(k, &["apply", "-f", &f2]).contains("configured"));
    assert_eq!(
        s.ok(
            k,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}"
            ]
        ),
        "nginx:1.28 2"
    );
    assert!(s.ok(k, &["apply", "-f", &f2]).contains("unchanged"));
    // scale, label, annotate.
    s.ok(k, &["scale", "deploy", "web", "--replicas=5"]);
    s.ok(k, &["label", "deploy", "web", "tier=front"]);
    s.ok(k, &["annotate", "deploy", "web", "note=hi"]);
    let got = s.ok(
        k,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.labels.tier} {.metadata.annotations.note}",
        ],
    );
    assert_eq!(got, "5 front hi");
    let shown = s.ok(k, &["get", "deploy", "--show-labels"]);
    assert!(shown.contains("tier=front"), "{shown}");
    let cc = s.ok(
        k,
        &[
            "get",
            "deploy",
            "-o",
            "custom-columns=N:.metadata.name,R:.spec.replicas",
        ],
    );
    assert!(cc.contains("web") && cc.contains('5'), "{cc}");
    // Conflict from a stale resourceVersion.
    let err = s.fails(
        k,
        &[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"resourceVersion":"2"},"spec":{"replicas":1}}"#,
        ],
        None,
    );
    assert!(
        err.contains("Error from server (Conflict)")
            && err.contains("the object has been modified"),
        "{err}"
    );
    // Invalid objects: the upstream message, built from the Status causes.
    let err = s.fails(
        k,
        &["create", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - name: c\n",
        ),
    );
    assert!(
        err.contains("The Pod \"bad\" is invalid: spec.containers[0].image: Required value"),
        "{err}"
    );
    // Unknown fields are refused under kubectl's fieldValidation=Strict.
    let err = s.fails(k, &["create", "-f", "-"], Some("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: c, image: i, bogus: 1}]\n"));
    assert!(
        err.contains("strict decoding error: unknown field \"spec.containers[0].bogus\""),
        "{err}"
    );
    let err = s.fails(k, &["get", "pod", "nothere"], None);
    assert!(
        err.contains("Error from server (NotFound): pods \"nothere\" not found"),
        "{err}"
    );
    // Pods: create, selectors, graceful and immediate delete.
    s.ok(k, &["run", "p1", "--image=busybox", "--labels=app=a"]);
    s.ok(k, &["run", "p2", "--image=busybox:1.36", "--labels=app=b"]);
    let sel = s.ok(k, &["get", "pods", "-l", "app in (a)", "-o", "name"]);
    assert_eq!(sel.trim(), "pod/p1");
    let fs = s.ok(
        k,
        &[
            "get",
            "pods",
            "--field-selector",
            "metadata.name=p2",
            "-o",
            "name",
        ],
    );
    assert_eq!(fs.trim(), "pod/p2");
    let sorted = s.ok(
        k,
        &["get", "pods", "--sort-by=.metadata.name", "-o", "name"],
    );
    assert_eq!(sorted.trim(), "pod/p1\npod/p2");
    let all = s.ok(k, &["get", "all", "-A"]);
    assert!(
        all.contains("pod/p1")
            && all.contains("deployment.apps/web")
            && all.contains("service/kubernetes"),
        "{all}"
    );
    assert!(
        s.ok(k, &["delete", "pod", "p1", "--wait"])
            .contains("pod \"p1\" deleted")
    );
    s.fails(k, &["get", "pod", "p1"], None);
    // Namespaces: the system ones cannot be deleted.
    let err = s.fails(k, &["delete", "ns", "kube-system"], None);
    assert!(
        err.contains("Forbidden") && err.contains("this namespace may not be deleted"),
        "{err}"
    );
    // Creating in a namespace that does not exist.
    let err = s.fails(k, &["run", "p3", "--image=busybox", "-n", "nope"], None);
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");
    // Services get a ClusterIP from the range.
    s.ok(
        k,
        &["expose", "deploy", "web", "--port=80", "--type=NodePort"],
    );
    let ip = s.ok(
        k,
        &[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort} {.spec.ports[0].targetPort}",
        ],
    );
    let parts: Vec<&str> = ip.split(' ').collect();
    assert!(
        parts[0].starts_with("10.0.0.") && parts[0] != "10.0.0.1",
        "{ip}"
    );
    let np: u16 = parts[1].parse().unwrap();
    assert!((30000..=32767).contains(&np), "{ip}");
    assert_eq!(parts[2], "80");
    assert!(s.ok(k, &["delete", "deploy", "web"]).contains("deleted"));
    // A watch sees later changes.
    let mut w = s.kubectl_spawn(
        k,
        &["get", "pods", "-w", "--request-timeout=8s", "-o", "name"],
    );
    std::thread::sleep(Duration::from_secs(2));
    s.ok(k, &["run", "watched", "--image=busybox"]);
    std::thread::sleep(Duration::from_secs(1));
    let _ = w.kill();
    let out = w.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pod/watched"), "{text}");
}

/// `kubectl create <generator>` goes through client-go's typed clients, which send
/// protobuf bodies since 1.31 (kubectl 1.27 still sends JSON).
#[test]
fn kubectl_create_generators_send_protobuf() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    for (i, bin) in installed_kubectls().into_iter().enumerate() {
        let ns = format!("gen{i}");
        let n = ns.as_str();
        s.ok(bin, &["create", "namespace", n]);
        let run = |args: &[&str]| {
            let mut all = vec!["-n", n];
            all.extend(args);
            s.ok(bin, &all)
        };
        let get = |what: &str, path: &str| {
            s.ok(
                bin,
                &["get", what, "-n", n, "-o", &format!("jsonpath={path}")],
            )
        };
        run(&["create", "configmap", "cm", "--from-literal=a=b"]);
        assert_eq!(get("cm/cm", "{.data.a}"), "b", "{bin}");
        // The reply is protobuf too, and client-go reads it back whole.
        let out = s.kubectl(
            bin,
            &[
                "create",
                "configmap",
                "pb",
                "-n",
                n,
                "--from-literal=k=v",
                "-o",
                "json",
                "-v=8",
            ],
        );
        assert!(out.status.success(), "{bin}");
        let log = String::from_utf8_lossy(&out.stderr);
        // kubectl logs the request's headers, then the response's (in each version's
        // own format); what follows the first "Response" is the reply.
        let reply_headers = log.find("Response").map(|i| &log[i..]).unwrap_or("");
        // kubectl 1.27 still sends and accepts JSON only.
        let protobuf_client = bin != "kubectl.1.27";
        assert_eq!(
            reply_headers.contains("Content-Type: application/vnd.kubernetes.protobuf"),
            protobuf_client,
            "{bin}: {log}"
        );
        // A typed watch (kubectl events -w) asks for protobuf and reads the
        // length-delimited WatchEvent frames.
        if protobuf_client {
            let mut watch = s.kubectl_spawn(bin, &["events", "-w", "-n", n, "-v=8"]);
            std::thread::sleep(Duration::from_millis(1500));
            s.ok_stdin(
                bin,
                &["create", "-f", "-"],
                Some(&format!(
                    "apiVersion: v1\nkind: Event\nmetadata: {{name: pbev, namespace: {n}}}\ninvolvedObject: {{kind: Pod, name: p, namespace: {n}}}\nreason: Tested\nmessage: through a protobuf watch\ntype: Normal\n"
                )),
            );
            std::thread::sleep(Duration::from_millis(1500));
            let _ = watch.kill();
            let out = watch.wait_with_output().expect("kubectl events");
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(
                log.contains("Content-Type: application/vnd.kubernetes.protobuf;stream=watch"),
                "{bin}: {log}"
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("through a protobuf watch"),
                "{bin}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed["data"]["k"], "v", "{bin}");
        assert_eq!(printed["metadata"]["namespace"], n, "{bin}");
        assert!(
            printed["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| u.len() == 36),
            "{bin}"
        );
        run(&["create", "secret", "generic", "sec", "--from-literal=pw=x"]);
        assert_eq!(get("secret/sec", "{.data.pw} {.type}"), "eA== Opaque");
        // A Go pointer set to zero survives the protobuf decoding; defaults fill the rest.
        run(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=0",
        ]);
        assert_eq!(
            get(
                "deploy/web",
                "{.spec.replicas} {.spec.strategy.type} {.spec.template.spec.containers[0].image} {.spec.template.spec.terminationGracePeriodSeconds}"
            ),
            "0 RollingUpdate nginx:1.27 30",
            "{bin}"
        );
        // Non-pointer zero values that protobuf always carries are not stored.
        let json = s.ok(bin, &["get", "deploy/web", "-n", n, "-o", "json"]);
        assert!(
            !json.contains("hostNetwork") && !json.contains("\"tty\""),
            "{json}"
        );
        run(&["create", "job", "j", "--image=busybox", "--", "echo", "hi"]);
        assert_eq!(
            get("job/j", "{.spec.template.spec.containers[0].command}"),
            r#"["echo","hi"]"#
        );
        run(&[
            "create",
            "cronjob",
            "cj",
            "--image=busybox",
            "--schedule=*/5 * * * *",
        ]);
        assert_eq!(get("cronjob/cj", "{.spec.schedule}"), "*/5 * * * *");
        run(&["create", "service", "clusterip", "svc", "--tcp=80:8080"]);
        assert_eq!(
            get(
                "svc/svc",
                "{.spec.ports[0].port} {.spec.ports[0].targetPort}"
            ),
            "80 8080"
        );
        run(&["create", "role", "r", "--verb=get", "--resource=pods"]);
        assert_eq!(get("role/r", "{.rules[0].verbs[0]}"), "get");
        run(&["create", "rolebinding", "rb", "--role=r", "--user=bob"]);
        let wide = run(&["get", "rolebinding", "rb", "-o", "wide"]);
        assert!(
            wide.contains("Role/r") && wide.contains("USERS") && wide.contains("bob"),
            "{bin}: {wide}"
        );
        run(&["create", "serviceaccount", "sa"]);
        run(&["create", "quota", "q", "--hard=pods=10,cpu=2"]);
        assert_eq!(get("quota/q", "{.spec.hard.pods}"), "10");
        run(&[
            "create",
            "pdb",
            "pdb",
            "--selector=app=web",
            "--min-available=1",
        ]);
        assert_eq!(get("pdb/pdb", "{.spec.minAvailable}"), "1");
        // IngressRule embeds IngressRuleValue inline: one protobuf field, flat in JSON.
        run(&["create", "ingress", "ing", "--rule=foo.com/bar=svc:80"]);
        assert_eq!(
            get(
                "ingress/ing",
                "{.spec.rules[0].host} {.spec.rules[0].http.paths[0].path}"
            ),
            "foo.com /bar"
        );
    }
    s.ok(
        "kubectl.1.33",
        &["create", "priorityclass", "high", "--value=1000"],
    );
    // `value` has no omitempty upstream: a zero survives the protobuf decoding.
    s.ok(
        "kubectl.1.33",
        &["create", "priorityclass", "zero", "--value=0"],
    );
    assert_eq!(
        s.ok(
            "kubectl.1.33",
            &["get", "priorityclass", "zero", "-o", "jsonpath={.value}"]
        ),
        "0"
    );
}

/// describe, events, wait, and the delete cascade modes.
#[test]
fn kubectl_describe_events_wait_and_cascade() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let kcm = ControllerManager::start(&s, "kcm", &[]);
    kcm.wait_log("all resource monitors have synced", Duration::from_secs(60));
    for bin in installed_kubectls() {
        let n = format!("ns-{}", &bin[8..].replace('.', "-"));
        s.ok(bin, &["create", "namespace", &n]);
        s.ok(
            bin,
            &["run", "p1", "--image=busybox", "--labels=app=web", "-n", &n],
        );
        // describe finds events by involvedObject kind, name, namespace and uid.
        let uid = s.ok(
            bin,
            &[
                "get",
                "pod",
                "p1",
                "-n",
                &n,
                "-o",
                "jsonpath={.metadata.uid}",
            ],
        );
        let event = format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: p1.1, namespace: {n}}}\ninvolvedObject: {{kind: Pod, name: p1, namespace: {n}, uid: {uid}, apiVersion: v1}}\nreason: Scheduled\nmessage: Successfully assigned {n}/p1 to node1\ntype: Normal\nfirstTimestamp: \"2026-01-01T00:00:00Z\"\nlastTimestamp: \"2026-01-01T00:00:00Z\"\ncount: 1\nsource: {{component: default-scheduler}}\n"
        );
        s.ok_stdin(bin, &["create", "-f", "-"], Some(&event));
        let d = s.ok(bin, &["describe", "pod", "p1", "-n", &n]);
        for want in [
            "Name:",
            "p1",
            "Labels:       app=web",
            "Status:       Pending",
            "Image:        busybox",
            "QoS Class:        BestEffort",
            "Scheduled",
            "Successfully assigned",
        ] {
            assert!(
                d.contains(want),
                "{bin} describe pod: missing {want:?}:\n{d}"
            );
        }
        let d = s.ok(bin, &["describe", "ns", &n]);
        assert!(d.contains("Status:       Active"), "{d}");
        let d = s.ok(bin, &["describe", "svc", "kubernetes", "-n", "default"]);
        assert!(d.contains("10.0.0.1") && d.contains("443/TCP"), "{d}");
        if bin != "kubectl.1.27" {
            let ev = s.ok(bin, &["events", "--for", "pod/p1", "-n", &n]);
            assert!(
                ev.contains("Scheduled") && ev.contains("Pod/p1"),
                "{bin} events: {ev}"
            );
        }
        let ev = s.ok(bin, &["get", "events", "-n", &n]);
        assert!(ev.contains("pod/p1") && ev.contains("Scheduled"), "{ev}");
        // wait --for=condition: the status subresource is what a kubelet would write.
        s.ok(
            bin,
            &[
                "patch",
                "pod",
                "p1",
                "-n",
                &n,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
            ],
        );
        let w = s.ok(
            bin,
            &[
                "wait",
                "--for=condition=Ready",
                "pod/p1",
                "-n",
                &n,
                "--timeout=20s",
            ],
        );
        assert!(w.contains("condition met"), "{w}");
        // Background (the default) deletes at once; --wait returns when it is gone.
        // Every cascade mode, each owner with a dependent ConfigMap: background
        // deletes the owner at once and the garbage collector (in
        // kube-controller-manager) the dependent after; foreground and orphan hand
        // the owner to the collector through a finalizer, and `--wait` returns once
        // it has deleted the dependent, or stripped its ownerReference, and dropped
        // the finalizer.
        for mode in ["background", "foreground", "orphan"] {
            let name = format!("c-{mode}");
            s.ok(bin, &["create", "deployment", &name, "--image=x", "-n", &n]);
            let uid = s.ok(
                bin,
                &[
                    "get",
                    "deploy",
                    &name,
                    "-n",
                    &n,
                    "-o",
                    "jsonpath={.metadata.uid}",
                ],
            );
            let dep = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-dep\n  namespace: {n}\n  ownerReferences: [{{apiVersion: apps/v1, kind: Deployment, name: {name}, uid: {uid}, controller: true, blockOwnerDeletion: true}}]\n"
            );
            s.ok_stdin(bin, &["create", "-f", "-"], Some(&dep));
            s.ok(
                bin,
                &[
                    "delete",
                    "deploy",
                    &name,
                    "-n",
                    &n,
                    &format!("--cascade={mode}"),
                    "--wait",
                    "--timeout=60s",
                ],
            );
            s.fails(bin, &["get", "deploy", &name, "-n", &n], None);
            let dep_name = format!("{name}-dep");
            if mode == "orphan" {
                let refs = s.ok(
                    bin,
                    &[
                        "get",
                        "cm",
                        &dep_name,
                        "-n",
                        &n,
                        "-o",
                        "jsonpath={.metadata.ownerReferences}",
                    ],
                );
                assert_eq!(refs, "", "{bin}: the orphan keeps no ownerReference");
            } else {
                // Background: the collector deletes the dependent after the owner.
                assert!(
                    s.wait_gone(bin, &["cm", &dep_name, "-n", &n], Duration::from_secs(30)),
                    "{bin} {mode}: dependent not collected:\n{}",
                    kcm.log()
                );
            }
        }
        // `wait --for=delete` returns once the object is gone.
        let mut waiter = s.kubectl_spawn(
            bin,
            &["wait", "--for=delete", "pod/p1", "-n", &n, "--timeout=30s"],
        );
        std::thread::sleep(Duration::from_millis(500));
        s.ok(
            bin,
            &[
                "delete",
                "pod",
                "p1",
                "-n",
                &n,
                "--grace-period=0",
                "--force",
            ],
        );
        let out = waiter.wait().expect("wait for kubectl wait");
        assert!(out.success(), "{bin} wait --for=delete failed");
    }
}

/// events.k8s.io/v1 Events are stored as core/v1 Events and autoscaling/v1 HPAs as
/// autoscaling/v2: a write in one version reads back in the other.
#[test]
fn kubectl_versions_convert_through_storage() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let k = "kubectl.1.33";
    let created = s.ok_stdin(
        k,
        &["create", "-f", "-", "-o", "jsonpath={.apiVersion} {.note}"],
        Some(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: e1}\neventTime: \"2026-11-23T17:00:00.000000Z\"\nreportingController: example.com/ctl\nreportingInstance: i1\naction: Scale\nreason: Scaled\nnote: scaled up\ntype: Normal\nregarding: {kind: Deployment, name: d, namespace: default, apiVersion: apps/v1}\n",
        ),
    );
    assert_eq!(created, "events.k8s.io/v1 scaled up");
    assert_eq!(
        s.ok(
            k,
            &[
                "get",
                "events.v1.",
                "e1",
                "-o",
                "jsonpath={.message} {.involvedObject.kind} {.reportingComponent}"
            ]
        ),
        "scaled up Deployment example.com/ctl"
    );
    let created = s.ok_stdin(
        k,
        &["create", "-f", "-", "-o", "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage}"],
        Some(
            "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: h1}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}\n  maxReplicas: 5\n  targetCPUUtilizationPercentage: 70\n",
        ),
    );
    assert_eq!(created, "autoscaling/v1 70");
    // v1's replica counts have no omitempty upstream: a fresh HPA shows zeros.
    let raw = s.ok(
        k,
        &[
            "get",
            "--raw",
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/h1",
        ],
    );
    let v1: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        v1["status"],
        serde_json::json!({"currentReplicas": 0, "desiredReplicas": 0}),
        "{raw}"
    );
    assert_eq!(
        s.ok(
            k,
            &[
                "get",
                "hpa.v2.autoscaling",
                "h1",
                "-o",
                "jsonpath={.spec.minReplicas} {.spec.metrics[0].resource.target.averageUtilization}"
            ]
        ),
        "1 70"
    );
    // A v1 update (apply) lands in the v2 object.
    s.ok_stdin(
        k,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: h1}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}\n  maxReplicas: 5\n  targetCPUUtilizationPercentage: 55\n",
        ),
    );
    assert_eq!(
        s.ok(
            k,
            &[
                "get",
                "hpa.v2.autoscaling",
                "h1",
                "-o",
                "jsonpath={.spec.metrics[0].resource.target.averageUtilization}"
            ]
        ),
        "55"
    );
}

/// `kubectl auth can-i` (SelfSubjectAccessReview, over protobuf from 1.31 on),
/// `can-i --list` (SelfSubjectRulesReview) and `auth whoami` (SelfSubjectReview),
/// answered from the current authorizer.
#[test]
fn kubectl_auth_reviews() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    for bin in installed_kubectls() {
        assert_eq!(
            s.ok(bin, &["auth", "can-i", "create", "pods"]).trim(),
            "yes",
            "{bin}"
        );
        assert_eq!(
            s.ok(bin, &["auth", "can-i", "get", "/healthz"]).trim(),
            "yes",
            "{bin}: a non-resource URL"
        );
        assert_eq!(
            s.ok(
                bin,
                &[
                    "auth",
                    "can-i",
                    "delete",
                    "deployments.apps",
                    "-n",
                    "kube-system"
                ]
            )
            .trim(),
            "yes",
            "{bin}"
        );
        let list = s.ok(bin, &["auth", "can-i", "--list"]);
        assert!(list.contains("*.*"), "{bin}: {list}");
        assert!(list.contains("[*]"), "{bin}: {list}");
    }
    // whoami needs authentication.k8s.io/v1 SelfSubjectReview (kubectl 1.28+).
    let who = s.ok(
        "kubectl.1.33",
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert!(who.starts_with("kubernetes-admin "), "{who}");
    assert!(
        who.contains("system:masters") && who.contains("system:authenticated"),
        "{who}"
    );
    // A review without attributes is refused in upstream's words.
    let err = s.fails(
        "kubectl.1.33",
        &["create", "-f", "-"],
        Some("apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nspec: {}\n"),
    );
    assert!(
        err.contains("spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"),
        "{err}"
    );
}

/// Strategic merge patches as kubectl computes them: client-side `apply` (three-way,
/// with `$setElementOrder` and `$patch: delete` for removed containers and env vars)
/// and `kubectl patch` with directives, against the server's strategies.
#[test]
fn kubectl_strategic_merge_patch_and_apply() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    for bin in installed_kubectls() {
        let n = format!("smp-{}", &bin[8..].replace('.', "-"));
        s.ok(bin, &["create", "namespace", &n]);
        let v1 = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {n}}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: a\n        image: a:1\n        env: [{{name: FOO, value: \"1\"}}, {{name: BAR, value: \"2\"}}]\n      - name: b\n        image: b:1\n      - name: c\n        image: c:1\n"
        );
        s.ok_stdin(bin, &["apply", "-f", "-"], Some(&v1));
        // Someone else adds a container-level field kubectl apply does not own.
        s.ok(
            bin,
            &[
                "patch", "deploy", "web", "-n", &n, "--type=strategic", "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"b","workingDir":"/srv"}]}}}}"#,
            ],
        );
        // v2: container c removed, b before a, env BAR removed and BAZ added.
        let v2 = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {n}}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: b\n        image: b:2\n      - name: a\n        image: a:1\n        env: [{{name: BAZ, value: \"3\"}}, {{name: FOO, value: \"1\"}}]\n"
        );
        s.ok_stdin(bin, &["apply", "-f", "-"], Some(&v2));
        let got = s.ok(
            bin,
            &[
                "get", "deploy", "web", "-n", &n, "-o",
                "jsonpath={.spec.template.spec.containers[*].name}|{.spec.template.spec.containers[0].image}|{.spec.template.spec.containers[0].workingDir}|{.spec.template.spec.containers[1].env[*].name}",
            ],
        );
        assert_eq!(got, "b a|b:2|/srv|BAZ FOO", "{bin}");
        // kubectl patch with directives.
        s.ok(
            bin,
            &[
                "patch",
                "deploy",
                "web",
                "-n",
                &n,
                "--type=strategic",
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"b","$patch":"delete"}]}}}}"#,
            ],
        );
        let got = s.ok(
            bin,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                &n,
                "-o",
                "jsonpath={.spec.template.spec.containers[*].name}",
            ],
        );
        assert_eq!(got, "a", "{bin}");
        s.ok(
            bin,
            &[
                "patch",
                "deploy",
                "web",
                "-n",
                &n,
                "-p",
                r#"{"metadata":{"finalizers":["example.com/a","example.com/b"]}}"#,
            ],
        );
        s.ok(
            bin,
            &[
                "patch",
                "deploy",
                "web",
                "-n",
                &n,
                "-p",
                r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/a"]}}"#,
            ],
        );
        let got = s.ok(
            bin,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                &n,
                "-o",
                "jsonpath={.metadata.finalizers}",
            ],
        );
        assert_eq!(got, r#"["example.com/b"]"#, "{bin}");
        s.ok(
            bin,
            &[
                "patch",
                "deploy",
                "web",
                "-n",
                &n,
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
            ],
        );
        // `kubectl diff` (a server-side dry-run patch) shows the change and stores
        // nothing; dry runs of other verbs change nothing either.
        let v3 = v2.replace("image: b:2", "image: b:3");
        let out = s.kubectl_stdin(bin, &["diff", "-f", "-"], Some(&v3));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{bin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let diff = String::from_utf8_lossy(&out.stdout);
        assert!(diff.contains("+      - image: b:3"), "{bin}: {diff}");
        s.ok(
            bin,
            &["delete", "deploy", "web", "-n", &n, "--dry-run=server"],
        );
        s.ok(
            bin,
            &[
                "scale",
                "deploy",
                "web",
                "-n",
                &n,
                "--replicas=5",
                "--dry-run=server",
            ],
        );
        let got = s.ok(
            bin,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                &n,
                "-o",
                "jsonpath={.spec.replicas} {.spec.template.spec.containers[*].name}",
            ],
        );
        assert_eq!(got, "1 a", "{bin}");
        // A JSON patch whose test op fails: 422 with upstream's generic message.
        let err = s.fails(
            bin,
            &[
                "patch",
                "deploy",
                "web",
                "-n",
                &n,
                "--type=json",
                "-p",
                r#"[{"op":"test","path":"/metadata/name","value":"other"}]"#,
            ],
            None,
        );
        assert!(
            err.contains("The request is invalid: the server rejected our request due to an error in our request"),
            "{bin}: {err}"
        );
        // A bad directive is refused with upstream's text.
        let err = s.fails(
            bin,
            &[
                "patch",
                "deploy",
                "web",
                "-n",
                &n,
                "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"a","$patch":"merge"}]}}}}"#,
            ],
            None,
        );
        assert!(
            err.contains("merging lists cannot yet be specified in the patch"),
            "{bin}: {err}"
        );
    }
}

/// `kubectl logs` (every option) and `nodes/proxy` streamed from a kubelet over TLS
/// with the apiserver's kubelet client certificate, verified against the kubelet CA.
#[test]
fn kubectl_logs_and_node_proxy_through_the_kubelet() {
    if !have_kubectl() {
        return;
    }
    let cluster = e2e::KubeletCluster::start();
    let (s, kubelet) = (&cluster.api, &cluster.kubelet);
    let k = "kubectl.1.33";
    s.ok_stdin(
        k,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeName: node1\n  containers: [{name: a, image: busybox}, {name: b, image: busybox}]\n"),
    );
    for bin in installed_kubectls() {
        assert_eq!(
            s.ok(bin, &["logs", "p", "-c", "a"]),
            "a line 1\na line 2\na line 3\na line 4\na line 5\n",
            "{bin}"
        );
        assert_eq!(
            s.ok(bin, &["logs", "p", "-c", "b", "--tail=2"]),
            "b line 4\nb line 5\n",
            "{bin}"
        );
        let stamped = s.ok(bin, &["logs", "p", "-c", "a", "--timestamps", "--tail=1"]);
        assert_eq!(
            stamped, "2026-11-23T00:00:05.000000000Z a line 5\n",
            "{bin}"
        );
        // kubectl picks the first container itself; the server's own rule shows on
        // a raw request.
        let defaulted = s.kubectl(bin, &["logs", "p", "--tail=1"]);
        assert_eq!(
            String::from_utf8_lossy(&defaulted.stdout),
            "a line 5\n",
            "{bin}"
        );
        let err = s.fails(
            bin,
            &["get", "--raw", "/api/v1/namespaces/default/pods/p/log"],
            None,
        );
        assert!(
            err.contains("a container name must be specified for pod p, choose one of: [a b]"),
            "{bin}: {err}"
        );
        let err = s.fails(bin, &["logs", "p", "-c", "zz"], None);
        assert!(
            err.contains("container zz is not valid for pod p"),
            "{bin}: {err}"
        );
    }
    // -f streams until the client goes away.
    let mut follow = s.kubectl_spawn(k, &["logs", "-f", "p", "-c", "a", "--since=1h"]);
    let mut out = follow.stdout.take().expect("stdout");
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains("tick 8") {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let n = out.read(&mut buf).expect("read kubectl logs -f");
        assert!(
            n > 0 && std::time::Instant::now() < deadline,
            "follow ended early: {seen}"
        );
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(seen.starts_with("a line 1\n"), "{seen}");
    // nodes/proxy passes method, path and query through.
    assert_eq!(
        s.ok(
            k,
            &[
                "get",
                "--raw",
                "/api/v1/nodes/node1/proxy/stats/summary?only_cpu_and_memory=true"
            ]
        ),
        "kubelet: GET /stats/summary?only_cpu_and_memory=true"
    );
    let reqs = kubelet.requests.lock().expect("requests").clone();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET /containerLogs/default/p/b?tailLines=2 ")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.contains("follow=true") && r.contains("sinceSeconds=3600")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .all(|r| r.ends_with(" kube-apiserver-kubelet-client")),
        "every request carries the apiserver's client certificate: {reqs:?}"
    );
    // exec over WebSocket (v5.channel.k8s.io; 1.33, 1.32) or SPDY (v4 over
    // SPDY/3.1; 1.27), spliced through to the kubelet: stdout, the exit code from the
    // Status, stdin, attach, and cp.
    for bin in installed_kubectls() {
        assert_eq!(
            s.ok(
                bin,
                &["exec", "p", "-c", "a", "--", "echo", "hello", "world"]
            ),
            "hello world\n",
            "{bin}"
        );
        let out = s.kubectl(bin, &["exec", "p", "-c", "b", "--", "exit", "3"]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{bin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("command terminated with exit code 3"),
            "{bin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // stdin travels on channel 0 and its end on v5's close signal.
        assert_eq!(
            s.ok_stdin(
                bin,
                &["exec", "-i", "p", "-c", "a", "--", "cat"],
                Some("line one\nline two\n")
            ),
            "line one\nline two\n",
            "{bin}"
        );
        // A terminal: kubectl asks for tty=true (and sends resizes) only when its
        // stdin is one, so it runs under script(1)'s pseudo-terminal here.
        if std::path::Path::new("/usr/bin/script").exists() {
            let kubectl = e2e::kubectl_path(bin).expect("kubectl");
            let cmd = format!(
                "{} --kubeconfig {} exec -it p -c a -- echo tty-ok",
                kubectl.display(),
                s.kubeconfig().display()
            );
            let out = std::process::Command::new("script")
                .args(["-qec", &cmd, "/dev/null"])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("script");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("tty-ok"), "{bin}: {text}");
            let reqs = kubelet.requests.lock().expect("requests").clone();
            assert!(
                reqs.iter()
                    .any(|r| r.contains("/exec/default/p/a?") && r.contains("tty=true")),
                "{bin}: {reqs:?}"
            );
        }
        // attach: the same channels, to the running "container".
        assert_eq!(
            s.ok_stdin(bin, &["attach", "-i", "p", "-c", "a"], Some("typed in\n")),
            "typed in\n",
            "{bin}"
        );
        assert!(
            s.ok(bin, &["attach", "p", "-c", "b"])
                .contains("attached to b"),
            "{bin}"
        );
        // kubectl cp is tar over exec, both ways.
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dst, back) = (
            dir.path().join("src"),
            dir.path().join("dst"),
            dir.path().join("back"),
        );
        for d in [&src, &dst, &back] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(src.join("notes.txt"), "copied through the apiserver\n").expect("write");
        s.ok(
            bin,
            &[
                "cp",
                src.join("notes.txt").to_str().expect("utf8"),
                &format!("default/p:{}", dst.join("notes.txt").display()),
                "-c",
                "a",
            ],
        );
        assert_eq!(
            std::fs::read_to_string(dst.join("notes.txt")).expect("copied in"),
            "copied through the apiserver\n",
            "{bin}"
        );
        s.ok(
            bin,
            &[
                "cp",
                &format!("default/p:{}", dst.join("notes.txt").display()),
                back.join("notes.txt").to_str().expect("utf8"),
                "-c",
                "a",
            ],
        );
        assert_eq!(
            std::fs::read_to_string(back.join("notes.txt")).expect("copied out"),
            "copied through the apiserver\n",
            "{bin}"
        );
    }
    let reqs = kubelet.requests.lock().expect("requests").clone();
    if e2e::kubectl_path("kubectl.1.27").is_some() {
        assert!(
            reqs.iter()
                .any(|r| r.starts_with("POST /exec/default/p/a?") && r.contains("upgrade=SPDY/3.1")),
            "kubectl 1.27 execs over SPDY: {reqs:?}"
        );
    }
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET /exec/default/p/a?") && r.contains("command=echo")),
        "{reqs:?}"
    );
    // port-forward: SPDY tunnelled in a WebSocket (1.33, 1.32) or over a plain SPDY
    // upgrade (1.27), spliced through the apiserver to the kubelet, which connects to
    // the "container" port (a line-echo server here).
    s.ok(
        k,
        &[
            "patch",
            "pod",
            "p",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running"}}"#,
        ],
    );
    let echo = std::net::TcpListener::bind("127.0.0.1:0").expect("echo listener");
    let echo_port = echo.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in echo.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{BufRead, Write};
                let mut w = conn.try_clone().expect("clone");
                for line in std::io::BufReader::new(conn).lines().map_while(Result::ok) {
                    if writeln!(w, "pong {line}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    for bin in installed_kubectls() {
        let local = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let mut pf = s.kubectl_spawn(
            bin,
            &[
                "port-forward",
                "pod/p",
                &format!("{local}:{echo_port}"),
                "--address=127.0.0.1",
            ],
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let conn = loop {
            match std::net::TcpStream::connect(("127.0.0.1", local)) {
                Ok(c) => break c,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("{bin}: port-forward never listened: {e}"),
            }
        };
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        {
            use std::io::{BufRead, Write};
            let mut w = conn.try_clone().expect("clone");
            let mut lines = std::io::BufReader::new(conn);
            for word in ["one", "two"] {
                writeln!(w, "{word}").expect("write");
                let mut got = String::new();
                lines.read_line(&mut got).expect("read through the forward");
                assert_eq!(got, format!("pong {word}\n"), "{bin}");
            }
        }
        let _ = pf.kill();
        let _ = pf.wait();
    }
    let reqs = kubelet.requests.lock().expect("requests").clone();
    let forwards: Vec<&String> = reqs
        .iter()
        .filter(|r| r.contains(" /portForward/default/p"))
        .collect();
    let websocket = forwards
        .iter()
        .filter(|r| r.contains("upgrade=websocket"))
        .count();
    let spdy = forwards
        .iter()
        .filter(|r| r.contains("upgrade=SPDY/3.1"))
        .count();
    let newer = installed_kubectls()
        .iter()
        .filter(|b| **b != "kubectl.1.27")
        .count();
    assert_eq!(
        websocket, newer,
        "kubectl 1.30+ tunnels SPDY in a WebSocket: {forwards:?}"
    );
    assert_eq!(spdy, installed_kubectls().len() - newer, "{forwards:?}");
    // WebSocket pings travel through the splice and are answered (here by the test
    // kubelet's WebSocket stack, as a kubelet would).
    let pong = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(e2e::websocket_ping(
            s.port,
            "/api/v1/namespaces/default/pods/p/exec?command=cat&container=a&stdin=true&stdout=true",
            "v5.channel.k8s.io",
        ));
    assert_eq!(pong.as_deref(), Ok(&b"keelson"[..]));
    // exec without a connection upgrade is refused as upstream refuses it.
    let err = s.fails(
        k,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/p/exec?command=ls&container=a&stdout=true",
            "-f",
            "-",
        ],
        Some("{}"),
    );
    assert!(err.contains("Upgrade request required"), "{err}");
    // A node without a usable address: upstream's message.
    s.ok_stdin(
        k,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Node\nmetadata: {name: bare}\n"),
    );
    let err = s.fails(
        k,
        &["get", "--raw", "/api/v1/nodes/bare/proxy/healthz"],
        None,
    );
    assert!(
        err.contains("no preferred addresses found; known addresses: []"),
        "{err}"
    );
}

/// Server-side apply through real kubectl: two managers (conflict, force, shared
/// ownership, removal of what an applier stops sending), an update manager taking
/// fields over, the scale subresource, the upgrade from client-side apply, and
/// server-side dry runs and diffs.
#[test]
fn kubectl_server_side_apply() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    for bin in installed_kubectls() {
        let n = format!("ssa-{}", &bin[8..].replace('.', "-"));
        s.ok(bin, &["create", "namespace", &n]);
        let cm = |data: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: {n}}}\ndata: {data}\n"
            )
        };
        let managers = |what: &str| {
            s.ok(
                bin,
                &[
                    "get", what, "-n", &n, "-o",
                    r#"jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation}{.subresource} {end}"#,
                ],
            )
        };
        let fields_of = |what: &str, manager: &str| {
            s.ok(
                bin,
                &[
                    "get",
                    what,
                    "-n",
                    &n,
                    "-o",
                    &format!(
                        "jsonpath={{.metadata.managedFields[?(@.manager==\"{manager}\")].fieldsV1}}"
                    ),
                ],
            )
        };
        let data = || {
            s.ok(
                bin,
                &["get", "cm", "cfg", "-n", &n, "-o", "jsonpath={.data}"],
            )
        };

        let out = s.ok_stdin(
            bin,
            &["apply", "--server-side", "-f", "-"],
            Some(&cm("{a: '1', b: '2'}")),
        );
        assert_eq!(out.trim(), "configmap/cfg serverside-applied", "{bin}");
        assert_eq!(managers("cm/cfg"), "kubectl/Apply ", "{bin}");
        assert_eq!(
            fields_of("cm/cfg", "kubectl"),
            r#"{"f:data":{"f:a":{},"f:b":{}}}"#,
            "{bin}"
        );

        // Another manager changing a's value conflicts, in upstream's words.
        let err = s.fails(
            bin,
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            Some(&cm("{a: '9'}")),
        );
        assert!(
            err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .data.a"#)
                && err.contains("--force-conflicts"),
            "{bin}: {err}"
        );
        // The same value is shared ownership; a new key is its own.
        s.ok_stdin(
            bin,
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            Some(&cm("{a: '1', c: '3'}")),
        );
        assert_eq!(managers("cm/cfg"), "kubectl/Apply other/Apply ", "{bin}");
        // Force takes a over.
        s.ok_stdin(
            bin,
            &[
                "apply",
                "--server-side",
                "--field-manager=other",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&cm("{a: '9', c: '3'}")),
        );
        assert_eq!(
            fields_of("cm/cfg", "kubectl"),
            r#"{"f:data":{"f:b":{}}}"#,
            "{bin}"
        );
        assert_eq!(data(), r#"{"a":"9","b":"2","c":"3"}"#, "{bin}");
        // kubectl stops sending b (and co-owns a): b, kubectl's alone, goes.
        s.ok_stdin(
            bin,
            &["apply", "--server-side", "-f", "-"],
            Some(&cm("{a: '9'}")),
        );
        assert_eq!(data(), r#"{"a":"9","c":"3"}"#, "{bin}");

        // An update (kubectl patch) takes c from its applier; re-applying the old
        // value then conflicts with the update manager.
        s.ok(
            bin,
            &[
                "patch",
                "cm",
                "cfg",
                "-n",
                &n,
                "-p",
                r#"{"data":{"c":"x"}}"#,
            ],
        );
        assert!(managers("cm/cfg").contains("kubectl-patch/Update"), "{bin}");
        let err = s.fails(
            bin,
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            Some(&cm("{a: '9', c: '3'}")),
        );
        assert!(
            err.contains(r#"conflict with "kubectl-patch" using v1: .data.c"#),
            "{bin}: {err}"
        );

        // kubectl edit: the editor's change goes back as a patch, under kubectl-edit.
        let edit = std::process::Command::new(e2e::kubectl_path(bin).expect("kubectl"))
            .args([
                "--kubeconfig",
                &s.kubeconfig().to_string_lossy(),
                "edit",
                "cm",
                "cfg",
                "-n",
                &n,
            ])
            .env("KUBE_EDITOR", "sed -i -e 's/^  a: \"9\"$/  a: edited/'")
            .output()
            .expect("kubectl edit");
        assert!(
            edit.status.success(),
            "{bin}: {}{}",
            String::from_utf8_lossy(&edit.stdout),
            String::from_utf8_lossy(&edit.stderr)
        );
        assert_eq!(data(), r#"{"a":"edited","c":"x"}"#, "{bin}");
        assert!(managers("cm/cfg").contains("kubectl-edit/Update"), "{bin}");
        s.ok(
            bin,
            &[
                "patch",
                "cm",
                "cfg",
                "-n",
                &n,
                "-p",
                r#"{"data":{"a":"9"}}"#,
            ],
        );

        // Server-side dry run and diff change nothing.
        s.ok_stdin(
            bin,
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=other",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&cm("{a: '0', c: '3'}")),
        );
        assert_eq!(data(), r#"{"a":"9","c":"x"}"#, "{bin}");
        let diff = s.kubectl_stdin(
            bin,
            &[
                "diff",
                "--server-side",
                "--field-manager=other",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&cm("{a: '0', c: '3'}")),
        );
        assert_eq!(diff.status.code(), Some(1), "{bin}: diff finds changes");
        assert!(
            String::from_utf8_lossy(&diff.stdout).contains("+  a: \"0\""),
            "{bin}"
        );
        assert_eq!(data(), r#"{"a":"9","c":"x"}"#, "{bin}");

        // A deployment: containers merge by name, and a scaler owns replicas through
        // the scale subresource.
        let deploy = |replicas: u32, image: &str| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {n}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n        ports: [{{containerPort: 80}}]\n"
            )
        };
        s.ok_stdin(
            bin,
            &["apply", "--server-side", "-f", "-"],
            Some(&deploy(2, "nginx:1")),
        );
        let fields = fields_of("deploy/web", "kubectl");
        assert!(
            fields.contains(
                r#""k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}"#
            ),
            "{bin}: {fields}"
        );
        s.ok(bin, &["scale", "deploy", "web", "-n", &n, "--replicas=5"]);
        assert!(
            managers("deploy/web").contains("/Updatescale"),
            "{bin}: {}",
            managers("deploy/web")
        );
        let err = s.fails(
            bin,
            &["apply", "--server-side", "-f", "-"],
            Some(&deploy(2, "nginx:2")),
        );
        assert!(
            err.contains(r#"with subresource "scale" using apps/v1: .spec.replicas"#),
            "{bin}: {err}"
        );
        // Leaving replicas out leaves them to the scaler.
        let unscaled = deploy(2, "nginx:2").replace("  replicas: 2\n", "");
        s.ok_stdin(bin, &["apply", "--server-side", "-f", "-"], Some(&unscaled));
        assert_eq!(
            s.ok(
                bin,
                &[
                    "get",
                    "deploy",
                    "web",
                    "-n",
                    &n,
                    "-o",
                    "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}"
                ]
            ),
            "5 nginx:2",
            "{bin}"
        );

        // Upgrading from client-side apply: kubectl takes over without conflicts.
        let csa = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: up, namespace: {n}}}\ndata: {{k: v1}}\n"
        );
        s.ok_stdin(bin, &["apply", "-f", "-"], Some(&csa));
        assert_eq!(
            managers("cm/up"),
            "kubectl-client-side-apply/Update ",
            "{bin}"
        );
        s.ok_stdin(
            bin,
            &["apply", "--server-side", "-f", "-"],
            Some(&csa.replace("v1}", "v2}")),
        );
        assert_eq!(
            s.ok(
                bin,
                &["get", "cm", "up", "-n", &n, "-o", "jsonpath={.data.k}"]
            ),
            "v2",
            "{bin}"
        );
        // ...and the annotation follows, so client-side apply still works after.
        s.ok_stdin(bin, &["apply", "-f", "-"], Some(&csa.replace("v1}", "v3}")));
        assert_eq!(
            s.ok(
                bin,
                &["get", "cm", "up", "-n", &n, "-o", "jsonpath={.data.k}"]
            ),
            "v3",
            "{bin}"
        );

        // kubectl create records its manager; --show-managed-fields prints them.
        s.ok(
            bin,
            &[
                "create",
                "configmap",
                "made",
                "-n",
                &n,
                "--from-literal=x=1",
            ],
        );
        let yaml = s.ok(
            bin,
            &[
                "get",
                "cm",
                "made",
                "-n",
                &n,
                "-o",
                "yaml",
                "--show-managed-fields",
            ],
        );
        assert!(
            yaml.contains("manager: kubectl-create") && yaml.contains("operation: Update"),
            "{bin}: {yaml}"
        );
        let plain = s.ok(bin, &["get", "cm", "made", "-n", &n, "-o", "yaml"]);
        assert!(!plain.contains("managedFields"), "{bin}: hidden by default");
    }
}

/// CustomResourceDefinitions through real kubectl: the CRD's conditions, objects
/// served at every version with defaulting, pruning and validation, printer columns,
/// short names and categories, explain, the status subresource, server-side apply,
/// and the objects removed with their CRD.
#[test]
fn kubectl_custom_resources() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    for bin in installed_kubectls() {
        let tag = bin[8..].replace('.', "");
        let n = format!("crd-{tag}");
        let group = format!("k{tag}.example.com");
        let crd_name = format!("widgets.{group}");
        s.ok(bin, &["create", "namespace", &n]);
        let schema = "
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                required: [size]
                properties:
                  size: {type: integer, minimum: 1, maximum: 10}
                  color: {type: string, enum: [red, blue], default: red}
                  labels: {type: object, additionalProperties: {type: string}}
              status:
                type: object
                properties:
                  ready: {type: boolean}
                  count: {type: integer}";
        let crd = format!(
            "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {crd_name}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, kind: Widget, shortNames: [wd{tag}], categories: [all]}}
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:{schema}
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
      scale: {{specReplicasPath: .spec.size, statusReplicasPath: .status.count}}
    additionalPrinterColumns:
    - {{name: Size, type: integer, jsonPath: .spec.size}}
    - {{name: Color, type: string, jsonPath: .spec.color}}
    - {{name: Ready, type: boolean, jsonPath: .status.ready}}
    schema:{schema}
"
        );
        s.ok_stdin(bin, &["apply", "-f", "-"], Some(&crd));
        s.ok(
            bin,
            &[
                "wait",
                "--for=condition=Established",
                &format!("crd/{crd_name}"),
                "--timeout=30s",
            ],
        );
        let conds = s.ok(
            bin,
            &[
                "get", "crd", &crd_name, "-o",
                "jsonpath={range .status.conditions[*]}{.type}={.status} {end}|{.status.acceptedNames.listKind}|{.status.storedVersions}",
            ],
        );
        assert_eq!(
            conds, r#"NamesAccepted=True Established=True |WidgetList|["v1"]"#,
            "{bin}"
        );

        let widget = |name: &str, version: &str, spec: &str| {
            format!(
                "apiVersion: {group}/{version}\nkind: Widget\nmetadata: {{name: {name}, namespace: {n}}}\nspec: {spec}\n"
            )
        };
        s.ok_stdin(
            bin,
            &["apply", "-f", "-"],
            Some(&widget("w1", "v1", "{size: 3}")),
        );
        // Written at v1beta1, read at v1 (conversion None: only apiVersion changes).
        s.ok_stdin(
            bin,
            &["create", "-f", "-"],
            Some(&widget("w2", "v1beta1", "{size: 4, color: blue}")),
        );
        let got = s.ok(
            bin,
            &[
                "get",
                &format!("widgets.v1.{group}"),
                "w2",
                "-n",
                &n,
                "-o",
                "jsonpath={.apiVersion} {.spec.color}",
            ],
        );
        assert_eq!(got, format!("{group}/v1 blue"), "{bin}");
        // Printer columns, the short name, and the `all` category.
        let table = s.ok(bin, &["get", &format!("wd{tag}"), "-n", &n]);
        let lines: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            ["NAME", "SIZE", "COLOR", "READY"],
            "{bin}: {table}"
        );
        assert_eq!(
            lines[1][..3],
            ["w1", "3", "red"],
            "{bin}: defaulted color: {table}"
        );
        let all = s.ok(bin, &["get", "all", "-n", &n]);
        assert!(all.contains(&format!("widget.{group}/w1")), "{bin}: {all}");

        // Validation in upstream's words; unknown fields refused under Strict,
        // pruned when validation is off.
        let err = s.fails(
            bin,
            &["create", "-f", "-"],
            Some(&widget("bad", "v1", "{size: 30}")),
        );
        assert!(
            err.contains(
                "spec.size: Invalid value: 30: spec.size in body should be less than or equal to 10"
            ),
            "{bin}: {err}"
        );
        let err = s.fails(
            bin,
            &["create", "-f", "-"],
            Some(&widget("bad", "v1", "{color: red}")),
        );
        assert!(err.contains("spec.size: Required value"), "{bin}: {err}");
        let err = s.fails(
            bin,
            &["create", "-f", "-"],
            Some(&widget("bad", "v1", "{size: 1, extra: 1}")),
        );
        assert!(
            err.contains(r#"unknown field "spec.extra""#),
            "{bin}: {err}"
        );
        s.ok_stdin(
            bin,
            &["create", "--validate=false", "-f", "-"],
            Some(&widget("pruned", "v1", "{size: 1, extra: 1}")),
        );
        assert_eq!(
            s.ok(
                bin,
                &[
                    "get",
                    &format!("widgets.{group}"),
                    "pruned",
                    "-n",
                    &n,
                    "-o",
                    "jsonpath={.spec}"
                ]
            ),
            r#"{"color":"red","size":1}"#,
            "{bin}"
        );

        // explain reads the published schema.
        let explain = s.ok(bin, &["explain", &format!("widgets.{group}.spec")]);
        assert!(
            explain.contains("size") && explain.contains("color"),
            "{bin}: {explain}"
        );

        // The status subresource: status writes leave the generation alone, spec
        // writes bump it, and the main resource ignores status.
        s.ok(
            bin,
            &[
                "patch",
                &format!("widgets.{group}"),
                "w1",
                "-n",
                &n,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"ready":true}}"#,
            ],
        );
        s.ok(
            bin,
            &[
                "patch",
                &format!("widgets.{group}"),
                "w1",
                "-n",
                &n,
                "--type=merge",
                "-p",
                r#"{"spec":{"size":5},"status":{"ready":false}}"#,
            ],
        );
        assert_eq!(
            s.ok(
                bin,
                &[
                    "get",
                    &format!("widgets.{group}"),
                    "w1",
                    "-n",
                    &n,
                    "-o",
                    "jsonpath={.spec.size} {.status.ready} {.metadata.generation}"
                ]
            ),
            "5 true 2",
            "{bin}"
        );

        // The scale subresource reads and writes the CRD's replica paths, and the
        // schema still has the last word.
        s.ok(
            bin,
            &[
                "scale",
                &format!("widgets.{group}"),
                "w1",
                "-n",
                &n,
                "--replicas=4",
            ],
        );
        assert_eq!(
            s.ok(
                bin,
                &[
                    "get",
                    &format!("widgets.{group}"),
                    "w1",
                    "-n",
                    &n,
                    "-o",
                    "jsonpath={.spec.size}"
                ]
            ),
            "4",
            "{bin}"
        );
        let err = s.fails(
            bin,
            &[
                "scale",
                &format!("widgets.{group}"),
                "w1",
                "-n",
                &n,
                "--replicas=40",
            ],
            None,
        );
        assert!(
            err.contains("spec.size in body should be less than or equal to 10"),
            "{bin}: {err}"
        );
        let scale = s.ok(
            bin,
            &[
                "get",
                "--raw",
                &format!("/apis/{group}/v1/namespaces/{n}/widgets/w1/scale"),
            ],
        );
        assert!(
            scale.contains(r#""kind":"Scale""#) && scale.contains(r#""spec":{"replicas":4}"#),
            "{bin}: {scale}"
        );

        // Server-side apply walks the CRD's schema.
        s.ok_stdin(
            bin,
            &["apply", "--server-side", "--field-manager=ssa", "-f", "-"],
            Some(&widget("w3", "v1", "{size: 2, labels: {a: b}}")),
        );
        let err = s.fails(
            bin,
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            Some(&widget("w3", "v1", "{size: 7}")),
        );
        assert!(
            err.contains(r#"conflict with "ssa": .spec.size"#),
            "{bin}: {err}"
        );

        // A default added to the CRD later shows on objects stored before it, as
        // upstream defaults on reads from storage; reads follow the CRD live.
        let with_shape = crd.replace(
            "color: {type: string, enum: [red, blue], default: red}",
            "color: {type: string, enum: [red, blue], default: red}\n                  shape: {type: string, default: round}",
        );
        assert_ne!(with_shape, crd);
        s.ok_stdin(bin, &["apply", "-f", "-"], Some(&with_shape));
        let shape = || {
            s.ok(
                bin,
                &[
                    "get",
                    &format!("widgets.{group}"),
                    "w1",
                    "-n",
                    &n,
                    "-o",
                    "jsonpath={.spec.shape}",
                ],
            )
        };
        assert!(
            (0..100).any(|_| {
                let ok = shape() == "round";
                if !ok {
                    std::thread::sleep(Duration::from_millis(100));
                }
                ok
            }),
            "{bin}: the new default never showed"
        );
        let listed = s.ok(
            bin,
            &[
                "get",
                &format!("widgets.{group}"),
                "-n",
                &n,
                "-o",
                "jsonpath={.items[*].spec.shape}",
            ],
        );
        assert!(listed.split(' ').all(|x| x == "round"), "{bin}: {listed}");

        // Deleting the CRD deletes its objects and stops serving them.
        s.ok(bin, &["delete", "crd", &crd_name]);
        let raw = format!("/apis/{group}/v1/namespaces/{n}/widgets");
        assert!(
            (0..100).any(|_| {
                let gone = !s.kubectl(bin, &["get", "--raw", &raw]).status.success();
                if !gone {
                    std::thread::sleep(Duration::from_millis(100));
                }
                gone
            }),
            "{bin}: still served"
        );
        s.ok_stdin(bin, &["apply", "-f", "-"], Some(&crd));
        s.ok(
            bin,
            &[
                "wait",
                "--for=condition=Established",
                &format!("crd/{crd_name}"),
                "--timeout=30s",
            ],
        );
        let list = s.ok(bin, &["get", "--raw", &raw]);
        assert!(
            list.contains(r#""items":[]"#),
            "{bin}: objects outlived their CRD: {list}"
        );
        s.ok(bin, &["delete", "crd", &crd_name]);
    }
}
