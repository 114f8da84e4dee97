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
            &["--leader-elect=false", "--use-service-account-credentials"],
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
        "{what}: {jsonpath} never became {value}: {}\ncontroller-manager log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.kcm.log()
    );
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
