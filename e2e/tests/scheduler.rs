//! kube-scheduler end to end: a real kube-apiserver, the scheduler as a process,
//! Node objects made by the test (capacity, labels, taints), and the real kubectl
//! reading where pods land and why others cannot.

use std::time::{Duration, Instant};

use e2e::{ApiServer, Component, have_kubectl};

const K: &str = "kubectl.1.33";

const FAST: [&str; 3] = [
    "--leader-elect-lease-duration=3s",
    "--leader-elect-renew-deadline=2s",
    "--leader-elect-retry-period=500ms",
];

/// A Node with `cpu` and `memory` allocatable, labels and taints.
fn node(s: &ApiServer, name: &str, cpu: &str, labels: &str, taints: &str) {
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  taints: [{taints}]\n"
        )),
    );
    let status = format!(
        r#"{{"status":{{"capacity":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"allocatable":{{"cpu":"{cpu}","memory":"8Gi","pods":"110"}},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"test node"}}]}}}}"#
    );
    s.ok(
        K,
        &[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ],
    );
    // Admission (TaintNodesByCondition) creates nodes not-ready; the node lifecycle
    // controller lifts the taint once the node reports Ready. It does not exist yet,
    // so the test lifts it, as that controller would.
    s.ok(
        K,
        &[
            "taint",
            "node",
            name,
            "node.kubernetes.io/not-ready:NoSchedule-",
        ],
    );
}

/// A pod requesting `cpu`, with extra spec lines.
fn pod(s: &ApiServer, name: &str, cpu: &str, extra: &str) {
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n{extra}  containers:\n  - name: c\n    image: busybox\n    resources:\n      requests:\n        cpu: {cpu}\n"
        )),
    );
}

/// Waits until `jsonpath` of pod `name` is non-empty; returns it. Panics with the
/// scheduler's log after `timeout`.
fn wait_field(
    s: &ApiServer,
    sched: &Component,
    name: &str,
    jsonpath: &str,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = s.ok(
            K,
            &["get", "pod", name, "-o", &format!("jsonpath={jsonpath}")],
        );
        if !out.trim().is_empty() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name}: {jsonpath} still empty; scheduler log:\n{}",
            sched.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn node_of(s: &ApiServer, sched: &Component, name: &str) -> String {
    wait_field(s, sched, name, "{.spec.nodeName}", Duration::from_secs(30))
}

