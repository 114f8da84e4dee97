//! The workload controllers of kube-controller-manager against a real
//! kube-apiserver, driven and read through the real kubectl: one cluster for the
//! whole binary, each test in its own namespace.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::{ApiServer, Component, have_kubectl};

const K: &str = "kubectl.1.33";

struct Cluster {
    api: ApiServer,
    kcm: Component,
}

/// The shared cluster: an apiserver, and a controller manager whose controllers
/// each use their own service account (so upstream's bootstrap roles are what
/// lets them act).
fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        let api = ApiServer::start();
        let kcm = Component::start(
            &api,
            "kcm",
            &[
                "--leader-elect=false",
                "--use-service-account-credentials",
                "--node-monitor-period=1s",
                "--node-monitor-grace-period=5s",
                "--node-startup-grace-period=5s",
                "--node-eviction-rate=10",
            ],
        );
        kcm.wait_log("starting controller", Duration::from_secs(60));
        Cluster { api, kcm }
    })
}

fn ns(c: &Cluster, name: &str) {
    c.api.ok(K, &["create", "namespace", name]);
}

/// `kubectl wait` until `jsonpath` of `what` in `namespace` is `value`.
fn wait_for(c: &Cluster, namespace: &str, what: &str, jsonpath: &str, value: &str) {
    let out = c.api.kubectl(
        K,
        &[
            "wait",
            "-n",
            namespace,
            what,
            &format!("--for=jsonpath={jsonpath}={value}"),
            "--timeout=60s",
        ],
    );
    assert!(
        out.status.success(),
        "{what}: {jsonpath} never became {value}: {}\ncontroller-manager log:\n{}\napiserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.kcm.log(),
        String::from_utf8_lossy(
            &c.api
                .kubectl(
                    K,
                    &[
                        "get",
                        what,
                        "-n",
                        namespace_of(what, namespace),
                        "-o",
                        "yaml"
                    ]
                )
                .stdout
        )
    );
}

fn namespace_of<'a>(what: &'a str, namespace: &'a str) -> &'a str {
    if namespace.is_empty() {
        what.rsplit('/').next().unwrap_or(what)
    } else {
        namespace
    }
}

