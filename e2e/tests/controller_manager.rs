//! kube-controller-manager against a real kube-apiserver: Lease leader election
//! between two replicas (one leads, the other takes over when it dies), the secure
//! port's health and metrics, and flag errors in upstream's words.

use std::process::Command;
use std::time::Duration;

use e2e::{ApiServer, ControllerManager, binary, have_kubectl};

const FAST: [&str; 3] = [
    "--leader-elect-lease-duration=3s",
    "--leader-elect-renew-deadline=2s",
    "--leader-elect-retry-period=500ms",
];

fn curl(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{port}{path}")])
        .args(["-H", &format!("Authorization: Bearer {}", e2e::ADMIN_TOKEN)])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lease(s: &ApiServer) -> String {
    s.ok(
        "kubectl.1.33",
        &[
            "get",
            "lease",
            "kube-controller-manager",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.spec.holderIdentity} {.spec.leaseTransitions}",
        ],
    )
}

#[test]
fn leader_election_hands_over_and_the_new_leader_collects_garbage() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let mut a = ControllerManager::start(&s, "kcm-a", &FAST);
    a.wait_log("successfully acquired lease", Duration::from_secs(60));
    let b = ControllerManager::start(&s, "kcm-b", &FAST);
    b.wait_log(
        "attempting to acquire leader lease",
        Duration::from_secs(60),
    );
    // b waits while a renews: more than a lease duration, on b's own clock.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !b.log().contains("successfully acquired lease"),
        "{}",
        b.log()
    );
    let (holder, transitions) = lease(&s)
        .split_once(' ')
        .map(|(h, t)| (h.to_owned(), t.to_owned()))
        .unwrap();
    assert_eq!(transitions, "0");
    assert!(!holder.is_empty());
    assert!(
        curl(a.port, "/metrics")
            .contains("leader_election_master_status{name=\"kube-controller-manager\"} 1")
    );
    assert!(
        curl(b.port, "/metrics")
            .contains("leader_election_master_status{name=\"kube-controller-manager\"} 0")
    );
    assert_eq!(
        curl(b.port, "/healthz?verbose"),
        "[+]ping ok\n[+]leaderElection ok\nhealthz check passed\n"
    );
    assert_eq!(curl(a.port, "/healthz"), "ok");

    // a dies without releasing the Lease; b takes over once it expires.
    a.kill();
    b.wait_log("successfully acquired lease", Duration::from_secs(30));
    let (new_holder, transitions) = lease(&s)
        .split_once(' ')
        .map(|(h, t)| (h.to_owned(), t.to_owned()))
        .unwrap();
    assert_ne!(new_holder, holder);
    assert_eq!(transitions, "1");
    b.wait_log("all resource monitors have synced", Duration::from_secs(30));

    // The new leader's garbage collector deletes a dependent whose owner is gone.
    let k = "kubectl.1.33";
    s.ok(k, &["create", "configmap", "owner"]);
    let uid = s.ok(k, &["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]);
    s.ok_stdin(
        k,
        &["create", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: dependent\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}]\n"
        )),
    );
    s.ok(k, &["delete", "cm", "owner"]);
    assert!(
        s.wait_gone(k, &["secret", "dependent"], Duration::from_secs(30)),
        "not collected:\n{}",
        b.log()
    );
    // Every controller's queues are exported, not only the first one's (the
    // workqueue families are registered once and shared).
    let metrics = curl(b.port, "/metrics");
    for queue in [
        "garbage_collector_attempt_to_delete",
        "garbage_collector_attempt_to_orphan",
        "serviceaccount",
        "root_ca_cert_publisher",
        "resourcequota_primary",
    ] {
        assert!(
            metrics.contains(&format!("workqueue_depth{{name=\"{queue}\"}}")),
            "{queue} missing from:\n{metrics}"
        );
    }
}

#[test]
fn bad_flags_are_refused_in_upstreams_words() {
    let out = Command::new(binary("kube-controller-manager"))
        .args(["--controllers=*,bogus", "--kubeconfig=/nonexistent"])
        .output()
        .expect("run kube-controller-manager");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"bogus\" is not in the list of known controllers"),
        "{err}"
    );
    let out = Command::new(binary("kube-controller-manager"))
        .args([
            "--leader-elect-lease-duration=5s",
            "--leader-elect-renew-deadline=10s",
        ])
        .output()
        .expect("run kube-controller-manager");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("leaseDuration must be greater than renewDeadline")
    );
}
