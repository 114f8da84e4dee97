//! etcdctl against one keelson-store member, compared line by line with a real etcd
//! 3.4 member running the same commands on this machine.

mod support;

use std::time::Duration;

use support::*;

/// Commands whose output (stdout and the `Error:` line) must match etcd's exactly.
/// Revisions line up because both start from an empty store at revision 1.
const SCRIPT: &[&[&str]] = &[
    &["put", "a", "1"],
    &["put", "b", "2"],
    &["put", "c", "3"],
    &["put", "a", "4"],
    &["put", "ab", "5"],
    &["get", "a"],
    &["get", "a", "--rev=2"],
    &["get", "a", "--prefix"],
    &["get", "a", "c"],
    &["get", "", "--from-key", "--keys-only"],
    &["get", "a", "--from-key", "--limit=2"],
    &[
        "get",
        "a",
        "--from-key",
        "--sort-by=MODIFY",
        "--order=DESCEND",
    ],
    &[
        "get",
        "a",
        "--from-key",
        "--sort-by=VALUE",
        "--order=ASCEND",
    ],
    &[
        "get",
        "a",
        "--from-key",
        "--sort-by=CREATE",
        "--order=DESCEND",
        "--limit=1",
    ],
    &["get", "a", "--from-key", "--print-value-only"],
    &["get", "a", "--from-key", "--count-only", "-w", "fields"],
    &["get", "zz"],
    &["get", "c", "a"],
    &["get", "a", "--prefix", "--rev=3"],
    &["put", "a", "6", "--prev-kv"],
    &["del", "b", "--prev-kv"],
    &["del", "zz"],
    &["del", "a", "--prefix"],
    &["get", "b", "--rev=3"],
    &["put", "x", "--ignore-value"],
    &["put", "c", "--ignore-value"],
    &["get", "c", "-w", "fields"],
    &["put", "", "v"],
    &["get", ""],
    &["put", "k", "v", "--lease=1234"],
    &["compaction", "3"],
    &["get", "a", "--rev=2"],
    &["get", "a", "--rev=1000"],
    &["compaction", "2"],
    &["compaction", "1000"],
    &["get", "c", "--rev=3"],
    &["del", "c", "a"],
    &["lease", "revoke", "1234"],
    &["lease", "timetolive", "1234"],
    &["get", "", "--from-key", "-w", "fields"],
];

/// The same txns, fed on stdin as `etcdctl txn` reads them.
const TXNS: &[&str] = &[
    "value(\"c\") = \"3\"\n\nput t1 yes\nget c\n\nput t1 no\n\n",
    "version(\"c\") > \"5\"\n\nput t2 yes\n\nput t2 no\nget t2\n\n",
    "mod(\"c\") < \"100\"\ncreate(\"nope\") = \"0\"\n\ndel t1\nput t3 z\n\n\n",
    "value(\"missing\") = \"\"\n\nput t4 yes\n\nput t4 no\n\n",
];

fn normalize(out: &std::process::Output) -> String {
    // Drop fields that legitimately differ between servers (IDs, terms).
    let stdout = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !(l.starts_with("\"ClusterID\"")
                || l.starts_with("\"MemberID\"")
                || l.starts_with("\"RaftTerm\""))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let err = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .collect::<Vec<_>>()
        .join("\n");
    format!("{stdout}\n{err}").trim().to_owned()
}

fn run_script(endpoint: &str) -> Vec<String> {
    let mut out = Vec::new();
    for cmd in SCRIPT {
        let o = etcdctl(endpoint, cmd);
        out.push(format!("$ etcdctl {}\n{}", cmd.join(" "), normalize(&o)));
    }
    for t in TXNS {
        let o = etcdctl_in(endpoint, &["txn"], Some(t));
        out.push(format!("$ etcdctl txn <<< {t:?}\n{}", normalize(&o)));
    }
    out
}