/// Polls `kubectl args` until `ok` holds for its output (what `kubectl wait`
/// cannot express: counts of objects).
fn eventually(c: &Cluster, args: &[&str], what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.api.ok(K, args);
        if ok(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last output:\n{out}\ncontroller-manager log:\n{}",
            c.kcm.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn replica_set(c: &Cluster, namespace: &str, name: &str, replicas: u32) {
    c.api.ok_stdin(
        K,
        &["apply", "-n", namespace, "-f", "-"],
        Some(&format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n"
        )),
    );
}

fn pods_of(c: &Cluster, namespace: &str, selector: &str) -> Vec<String> {
    c.api
        .ok(
            K,
            &["get", "pods", "-n", namespace, "-l", selector, "-o", "name"],
        )
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_replica_set_keeps_its_pods_adopts_and_releases() {
    if !have_kubectl() {
        return;
    }
    let c = cluster();
    ns(c, "rs");
    replica_set(c, "rs", "web", 3);
    wait_for(c, "rs", "rs/web", "{.status.replicas}", "3");
    wait_for(c, "rs", "rs/web", "{.status.observedGeneration}", "1");
    let pods = pods_of(c, "rs", "app=web");
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(pods.iter().all(|p| p.starts_with("pod/web-")), "{pods:?}");
    let owners = c.api.ok(
        K,
        &[
            "get",
            "pods",
            "-n",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller} {end}",
        ],
    );
    assert_eq!(
        owners.trim(),
        "ReplicaSet/web/true ReplicaSet/web/true ReplicaSet/web/true"
    );
    // kubectl's columns and events, as upstream's.
    let table = c.api.ok(K, &["get", "rs", "web", "-n", "rs"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "3", "3", "0"], "{table}");
    eventually(
        c,
        &["describe", "rs", "web", "-n", "rs"],
        "Created pod events",
        |d| d.contains("SuccessfulCreate") && d.contains("Created pod: web-"),
    );

    // Scale down: the surplus goes.
    c.api
        .ok(K, &["scale", "rs", "web", "-n", "rs", "--replicas=1"]);
    wait_for(c, "rs", "rs/web", "{.status.replicas}", "1");
    eventually(
        c,
        &["get", "pods", "-n", "rs", "-l", "app=web", "-o", "name"],
        "one pod left",
        |o| o.lines().count() == 1,
    );
    eventually(
        c,
        &["describe", "rs", "web", "-n", "rs"],
        "Deleted pod events",
        |d| d.contains("SuccessfulDelete") && d.contains("Deleted pod: web-"),
    );

    // A pod that stops matching is released (its controller reference removed),
    // and a replacement is made.
    let kept = pods_of(c, "rs", "app=web").remove(0);
    let kept = kept.trim_start_matches("pod/");
    c.api.ok(
        K,
        &["label", "pod", kept, "-n", "rs", "app=loose", "--overwrite"],
    );
    eventually(
        c,
        &[
            "get",
            "pod",
            kept,
            "-n",
            "rs",
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ],
        "released",
        |o| o.trim().is_empty() || o.trim() == "[]",
    );
    eventually(
        c,
        &["get", "pods", "-n", "rs", "-l", "app=web", "-o", "name"],
        "a replacement",
        |o| o.lines().count() == 1 && !o.contains(kept),
    );
    // Relabelled back, it is an orphan that matches: adopted, then the set has
    // one too many and deletes one.
    c.api.ok(
        K,
        &["label", "pod", kept, "-n", "rs", "app=web", "--overwrite"],
    );
    wait_for(c, "rs", "rs/web", "{.status.replicas}", "1");
    eventually(
        c,
        &[
            "get",
            "pods",
            "-n",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name} {end}",
        ],
        "one adopted pod",
        |o| o.trim() == "web",
    );
}