#[test]
fn pods_land_where_they_fit_and_unschedulable_pods_say_why() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let sched = Component::scheduler(&s, "scheduler", &["--leader-elect=false"]);
    sched.wait_log("caches populated", Duration::from_secs(60));

    // No nodes at all: upstream's words.
    pod(&s, "early", "100m", "");
    let msg = wait_field(
        &s,
        &sched,
        "early",
        "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        Duration::from_secs(30),
    );
    assert_eq!(msg, "no nodes available to schedule pods");

    node(&s, "n1", "2", "zone: a", "");
    node(&s, "n2", "1", "zone: b", "");
    node(
        &s,
        "cp",
        "8",
        "node-role.kubernetes.io/control-plane: \"\"",
        "{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}",
    );
    // The early pod is retried once nodes are added.
    assert!(["n1", "n2"].contains(&node_of(&s, &sched, "early").as_str()));

    // Only n1 has room for 1500m; the tainted node is not a candidate.
    s.ok(K, &["delete", "pod", "early", "--wait=false"]);
    pod(&s, "big", "1500m", "");
    assert_eq!(node_of(&s, &sched, "big"), "n1");
    // nodeSelector and node affinity.
    pod(&s, "zoned", "100m", "  nodeSelector: {zone: b}\n");
    assert_eq!(node_of(&s, &sched, "zoned"), "n2");
    // A toleration admits the control-plane node; nodeName-style affinity pins it.
    pod(
        &s,
        "tolerant",
        "100m",
        "  tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]\n  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchFields: [{key: metadata.name, operator: In, values: [cp]}]}]}}}\n",
    );
    assert_eq!(node_of(&s, &sched, "tolerant"), "cp");

    // Too big for any untainted node: upstream's message, condition and event.
    pod(&s, "huge", "3", "");
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let msg = wait_field(
        &s,
        &sched,
        "huge",
        "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        Duration::from_secs(30),
    );
    assert_eq!(msg, want);
    let reason = s.ok(
        K,
        &[
            "get",
            "pod",
            "huge",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}",
        ],
    );
    assert_eq!(reason, "Unschedulable");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = s.ok(K, &["describe", "pod", "huge"]);
        if d.contains("FailedScheduling") && d.contains(want) && d.contains("default-scheduler") {
            break;
        }
        assert!(Instant::now() < deadline, "no FailedScheduling event:\n{d}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A node that fits is added: the pod is retried on the event and bound there.
    node(&s, "n3", "4", "zone: c", "");
    assert_eq!(node_of(&s, &sched, "huge"), "n3");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = s.ok(K, &["describe", "pod", "big"]);
        if d.contains("Scheduled") && d.contains("Successfully assigned default/big to n1") {
            break;
        }
        assert!(Instant::now() < deadline, "no Scheduled event:\n{d}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Pods for another scheduler are left alone.
    pod(&s, "other", "100m", "  schedulerName: someone-else\n");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        s.ok(
            K,
            &["get", "pod", "other", "-o", "jsonpath={.spec.nodeName}"]
        ),
        ""
    );

    // Metrics and health on the secure port.
    // Delegated authentication and authorization: health is open, metrics are not.
    let (code, body) = e2e::https_get(sched.port, "/metrics", &[]);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(
            r#""message":"forbidden: User \"system:anonymous\" cannot get path \"/metrics\"""#
        ),
        "{body}"
    );
    let (code, _) = e2e::https_get(sched.port, "/metrics", &[("Authorization", "Bearer wrong")]);
    assert_eq!(code, 401);
    let auth = format!("Bearer {}", e2e::ADMIN_TOKEN);
    let (code, metrics) = e2e::https_get(sched.port, "/metrics", &[("Authorization", &auth)]);
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_pending_pods{queue=\"unschedulable\"}"),
        "{metrics}"
    );
    let (code, body) = e2e::https_get(sched.port, "/healthz", &[]);
    assert_eq!((code, body.as_str()), (200, "ok"));
}

#[test]
fn a_higher_priority_pod_preempts_a_lower_one() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let sched = Component::scheduler(&s, "scheduler", &["--leader-elect=false"]);
    node(&s, "n1", "2", "zone: a", "");
    for (name, value) in [("low", 100), ("high", 1000)] {
        s.ok(
            K,
            &["create", "priorityclass", name, &format!("--value={value}")],
        );
    }
    pod(&s, "victim", "1500m", "  priorityClassName: low\n");
    assert_eq!(node_of(&s, &sched, "victim"), "n1");
    pod(&s, "vip", "1", "  priorityClassName: high\n");
    // The victim is marked and deleted gracefully; the preemptor is nominated.
    let reason = wait_field(
        &s,
        &sched,
        "victim",
        "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}",
        Duration::from_secs(30),
    );
    assert_eq!(reason, "PreemptionByScheduler");
    assert_eq!(
        wait_field(
            &s,
            &sched,
            "vip",
            "{.status.nominatedNodeName}",
            Duration::from_secs(30)
        ),
        "n1"
    );
    // No kubelet runs the victim: finish its graceful deletion as one would.
    s.ok(
        K,
        &["delete", "pod", "victim", "--force", "--grace-period=0"],
    );
    assert_eq!(node_of(&s, &sched, "vip"), "n1");
    let events = s.ok(
        K,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=Preempted",
            "-o",
            "jsonpath={.items[*].message}",
        ],
    );
    assert!(events.starts_with("Preempted by pod "), "{events}");
    assert!(events.ends_with(" on node n1"), "{events}");
    // A pod that may not preempt says so. Its policy comes from its class: naming
    // another in the pod is refused by the Priority admission plugin, as upstream's.
    let refused = s.fails(
        K,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata:\n  name: rude\nspec:\n  priorityClassName: high\n  preemptionPolicy: Never\n  containers:\n  - name: c\n    image: busybox\n"),
    );
    assert!(
        refused.contains("the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name"),
        "{refused}"
    );
    s.ok(
        K,
        &[
            "create",
            "priorityclass",
            "polite",
            "--value=1000",
            "--preemption-policy=Never",
        ],
    );
    pod(&s, "polite", "2", "  priorityClassName: polite\n");
    let msg = wait_field(
        &s,
        &sched,
        "polite",
        "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        Duration::from_secs(30),
    );
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
}

