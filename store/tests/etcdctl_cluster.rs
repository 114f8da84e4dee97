//! Multi-member clusters of real keelson-store processes, driven by etcdctl and by a
//! gRPC client for write load.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{PutRequest, RangeRequest};
use support::*;

fn count(ep: &str, prefix: &str, serializable: bool) -> usize {
    let mut args = vec!["get", prefix, "--prefix", "--keys-only"];
    if serializable {
        args.push("--consistency=s");
    }
    ok(etcdctl(ep, &args))
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

/// Writes keys `prefix{i}` round-robin over `endpoints` until `stop`; returns the keys
/// whose put was acknowledged.
async fn write_load(
    endpoints: Vec<String>,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> BTreeSet<String> {
    let mut clients = Vec::new();
    for ep in &endpoints {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{ep}"))
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(3))
            .connect_lazy();
        clients.push(KvClient::new(ch));
    }
    let mut acked = BTreeSet::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{prefix}{i:06}");
        let c = &mut clients[i % endpoints.len()];
        let res = c
            .put(PutRequest {
                key: key.clone().into_bytes(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .await;
        if res.is_ok() {
            acked.insert(key);
        }
        i += 1;
    }
    acked
}

/// Every running member holds every key in `acked` under `prefix`.
fn assert_no_acked_lost(c: &Cluster, prefix: &str, acked: &BTreeSet<String>) {
    for m in c.members.iter().filter(|m| m.child.is_some()) {
        let keys: BTreeSet<String> = ok(etcdctl(
            &m.endpoint(),
            &["get", prefix, "--prefix", "--keys-only"],
        ))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
        let lost: Vec<&String> = acked.difference(&keys).collect();
        assert!(
            lost.is_empty(),
            "member {} lost acknowledged writes: {lost:?}",
            m.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill9_under_load_loses_no_acknowledged_write() {
    let mut c = tokio::task::spawn_blocking(|| Cluster::start(3, Flavor::Keelson, &[]))
        .await
        .unwrap();
    let leader = c.wait_leader(Duration::from_secs(10));
    let endpoints: Vec<String> = c.members.iter().map(MemberProc::endpoint).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(write_load(endpoints.clone(), "load/", stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.members[leader].kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    assert!(acked.len() > 20, "the load made progress: {}", acked.len());
    // The survivors elected a new leader; restart the old one and let it catch up.
    c.members[leader].start();
    tokio::task::spawn_blocking(move || {
        c.wait_healthy(Duration::from_secs(30));
        assert_no_acked_lost(&c, "load/", &acked);
    })
    .await
    .unwrap();
}

#[test]
fn three_members_replicate_and_restart_all_from_disk() {
    let mut c = Cluster::start(3, Flavor::Keelson, &[]);
    let eps: Vec<String> = c.members.iter().map(MemberProc::endpoint).collect();
    for i in 0..30 {
        ok(etcdctl(
            &eps[i % 3],
            &["put", &format!("k{i:02}"), &format!("v{i}")],
        ));
    }
    for ep in &eps {
        assert_eq!(count(ep, "k", false), 30, "linearizable read on {ep}");
    }
    let members = ok(etcdctl(&eps[0], &["member", "list"]));
    assert_eq!(members.lines().count(), 3, "{members}");
    // --cluster commands reach every member through its advertised client URL (etcdctl
    // sends an `http://...` :authority there; see third_party/README.md).
    let status = ok(etcdctl(&eps[0], &["endpoint", "status", "--cluster"]));
    assert_eq!(status.lines().count(), 3, "{status}");
    let health = etcdctl(&eps[0], &["endpoint", "health", "--cluster"]);
    assert!(health.status.success(), "{}", text(&health));
    let hashes: std::collections::BTreeSet<String> =
        ok(etcdctl(&eps[0], &["endpoint", "hashkv", "--cluster"]))
            .lines()
            .filter_map(|l| l.split(", ").nth(1).map(str::to_owned))
            .collect();
    assert_eq!(
        hashes.len(),
        1,
        "every member hashes its keys the same: {hashes:?}"
    );
    assert!(members.contains("started"), "{members}");
    // kill -9 every member, then restart all from their data dirs.
    for m in &mut c.members {
        m.kill9();
    }
    for m in &mut c.members {
        m.start();
    }
    c.wait_healthy(Duration::from_secs(30));
    for ep in &eps {
        assert_eq!(count(ep, "k", false), 30, "after restart, on {ep}");
    }
    assert_eq!(
        ok(etcdctl(&eps[2], &["get", "k07", "--print-value-only"])),
        "v7\n"
    );
    // Leadership moves on request.
    let leader = c.wait_leader(Duration::from_secs(10));
    let target = (leader + 1) % 3;
    let st = ok(etcdctl(&eps[target], &["endpoint", "status", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&st).unwrap();
    let target_id = format!(
        "{:x}",
        v[0]["Status"]["header"]["member_id"].as_u64().unwrap()
    );
    let out = ok(etcdctl(&eps[leader], &["move-leader", &target_id]));
    assert!(out.contains("Leadership transferred"), "{out}");
    assert_eq!(c.wait_leader(Duration::from_secs(10)), target);
}

#[test]
fn five_members_tolerate_two_failures() {
    let mut c = Cluster::start(5, Flavor::Keelson, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    // Kill the leader and one more member; three of five remain.
    let other = (leader + 1) % 5;
    c.members[leader].kill9();
    c.members[other].kill9();
    let ep = c.endpoints();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if etcdctl(&ep, &["put", "five", "ok", "--command-timeout=3s"])
            .status
            .success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no progress with 3 of 5 members");
    }
    for m in c.members.iter().filter(|m| m.child.is_some()) {
        assert_eq!(
            ok(etcdctl(
                &m.endpoint(),
                &["get", "five", "--print-value-only"]
            )),
            "ok\n"
        );
    }
}

#[test]
fn member_add_catches_up_by_snapshot_and_remove_stops_it() {
    let mut c = Cluster::start(3, Flavor::Keelson, &["--snapshot-count", "50"]);
    let ep0 = c.members[0].endpoint();
    for i in 0..300 {
        ok(etcdctl(&ep0, &["put", &format!("s{i:03}"), "x"]));
    }
    // etcdctl member add, then start the new member with --initial-cluster-state existing.
    let peer = free_port();
    let client = free_port();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let out = ok(etcdctl(
        &ep0,
        &["member", "add", "m3", &format!("--peer-urls={peer_url}")],
    ));
    assert!(
        out.contains("Member") && out.contains("added to cluster"),
        "{out}"
    );
    let ic = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .map(|s| s.trim_end_matches('"').to_owned())
        .expect("etcdctl prints ETCD_INITIAL_CLUSTER");
    let mut m3 = MemberProc {
        name: "m3".into(),
        client_port: client,
        peer_port: peer,
        data_dir: c.dir.path().join("m3"),
        child: None,
        log: c.dir.path().join("m3.log"),
        extra: vec!["--snapshot-count".into(), "50".into()],
        flavor: Flavor::Keelson,
        initial_cluster: ic,
        state: "existing".into(),
        scheme: "http",
        proxy_port: None,
    };
    m3.start();
    c.members.push(m3);
    c.wait_healthy(Duration::from_secs(30));
    let ep3 = c.members[3].endpoint();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&ep3, "s", true) != 300 {
        assert!(
            Instant::now() < deadline,
            "new member did not catch up:\n{}",
            tail(&c.members[3].log_text(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        c.members[3]
            .log_text()
            .contains("applying database snapshot from leader"),
        "the new member caught up by snapshot"
    );
    let list = ok(etcdctl(&ep0, &["member", "list"]));
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(
        list.contains(&format!("m3, {peer_url}, http://127.0.0.1:{client}")),
        "{list}"
    );
    // Writes through the new member work too.
    ok(etcdctl(&ep3, &["put", "from-m3", "y"]));
    assert_eq!(
        ok(etcdctl(&ep0, &["get", "from-m3", "--print-value-only"])),
        "y\n"
    );
    // Remove it: it stops by itself; the cluster goes on with three.
    let id = list
        .lines()
        .find(|l| l.contains(", m3,"))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .to_owned();
    let out = ok(etcdctl(&ep0, &["member", "remove", &id]));
    assert!(out.contains("removed from cluster"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(child) = c.members[3].child.as_mut()
            && child.try_wait().unwrap().is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "removed member kept running");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        c.members[3]
            .log_text()
            .contains("permanently removed from the cluster")
    );
    assert_eq!(ok(etcdctl(&ep0, &["member", "list"])).lines().count(), 3);
    ok(etcdctl(&ep0, &["put", "after-remove", "z"]));
    // Errors in etcd's words.
    assert_eq!(
        err(etcdctl(&ep0, &["member", "remove", &id])),
        "Error: etcdserver: member not found"
    );
    assert_eq!(
        err(etcdctl(
            &ep0,
            &[
                "member",
                "add",
                "dup",
                &format!("--peer-urls={}", c.members[1].peer_url())
            ]
        )),
        "Error: etcdserver: Peer URLs already exists"
    );
}

#[test]
fn learner_add_and_promote() {
    let mut c = Cluster::start(1, Flavor::Keelson, &[]);
    let ep0 = c.members[0].endpoint();
    ok(etcdctl(&ep0, &["put", "l", "1"]));
    let peer = free_port();
    let client = free_port();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let out = ok(etcdctl(
        &ep0,
        &[
            "member",
            "add",
            "l1",
            &format!("--peer-urls={peer_url}"),
            "--learner",
        ],
    ));
    let ic = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .map(|s| s.trim_end_matches('"').to_owned())
        .unwrap();
    let mut l1 = MemberProc {
        name: "l1".into(),
        client_port: client,
        peer_port: peer,
        data_dir: c.dir.path().join("l1"),
        child: None,
        log: c.dir.path().join("l1.log"),
        extra: vec![],
        flavor: Flavor::Keelson,
        initial_cluster: ic,
        state: "existing".into(),
        scheme: "http",
        proxy_port: None,
    };
    l1.start();
    c.members.push(l1);
    let list = ok(etcdctl(&ep0, &["member", "list"]));
    assert!(list.contains("true"), "is learner: {list}");
    let id = list
        .lines()
        .find(|l| l.contains(&peer_url))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = etcdctl(&ep0, &["member", "promote", &id]);
        if o.status.success() {
            assert!(text(&o).contains("promoted"), "{}", text(&o));
            break;
        }
        assert!(Instant::now() < deadline, "promote: {}", text(&o));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        err(etcdctl(&ep0, &["member", "promote", &id])),
        "Error: etcdserver: can only promote a learner member"
    );
    c.wait_healthy(Duration::from_secs(20));
    assert_eq!(
        ok(etcdctl(
            &c.members[1].endpoint(),
            &["get", "l", "--print-value-only"]
        )),
        "1\n"
    );
}

#[test]
fn existing_member_not_added_first_is_refused() {
    let c = Cluster::start(1, Flavor::Keelson, &[]);
    let mut stray = MemberProc {
        name: "stray".into(),
        client_port: free_port(),
        peer_port: free_port(),
        data_dir: c.dir.path().join("stray"),
        child: None,
        log: c.dir.path().join("stray.log"),
        extra: vec![],
        flavor: Flavor::Keelson,
        initial_cluster: String::new(),
        state: "existing".into(),
        scheme: "http",
        proxy_port: None,
    };
    stray.initial_cluster = format!("m0={},stray={}", c.members[0].peer_url(), stray.peer_url());
    stray.start();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(ch) = stray.child.as_mut()
            && let Some(st) = ch.try_wait().unwrap()
        {
            assert!(!st.success());
            break;
        }
        assert!(Instant::now() < deadline, "stray member kept running");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stray.log_text().contains("is not in the cluster"),
        "{}",
        stray.log_text()
    );
    let _ = RangeRequest::default();
}

/// etcd without lease checkpointing: a new leader gives every lease its full TTL again
/// (plus the election timeout), so a lease never expires early because leadership
/// moved, and it still expires once keep-alives stop.
#[test]
fn leases_survive_a_leader_change() {
    let mut c = Cluster::start(3, Flavor::Keelson, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let other = (leader + 1) % 3;
    let ep = c.members[other].endpoint();
    let grant = ok(etcdctl(&ep, &["lease", "grant", "6"]));
    let id = grant.split_whitespace().nth(1).unwrap().to_owned();
    ok(etcdctl(
        &ep,
        &["put", "leased", "v", &format!("--lease={id}")],
    ));
    std::thread::sleep(Duration::from_secs(3));
    c.members[leader].kill9();
    let started = Instant::now();
    // A new leader is elected; 3 s into the lease's 6 s TTL it is reset to 6 s + 1 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if etcdctl(&ep, &["put", "probe", "x", "--command-timeout=2s"])
            .status
            .success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no new leader");
    }
    std::thread::sleep(Duration::from_secs(4).saturating_sub(started.elapsed()));
    assert_eq!(
        ok(etcdctl(&ep, &["get", "leased", "--print-value-only"])),
        "v\n",
        "the lease outlived its original deadline because leadership moved"
    );
    let ttl = ok(etcdctl(&ep, &["lease", "timetolive", &id]));
    assert!(ttl.contains("granted with TTL(6s)"), "{ttl}");
    // Without keep-alives it expires under the new leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(etcdctl(&ep, &["get", "leased"])).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the lease never expired under the new leader"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn no_quorum_answers_no_leader_and_writes_nothing() {
    let mut c = Cluster::start(3, Flavor::Keelson, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let survivor = (leader + 1) % 3;
    for i in 0..3 {
        if i != survivor {
            c.members[i].kill9();
        }
    }
    let ep = c.members[survivor].endpoint();
    // Once the survivor notices it has no leader, writes fail in etcd's words.
    let deadline = Instant::now() + Duration::from_secs(20);
    let msg = loop {
        let o = etcdctl(&ep, &["put", "orphan", "x", "--command-timeout=10s"]);
        assert!(!o.status.success(), "a write succeeded without quorum");
        let e = err(o);
        if e == "Error: etcdserver: no leader" || Instant::now() > deadline {
            break e;
        }
    };
    assert_eq!(msg, "Error: etcdserver: no leader");
    // Serializable reads still answer from the local state.
    assert_eq!(ok(etcdctl(&ep, &["get", "orphan", "--consistency=s"])), "");
}

#[test]
fn lagging_follower_catches_up_by_snapshot() {
    let mut c = Cluster::start(3, Flavor::Keelson, &["--snapshot-count", "20"]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let lagger = (leader + 1) % 3;
    c.members[lagger].kill9();
    let ep = c.members[leader].endpoint();
    for i in 0..200 {
        ok(etcdctl(&ep, &["put", &format!("lag{i:03}"), "v"]));
    }
    c.members[lagger].start();
    c.wait_healthy(Duration::from_secs(30));
    let lep = c.members[lagger].endpoint();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&lep, "lag", true) != 200 {
        assert!(Instant::now() < deadline, "the follower did not catch up");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        c.members[lagger]
            .log_text()
            .contains("applying database snapshot from leader"),
        "the follower caught up by snapshot, not by replaying a log the leader compacted"
    );
}

/// Crash safety of the sled engine (the non-default one): kill -9 every member under
/// load, restart, and find every acknowledged write. redb is covered by the tests above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_engine_keeps_acknowledged_writes_across_kill9() {
    let mut c = tokio::task::spawn_blocking(|| {
        Cluster::start(3, Flavor::Keelson, &["--backend-engine", "sled"])
    })
    .await
    .unwrap();
    let endpoints: Vec<String> = c.members.iter().map(MemberProc::endpoint).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(write_load(endpoints, "sled/", stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for m in &mut c.members {
        m.kill9();
    }
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    assert!(acked.len() > 10, "the load made progress: {}", acked.len());
    tokio::task::spawn_blocking(move || {
        for m in &mut c.members {
            m.start();
        }
        c.wait_healthy(Duration::from_secs(30));
        for m in &c.members {
            assert!(m.log_text().contains("engine=\"sled\""), "ran on sled");
        }
        assert_no_acked_lost(&c, "sled/", &acked);
    })
    .await
    .unwrap();
}