#[test]
fn a_create_refused_by_quota_is_reported_as_upstream() {
    if !have_kubectl() {
        return;
    }
    let c = cluster();
    ns(c, "quota");
    c.api.ok(
        K,
        &["create", "quota", "pods", "-n", "quota", "--hard=pods=2"],
    );
    wait_for(c, "quota", "quota/pods", "{.status.hard.pods}", "2");
    replica_set(c, "quota", "big", 3);
    wait_for(
        c,
        "quota",
        "rs/big",
        "{.status.conditions[?(@.type==\"ReplicaFailure\")].reason}",
        "FailedCreate",
    );
    let message = c.api.ok(
        K,
        &[
            "get",
            "rs",
            "big",
            "-n",
            "quota",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ReplicaFailure\")].message}",
        ],
    );
    assert!(
        message.contains(
            "is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{message}"
    );
    assert_eq!(pods_of(c, "quota", "app=big").len(), 2);
    eventually(
        c,
        &["describe", "rs", "big", "-n", "quota"],
        "FailedCreate event",
        |d| d.contains("FailedCreate") && d.contains("Error creating: pods \"big-"),
    );
    // Room again: the third pod is created and the condition goes.
    c.api.ok(K, &["delete", "quota", "pods", "-n", "quota"]);
    wait_for(c, "quota", "rs/big", "{.status.replicas}", "3");
    eventually(
        c,
        &[
            "get",
            "rs",
            "big",
            "-n",
            "quota",
            "-o",
            "jsonpath={.status.conditions}",
        ],
        "the ReplicaFailure condition removed",
        |o| !o.contains("ReplicaFailure"),
    );
}

/// Stands in for kubelets until they exist: every pod of `namespace` that is not
/// Running is marked Running and Ready, as a kubelet reports a started pod. Stops
/// when the returned guard is dropped.
struct Simulator {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn simulate_kubelet(c: &'static Cluster, namespace: &'static str) -> Simulator {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        let status = r#"{"status":{"phase":"Running","conditions":[{"type":"Initialized","status":"True"},{"type":"ContainersReady","status":"True"},{"type":"Ready","status":"True"}]}}"#;
        while !s.load(std::sync::atomic::Ordering::SeqCst) {
            let out = c.api.kubectl(
                K,
                &[
                    "get",
                    "pods",
                    "-n",
                    namespace,
                    "-o",
                    "jsonpath={range .items[?(@.status.phase==\"Pending\")]}{.metadata.name} {end}",
                ],
            );
            for pod in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = c.api.kubectl(
                    K,
                    &[
                        "patch",
                        "pod",
                        pod,
                        "-n",
                        namespace,
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        status,
                    ],
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    Simulator {
        stop,
        thread: Some(thread),
    }
}

fn rollout_status(c: &Cluster, namespace: &str) -> String {
    let out = c.api.kubectl(
        K,
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            namespace,
            "--timeout=90s",
        ],
    );
    assert!(
        out.status.success(),
        "rollout status: {}\n{}\ncontroller-manager log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.kcm.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn image(c: &Cluster, namespace: &str) -> String {
    c.api.ok(
        K,
        &[
            "get",
            "deployment",
            "web",
            "-n",
            namespace,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )
}

#[test]
fn a_deployment_rolls_out_scales_undoes_and_pauses_as_upstream() {
    if !have_kubectl() {
        return;
    }
    let c = cluster();
    ns(c, "dep");
    let _kubelet = simulate_kubelet(c, "dep");
    c.api.ok(
        K,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "dep",
            "--image=busybox:1",
            "--replicas=3",
        ],
    );
    let out = rollout_status(c, "dep");
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let rs = c.api.ok(K, &["get", "rs", "-n", "dep", "-o", "name"]);
    assert_eq!(rs.lines().count(), 1, "{rs}");
    assert!(rs.starts_with("replicaset.apps/web-"), "{rs}");
    assert_eq!(pods_of(c, "dep", "app=web").len(), 3);
    let conditions = c.api.ok(
        K,
        &[
            "get",
            "deployment",
            "web",
            "-n",
            "dep",
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
        ],
    );
    assert!(
        conditions.contains("Available=True/MinimumReplicasAvailable"),
        "{conditions}"
    );
    assert!(
        conditions.contains("Progressing=True/NewReplicaSetAvailable"),
        "{conditions}"
    );

    // A new image: a second ReplicaSet, revision 2.
    c.api.ok(
        K,
        &[
            "set",
            "image",
            "deployment/web",
            "-n",
            "dep",
            "busybox=busybox:2",
        ],
    );
    rollout_status(c, "dep");
    let history = c
        .api
        .ok(K, &["rollout", "history", "deployment/web", "-n", "dep"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    eventually(
        c,
        &["describe", "deployment", "web", "-n", "dep"],
        "scaling events",
        |d| d.contains("ScalingReplicaSet") && d.contains("Scaled down replica set web-"),
    );

    // Undo: back to busybox:1 as revision 3.
    let out = c
        .api
        .ok(K, &["rollout", "undo", "deployment/web", "-n", "dep"]);
    assert_eq!(out.trim(), "deployment.apps/web rolled back");
    rollout_status(c, "dep");
    assert_eq!(image(c, "dep"), "busybox:1");
    let history = c
        .api
        .ok(K, &["rollout", "history", "deployment/web", "-n", "dep"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");

    // Scale.
    c.api
        .ok(K, &["scale", "deployment/web", "-n", "dep", "--replicas=5"]);
    rollout_status(c, "dep");
    eventually(
        c,
        &["get", "pods", "-n", "dep", "-l", "app=web", "-o", "name"],
        "five pods",
        |o| o.lines().count() == 5,
    );

    // Paused: a new template makes no ReplicaSet until resumed.
    c.api
        .ok(K, &["rollout", "pause", "deployment/web", "-n", "dep"]);
    c.api.ok(
        K,
        &[
            "set",
            "image",
            "deployment/web",
            "-n",
            "dep",
            "busybox=busybox:3",
        ],
    );
    wait_for(
        c,
        "dep",
        "deployment/web",
        "{.status.conditions[?(@.type==\"Progressing\")].reason}",
        "DeploymentPaused",
    );
    std::thread::sleep(Duration::from_secs(1));
    let rs = c.api.ok(K, &["get", "rs", "-n", "dep", "-o", "name"]);
    assert_eq!(rs.lines().count(), 2, "no new set while paused: {rs}");
    c.api
        .ok(K, &["rollout", "resume", "deployment/web", "-n", "dep"]);
    rollout_status(c, "dep");
    let rs = c.api.ok(K, &["get", "rs", "-n", "dep", "-o", "name"]);
    assert_eq!(rs.lines().count(), 3, "{rs}");
}

#[test]
fn deleting_a_namespace_empties_it_then_removes_it() {
    if !have_kubectl() {
        return;
    }
    let c = cluster();
    c.api.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: widgets, singular: widget, kind: Widget}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n",
        ),
    );
    wait_for(
        c,
        "default",
        "crd/widgets.example.com",
        "{.status.conditions[?(@.type==\"Established\")].status}",
        "True",
    );
    ns(c, "doomed");
    c.api.ok(
        K,
        &[
            "create",
            "configmap",
            "cfg",
            "-n",
            "doomed",
            "--from-literal=a=b",
        ],
    );
    replica_set(c, "doomed", "web", 2);
    wait_for(c, "doomed", "rs/web", "{.status.replicas}", "2");
    c.api.ok_stdin(
        K,
        &["apply", "-n", "doomed", "-f", "-"],
        Some(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: plain\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n",
        ),
    );

    // Deleting marks it Terminating at once; the held widget keeps it there, and
    // the conditions say why, in upstream's words.
    let out = c
        .api
        .ok(K, &["delete", "namespace", "doomed", "--wait=false"]);
    assert_eq!(out.trim(), "namespace \"doomed\" deleted");
    wait_for(c, "", "namespace/doomed", "{.status.phase}", "Terminating");
    wait_for(
        c,
        "",
        "namespace/doomed",
        "{.status.conditions[?(@.type==\"NamespaceFinalizersRemaining\")].message}",
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
    );
    let left = c.api.ok(
        K,
        &[
            "get",
            "widgets,configmaps,rs,pods",
            "-n",
            "doomed",
            "-o",
            "name",
        ],
    );
    assert_eq!(left.trim(), "widget.example.com/held", "{left}");
    // Creating in a terminating namespace is refused.
    let refused = c
        .api
        .fails(K, &["create", "configmap", "late", "-n", "doomed"], None);
    assert!(
        refused.contains("because it is being terminated"),
        "{refused}"
    );

    // The finalizer goes: the namespace is finalized and deleted.
    c.api.ok(
        K,
        &[
            "patch",
            "widget",
            "held",
            "-n",
            "doomed",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    let out = c.api.kubectl(
        K,
        &["wait", "--for=delete", "namespace/doomed", "--timeout=60s"],
    );
    assert!(
        out.status.success(),
        "{}\ncontroller-manager log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.kcm.log()
    );
    let gone = c.api.fails(K, &["get", "namespace", "doomed"], None);
    assert!(gone.contains("namespaces \"doomed\" not found"), "{gone}");
}

#[test]
fn a_replication_controller_keeps_its_pods() {
    if !have_kubectl() {
        return;
    }
    let c = cluster();
    ns(c, "rc");
    c.api.ok_stdin(
        K,
        &["apply", "-n", "rc", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: old\nspec:\n  replicas: 2\n  selector: {app: old}\n  template:\n    metadata:\n      labels: {app: old}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n",
        ),
    );
    wait_for(c, "rc", "rc/old", "{.status.replicas}", "2");
    let owners = c.api.ok(
        K,
        &[
            "get", "pods", "-n", "rc", "-l", "app=old", "-o",
            "jsonpath={range .items[*]}{.metadata.ownerReferences[0].apiVersion}/{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {end}",
        ],
    );
    assert_eq!(
        owners.trim(),
        "v1/ReplicationController/old v1/ReplicationController/old"
    );
    c.api
        .ok(K, &["scale", "rc", "old", "-n", "rc", "--replicas=1"]);
    wait_for(c, "rc", "rc/old", "{.status.replicas}", "1");
    eventually(
        c,
        &["describe", "rc", "old", "-n", "rc"],
        "events about the rc",
        |d| {
            d.contains("SuccessfulCreate")
                && d.contains("SuccessfulDelete")
                && d.contains("replication-controller")
        },
    );
}

fn ready_status(heartbeat: &str) -> String {
    format!(
        r#"{{"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"{heartbeat}","lastTransitionTime":"{heartbeat}"}}]}}}}"#
    )
}

#[test]
fn node_lifecycle_taints_follow_health() {
    if !have_kubectl() {
        return;
    }
    let c = cluster();
    c.api.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Node\nmetadata:\n  name: lifecycle-1\n"),
    );
    // Ready False: the not-ready taints; Ready True lifts them.
    c.api.ok(
        K,
        &[
            "patch",
            "node",
            "lifecycle-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            &ready_status("2026-01-01T00:00:00Z").replace("\"True\"", "\"False\""),
        ],
    );
    eventually(
        c,
        &[
            "get",
            "node",
            "lifecycle-1",
            "-o",
            "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}",
        ],
        "not-ready taints",
        |o| {
            o.contains("node.kubernetes.io/not-ready:NoSchedule")
                && o.contains("node.kubernetes.io/not-ready:NoExecute")
        },
    );
    c.api.ok(
        K,
        &[
            "patch",
            "node",
            "lifecycle-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            &ready_status("2026-01-01T00:01:00Z"),
        ],
    );
    eventually(
        c,
        &[
            "get",
            "node",
            "lifecycle-1",
            "-o",
            "jsonpath={.spec.taints}",
        ],
        "not-ready lifted",
        |o| !o.contains("not-ready"),
    );
    // Cordoned: the unschedulable taint.
    c.api.ok(K, &["cordon", "lifecycle-1"]);
    eventually(
        c,
        &[
            "get",
            "node",
            "lifecycle-1",
            "-o",
            "jsonpath={.spec.taints}",
        ],
        "unschedulable taint",
        |o| o.contains("node.kubernetes.io/unschedulable"),
    );
    c.api.ok(K, &["uncordon", "lifecycle-1"]);
    // No posts for the grace period: Unknown, in upstream's words, and unreachable.
    wait_for(
        c,
        "",
        "node/lifecycle-1",
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
        "NodeStatusUnknown",
    );
    let msg = c.api.ok(
        K,
        &[
            "get",
            "node",
            "lifecycle-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
        ],
    );
    assert_eq!(msg, "Kubelet stopped posting node status.");
    eventually(
        c,
        &[
            "get",
            "node",
            "lifecycle-1",
            "-o",
            "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}",
        ],
        "unreachable taints",
        |o| {
            o.contains("node.kubernetes.io/unreachable:NoSchedule")
                && o.contains("node.kubernetes.io/unreachable:NoExecute")
                && !o.contains("unschedulable")
        },
    );
    // The kubelet is back: the taints go.
    c.api.ok(
        K,
        &[
            "patch",
            "node",
            "lifecycle-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            &ready_status("2026-01-01T00:10:00Z"),
        ],
    );
    eventually(
        c,
        &[
            "get",
            "node",
            "lifecycle-1",
            "-o",
            "jsonpath={.spec.taints}",
        ],
        "taints removed",
        |o| !o.contains("unreachable"),
    );
}