#[test]
fn two_profiles_in_one_scheduler() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    // The default profile spreads (LeastAllocated); "packer" packs (MostAllocated).
    let config = s.write(
        "profiles.yaml",
        &format!(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: {}\nleaderElection:\n  leaderElect: false\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  plugins:\n    score:\n      disabled:\n      - name: NodeResourcesBalancedAllocation\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: MostAllocated\n",
            s.kubeconfig().display()
        ),
    );
    let sched = Component::scheduler(&s, "scheduler", &["--config", &config]);
    sched.wait_log("caches populated", Duration::from_secs(60));
    node(&s, "big", "8", "zone: a", "");
    node(&s, "small", "2", "zone: b", "");
    pod(&s, "seed", "1", "  nodeName: small\n");
    // Packing prefers the fuller node; spreading the emptier one.
    pod(&s, "packed", "500m", "  schedulerName: packer\n");
    assert_eq!(node_of(&s, &sched, "packed"), "small");
    pod(&s, "spread", "500m", "");
    assert_eq!(node_of(&s, &sched, "spread"), "big");
    // Each profile reports as itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = s.ok(K, &["describe", "pod", "packed"]);
        if d.contains("packer") && d.contains("Successfully assigned default/packed to small") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Scheduled event from packer:\n{d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn topology_spread_over_zones_and_anti_affinity() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let sched = Component::scheduler(&s, "scheduler", &["--leader-elect=false"]);
    for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")] {
        node(
            &s,
            name,
            "8",
            &format!("topology.kubernetes.io/zone: {zone}, kubernetes.io/hostname: {name}"),
            "",
        );
    }
    // Six pods spread over three zones with maxSkew 1: two per zone, whatever the
    // zones' node counts.
    let spread = "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: topology.kubernetes.io/zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector: {matchLabels: {group: spread}}\n";
    let mut zones = std::collections::BTreeMap::new();
    for i in 0..6 {
        let name = format!("spread-{i}");
        s.ok_stdin(
            K,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{group: spread}}\nspec:\n{spread}  containers:\n  - name: c\n    image: busybox\n"
            )),
        );
        let n = node_of(&s, &sched, &name);
        *zones.entry(n.chars().next().unwrap_or('?')).or_insert(0) += 1;
    }
    assert_eq!(
        zones.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{zones:?}"
    );

    // Required anti-affinity on the hostname: one pod per node, the fifth waits with
    // upstream's reason.
    let anti = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: kubernetes.io/hostname\n        labelSelector: {matchLabels: {group: solo}}\n";
    let mut hosts = std::collections::BTreeSet::new();
    for i in 0..5 {
        let name = format!("solo-{i}");
        s.ok_stdin(
            K,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{group: solo}}\nspec:\n{anti}  containers:\n  - name: c\n    image: busybox\n"
            )),
        );
        if i < 4 {
            assert!(
                hosts.insert(node_of(&s, &sched, &name)),
                "two solo pods on one node"
            );
        }
    }
    let msg = wait_field(
        &s,
        &sched,
        "solo-4",
        "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        Duration::from_secs(30),
    );
    assert!(
        msg.starts_with("0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules."),
        "{msg}"
    );
}