#[test]
fn kv_txn_compaction_and_errors_match_etcd() {
    let ours = Cluster::start(1, Flavor::Keelson, &[]);
    let ours_out = run_script(&ours.endpoints());
    if !have_etcd() {
        panic!("etcd (Debian's etcd-server) must be installed for the side-by-side check");
    }
    let theirs = Cluster::start(1, Flavor::Etcd, &[]);
    let theirs_out = run_script(&theirs.endpoints());
    let mut diffs = Vec::new();
    for (a, b) in ours_out.iter().zip(&theirs_out) {
        if a != b {
            diffs.push(format!("--- keelson-store\n{a}\n--- etcd\n{b}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences from etcd:\n{}",
        diffs.len(),
        diffs.join("\n\n")
    );
}

#[test]
fn bad_input_gets_etcds_errors_and_writes_nothing() {
    let c = Cluster::start(1, Flavor::Keelson, &["--max-request-bytes", "4096"]);
    let ep = c.endpoints();
    ok(etcdctl(&ep, &["put", "k", "v"]));
    let rev = |ep: &str| -> String {
        let o = ok(etcdctl(ep, &["get", "k", "-w", "fields"]));
        o.lines()
            .find(|l| l.starts_with("\"Revision\""))
            .unwrap_or_default()
            .to_owned()
    };
    let before = rev(&ep);
    assert_eq!(
        err(etcdctl(&ep, &["put", "", "v"])),
        "Error: etcdserver: key is not provided"
    );
    let big = "x".repeat(8192);
    assert_eq!(
        err(etcdctl(&ep, &["put", "big", &big])),
        "Error: etcdserver: request is too large"
    );
    assert_eq!(
        err(etcdctl(&ep, &["put", "k", "v", "--lease=abcd"])),
        "Error: etcdserver: requested lease not found"
    );
    assert_eq!(
        err(etcdctl(&ep, &["get", "k", "--rev=99"])),
        "Error: etcdserver: mvcc: required revision is a future revision"
    );
    ok(etcdctl(&ep, &["put", "k", "v2"]));
    ok(etcdctl(&ep, &["compaction", "3"]));
    assert_eq!(
        err(etcdctl(&ep, &["get", "k", "--rev=2"])),
        "Error: etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        ok(etcdctl(&ep, &["get", "z", "a"])),
        "",
        "an inverted range matches nothing"
    );
    assert_eq!(
        err(etcdctl_in(
            &ep,
            &["txn"],
            Some("\n\nput d 1\nput d 2\n\n\n")
        )),
        "Error: etcdserver: duplicate key given in txn request"
    );
    // Nothing above was written: the revision moved only for the one good put.
    let after = rev(&ep);
    assert_ne!(before, after);
    assert_eq!(ok(etcdctl(&ep, &["get", "big"])), "");
    assert_eq!(ok(etcdctl(&ep, &["get", "d"])), "");
    assert_eq!(
        ok(etcdctl(&ep, &["get", "k", "--print-value-only"])),
        "v2\n"
    );
}

#[test]
fn leases_attach_expire_and_revoke() {
    let c = Cluster::start(1, Flavor::Keelson, &[]);
    let ep = c.endpoints();
    let grant = ok(etcdctl(&ep, &["lease", "grant", "3"]));
    // "lease 694d77aa9e38260f granted with TTL(3s)"
    let id = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    assert!(grant.contains("granted with TTL(3s)"), "{grant}");
    ok(etcdctl(
        &ep,
        &["put", "leased", "v", &format!("--lease={id}")],
    ));
    let ttl = ok(etcdctl(&ep, &["lease", "timetolive", &id, "--keys"]));
    assert!(
        ttl.contains("granted with TTL(3s)") && ttl.contains("attached keys([leased])"),
        "{ttl}"
    );
    assert!(ok(etcdctl(&ep, &["lease", "list"])).contains(&id));
    let ka = ok(etcdctl(&ep, &["lease", "keep-alive", "--once", &id]));
    assert!(ka.contains("keepalived with TTL(3)"), "{ka}");
    // Expiry deletes the key through Raft.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if ok(etcdctl(&ep, &["get", "leased"])).is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lease did not expire");
        std::thread::sleep(Duration::from_millis(300));
    }
    let ttl = ok(etcdctl(&ep, &["lease", "timetolive", &id]));
    assert!(ttl.contains("already expired"), "{ttl}");
    // Revoke deletes attached keys at once.
    let g2 = ok(etcdctl(&ep, &["lease", "grant", "100"]));
    let id2 = g2.split_whitespace().nth(1).unwrap().to_owned();
    ok(etcdctl(&ep, &["put", "k2", "v", &format!("--lease={id2}")]));
    let r = ok(etcdctl(&ep, &["lease", "revoke", &id2]));
    assert!(r.contains("revoked"), "{r}");
    assert_eq!(ok(etcdctl(&ep, &["get", "k2"])), "");
    assert_eq!(
        err(etcdctl(&ep, &["lease", "revoke", &id2])),
        "Error: failed to revoke lease (etcdserver: requested lease not found)",
        "etcdctl wraps the server's error this way against etcd too"
    );
}

#[test]
fn watch_history_prev_kv_and_compaction() {
    let c = Cluster::start(1, Flavor::Keelson, &[]);
    let ep = c.endpoints();
    ok(etcdctl(&ep, &["put", "w", "1"])); // rev 2
    ok(etcdctl(&ep, &["put", "w", "2"])); // rev 3
    ok(etcdctl(&ep, &["del", "w"])); // rev 4
    // A watch from a past revision replays history; with prev-kv it shows old values.
    let mut child = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            &format!("--endpoints={ep}"),
            "watch",
            "w",
            "--rev=2",
            "--prev-kv",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    ok(etcdctl(&ep, &["put", "w", "live"])); // rev 5, delivered live
    std::thread::sleep(Duration::from_millis(800));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let want = "PUT\nw\n1\nPUT\nw\n1\nw\n2\nDELETE\nw\n2\nw\n\nPUT\nw\nlive\n";
    assert_eq!(s, want, "watch output");
    // A watch on a compacted revision is cancelled with etcd's message.
    ok(etcdctl(&ep, &["compaction", "4"]));
    let o = std::process::Command::new("timeout")
        .args([
            "3",
            "etcdctl",
            &format!("--endpoints={ep}"),
            "watch",
            "w",
            "--rev=2",
        ])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    let all = text(&o);
    assert!(
        all.contains("required revision has been compacted"),
        "watch on a compacted revision: {all}"
    );
}

#[test]
fn maintenance_status_hash_defrag_alarm_and_metrics() {
    let metrics_port = free_port();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let c = Cluster::start(1, Flavor::Keelson, &["--listen-metrics-urls", &metrics_url]);
    let ep = c.endpoints();
    ok(etcdctl(&ep, &["put", "m", "1"]));
    let st = ok(etcdctl(&ep, &["endpoint", "status", "-w", "table"]));
    assert!(st.contains("true"), "is leader: {st}");
    let h = ok(etcdctl(&ep, &["endpoint", "hashkv"]));
    assert!(h.contains(&ep), "{h}");
    assert!(ok(etcdctl(&ep, &["defrag"])).contains("Finished defragmenting"));
    assert_eq!(ok(etcdctl(&ep, &["alarm", "list"])), "");
    let health = etcdctl(&ep, &["endpoint", "health"]);
    assert!(
        health.status.success() && text(&health).contains("is healthy"),
        "{}",
        text(&health)
    );
    // /metrics and /health on the client port.
    let port = c.members[0].client_port;
    let metrics = http_get(port, "/metrics");
    for name in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_proposals_failed_total",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_mvcc_db_total_size_in_bytes",
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\"",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
    let health = http_get(port, "/health");
    assert!(
        health.contains("{\"health\":\"true\",\"reason\":\"\"}"),
        "{health}"
    );
    // The same on --listen-metrics-urls.
    assert!(http_get(metrics_port, "/metrics").contains("etcd_server_has_leader 1"));
    assert!(http_get(metrics_port, "/health").contains("\"health\":\"true\""));
}

#[test]
fn quota_raises_nospace_and_disarm_recovers() {
    // redb starts near 1 MiB; a 2 MiB quota fills quickly.
    let c = Cluster::start(1, Flavor::Keelson, &["--quota-backend-bytes", "2097152"]);
    let ep = c.endpoints();
    let value = "v".repeat(100_000);
    let mut hit = None;
    for i in 0..200 {
        let o = etcdctl(&ep, &["put", &format!("fill{i}"), &value]);
        if !o.status.success() {
            hit = Some(err(o));
            break;
        }
    }
    assert_eq!(
        hit.as_deref(),
        Some("Error: etcdserver: mvcc: database space exceeded")
    );
    assert!(ok(etcdctl(&ep, &["alarm", "list"])).contains("alarm:NOSPACE"));
    // Deletes still work; puts do not until the alarm is disarmed.
    ok(etcdctl(&ep, &["del", "fill", "--prefix"]));
    assert_eq!(
        err(etcdctl(&ep, &["put", "small", "x"])),
        "Error: etcdserver: mvcc: database space exceeded"
    );
    let rev = ok(etcdctl(&ep, &["get", "small", "-w", "fields"]));
    let rev = rev
        .lines()
        .find_map(|l| l.strip_prefix("\"Revision\" : "))
        .unwrap()
        .trim()
        .to_owned();
    ok(etcdctl(&ep, &["compaction", &rev, "--physical"]));
    ok(etcdctl(&ep, &["defrag"]));
    ok(etcdctl(&ep, &["alarm", "disarm"]));
    ok(etcdctl(&ep, &["put", "small", "x"]));
}

#[test]
fn snapshot_save_and_restore_into_a_new_member() {
    let c = Cluster::start(1, Flavor::Keelson, &[]);
    let ep = c.endpoints();
    for i in 0..50 {
        ok(etcdctl(
            &ep,
            &["put", &format!("s{i:02}"), &format!("v{i}")],
        ));
    }
    let file = c.dir.path().join("snap.db");
    let out = ok(etcdctl(&ep, &["snapshot", "save", &path_str(&file)]));
    assert!(out.contains("Snapshot saved at"), "{out}");
    // Restore into a new data dir and start a member on it.
    let peer = free_port();
    let client = free_port();
    let data = c.dir.path().join("restored");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_keelson-store"))
        .args(["snapshot", "restore", &path_str(&file), "--name", "r1"])
        .args(["--data-dir", &path_str(&data)])
        .args(["--initial-cluster", &format!("r1={peer_url}")])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .output()
        .unwrap();
    assert!(st.status.success(), "restore: {}", text(&st));
    // A second restore into the same dir is refused and changes nothing.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_keelson-store"))
        .args(["snapshot", "restore", &path_str(&file), "--name", "r1"])
        .args(["--data-dir", &path_str(&data)])
        .args(["--initial-cluster", &format!("r1={peer_url}")])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(text(&again).contains("exists"), "{}", text(&again));
    let mut m = MemberProc {
        name: "r1".into(),
        client_port: client,
        peer_port: peer,
        data_dir: data,
        child: None,
        log: c.dir.path().join("r1.log"),
        extra: vec![],
        flavor: Flavor::Keelson,
        initial_cluster: format!("r1={peer_url}"),
        state: "new".into(),
        scheme: "http",
        proxy_port: None,
    };
    m.start();
    let rep = m.endpoint();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !etcdctl(&rep, &["endpoint", "health"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "restored member: {}",
            m.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = ok(etcdctl(&rep, &["get", "s", "--prefix", "--keys-only"]));
    assert_eq!(all.lines().filter(|l| !l.is_empty()).count(), 50);
    assert_eq!(
        ok(etcdctl(&rep, &["get", "s07", "--print-value-only"])),
        "v7\n"
    );
    // A corrupt file is refused.
    let bad = c.dir.path().join("bad.db");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&bad, bytes).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_keelson-store"))
        .args(["snapshot", "restore", &path_str(&bad), "--data-dir"])
        .arg(c.dir.path().join("never"))
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("checksum"),
        "{}",
        text(&o)
    );
    assert!(!c.dir.path().join("never").exists(), "nothing half-written");
}

#[test]
fn sigterm_shuts_down_cleanly_and_restart_keeps_data() {
    let mut c = Cluster::start(1, Flavor::Keelson, &[]);
    let ep = c.endpoints();
    for i in 0..20 {
        ok(etcdctl(&ep, &["put", &format!("r{i}"), "v"]));
    }
    let st = c.members[0].terminate().expect("exit status");
    assert!(st.success(), "exit status {st:?}");
    c.members[0].start();
    c.wait_healthy(Duration::from_secs(20));
    let keys = ok(etcdctl(&ep, &["get", "r", "--prefix", "--keys-only"]));
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 20);
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