#[test]
fn the_standby_takes_over_when_the_leader_dies() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    node(&s, "n1", "4", "zone: a", "");
    let mut a = Component::scheduler(&s, "sched-a", &FAST);
    a.wait_log("successfully acquired lease", Duration::from_secs(60));
    let b = Component::scheduler(&s, "sched-b", &FAST);
    b.wait_log(
        "attempting to acquire leader lease",
        Duration::from_secs(60),
    );
    pod(&s, "first", "100m", "");
    assert_eq!(node_of(&s, &a, "first"), "n1");
    let holder = s.ok(
        K,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    assert!(!holder.is_empty());
    a.kill();
    b.wait_log("successfully acquired lease", Duration::from_secs(30));
    pod(&s, "second", "100m", "");
    assert_eq!(node_of(&s, &b, "second"), "n1");
    let now = s.ok(
        K,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    assert_ne!(now, holder, "the standby holds the lease");
}

#[test]
fn a_bad_config_fails_at_start_in_upstreams_words() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    // The client comes from the file's clientConnection, as upstream's --config.
    let client = format!(
        "clientConnection:\n  kubeconfig: {}\n",
        s.kubeconfig().display()
    );
    for (text, want) in [
        (
            "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n"
                .to_owned(),
            "no kind \"KubeSchedulerConfiguration\" is registered for version \"kubescheduler.config.k8s.io/v1beta3\" in scheme \"pkg/scheduler/apis/config/scheme/scheme.go:29\"",
        ),
        (
            format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n{client}profiles:\n- schedulerName: default-scheduler\n  plugins:\n    multiPoint:\n      enabled:\n      - name: NoSuchPlugin\n"
            ),
            "initializing profiles: creating profile for scheduler name default-scheduler: PreFilterPlugin \"NoSuchPlugin\" does not exist",
        ),
        (
            format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n{client}percentageOfNodesToScore: 200\n"
            ),
            "percentageOfNodesToScore: Invalid value: 200: not in valid range [0-100]",
        ),
    ] {
        let path = s.write("sched-config.yaml", &text);
        let out = std::process::Command::new(e2e::binary("kube-scheduler"))
            .args([
                "--config",
                &path,
                "--kubeconfig",
                &s.kubeconfig().display().to_string(),
            ])
            .output()
            .expect("run kube-scheduler");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
}

/// `kubectl wait` for `jsonpath` of `what` to equal `value` (a watch, not a poll).
fn wait_for(s: &ApiServer, sched: &Component, what: &str, jsonpath: &str, value: &str) {
    let out = s.kubectl(
        K,
        &[
            "wait",
            what,
            &format!("--for=jsonpath={jsonpath}={value}"),
            "--timeout=30s",
        ],
    );
    assert!(
        out.status.success(),
        "{what}: {jsonpath} never became {value}: {}\nscheduler log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sched.log()
    );
}

/// A claim of `class` for 1Gi.
fn claim(s: &ApiServer, name: &str, class: &str) {
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  storageClassName: {class}\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n"
        )),
    );
}

/// Completes the binding of claim `name` to `pv`, as the PV controller does.
fn complete_binding(s: &ApiServer, name: &str, pv: &str) {
    let patch = format!(
        r#"{{"metadata":{{"annotations":{{"pv.kubernetes.io/bind-completed":"yes"}}}},"spec":{{"volumeName":"{pv}"}}}}"#
    );
    s.ok(K, &["patch", "pvc", name, "--type=merge", "-p", &patch]);
    let status = r#"{"status":{"phase":"Bound"}}"#;
    s.ok(
        K,
        &[
            "patch",
            "pvc",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );
}

#[test]
fn volumes_steer_pods_and_are_bound_before_them() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let sched = Component::scheduler(&s, "scheduler", &["--leader-elect=false"]);
    sched.wait_log("caches populated", Duration::from_secs(60));
    node(
        &s,
        "node-a",
        "2",
        "kubernetes.io/hostname: node-a, zone: a",
        "",
    );
    node(
        &s,
        "node-b",
        "2",
        "kubernetes.io/hostname: node-b, zone: b",
        "",
    );
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: local\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: fast\nprovisioner: example.com/fake\nvolumeBindingMode: WaitForFirstConsumer\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: local-a\nspec:\n  capacity: {storage: 5Gi}\n  accessModes: [ReadWriteOnce]\n  storageClassName: local\n  local: {path: /mnt/disks/a}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - {key: kubernetes.io/hostname, operator: In, values: [node-a]}\n",
        ),
    );
    // The PV controller (not built yet) makes new volumes Available; the test does.
    s.ok(
        K,
        &[
            "patch",
            "pv",
            "local-a",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Available"}}"#,
        ],
    );

    // Static binding: the only fitting volume is on node-a. The scheduler binds
    // the volume to the claim, then waits for the binding to complete before it
    // binds the pod.
    claim(&s, "data-local", "local");
    pod(
        &s,
        "local-user",
        "100m",
        "  volumes: [{name: d, persistentVolumeClaim: {claimName: data-local}}]\n",
    );
    wait_for(
        &s,
        &sched,
        "pv/local-a",
        "{.spec.claimRef.name}",
        "data-local",
    );
    let pv = s.ok(
        K,
        &[
            "get",
            "pv",
            "local-a",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
    );
    assert!(
        pv.contains(r#""pv.kubernetes.io/bound-by-controller":"yes""#),
        "{pv}"
    );
    assert_eq!(
        s.ok(
            K,
            &[
                "get",
                "pod",
                "local-user",
                "-o",
                "jsonpath={.spec.nodeName}"
            ]
        ),
        "",
        "the pod waits for its volume"
    );
    complete_binding(&s, "data-local", "local-a");
    assert_eq!(node_of(&s, &sched, "local-user"), "node-a");

    // No volume left and no provisioner: upstream's message.
    claim(&s, "orphan", "local");
    pod(
        &s,
        "stuck",
        "100m",
        "  volumes: [{name: d, persistentVolumeClaim: {claimName: orphan}}]\n",
    );
    let msg = wait_field(
        &s,
        &sched,
        "stuck",
        "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        Duration::from_secs(30),
    );
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );

    // A missing claim: unschedulable until it is created; then dynamic
    // provisioning on the node the pod's selector allows.
    pod(
        &s,
        "fast-user",
        "100m",
        "  nodeSelector: {zone: b}\n  volumes: [{name: d, persistentVolumeClaim: {claimName: data-fast}}]\n",
    );
    let msg = wait_field(
        &s,
        &sched,
        "fast-user",
        "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        Duration::from_secs(30),
    );
    assert_eq!(
        msg,
        "0/2 nodes are available: persistentvolumeclaim \"data-fast\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    claim(&s, "data-fast", "fast");
    wait_for(
        &s,
        &sched,
        "pvc/data-fast",
        "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}",
        "node-b",
    );
    // As the external provisioner: a volume on the selected node, bound.
    let uid = s.ok(
        K,
        &["get", "pvc", "data-fast", "-o", "jsonpath={.metadata.uid}"],
    );
    s.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: pvc-fast\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: fast\n  claimRef: {{namespace: default, name: data-fast, uid: {uid}}}\n  csi: {{driver: example.com/fake, volumeHandle: vol-1}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - {{key: kubernetes.io/hostname, operator: In, values: [node-b]}}\n"
        )),
    );
    complete_binding(&s, "data-fast", "pvc-fast");
    assert_eq!(node_of(&s, &sched, "fast-user"), "node-b");
}
