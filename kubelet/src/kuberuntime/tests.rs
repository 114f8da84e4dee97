//! Kuberuntime tests: the pod → CRI configs, the sync actions (upstream's
//! `computePodActions`), resources, and the restart back-off.

use std::time::Instant;

use serde_json::{Value, json};

use super::*;
use crate::cri::state::{CREATED, EXITED, RUNNING, SANDBOX_READY, UNKNOWN};

const NOT_READY: i32 = v1::PodSandboxState::SandboxNotready as i32;

fn pod(spec: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "prod", "uid": "uid-1"},
        "spec": spec,
    }))
    .unwrap()
}

fn containers(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "image": format!("img-{n}")}))
            .collect(),
    )
}

fn sandbox(state: i32, attempt: u32, ip: &str) -> v1::PodSandboxStatus {
    v1::PodSandboxStatus {
        id: format!("sb-{attempt}"),
        metadata: Some(v1::PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "prod".into(),
            attempt,
        }),
        state,
        created_at: i64::from(attempt) + 1,
        network: Some(v1::PodSandboxNetworkStatus {
            ip: ip.into(),
            additional_ips: vec![],
        }),
        ..Default::default()
    }
}

fn ready_sandbox() -> v1::PodSandboxStatus {
    sandbox(SANDBOX_READY, 0, "10.244.0.7")
}

/// A runtime instance of container `name` of `pod` (its spec hash annotated, as
/// the kubelet creates it), created at `created`.
fn ctr(pod: &Pod, name: &str, state: i32, exit_code: i32, created: i64) -> v1::ContainerStatus {
    let spec = pod.spec.as_ref().unwrap();
    let c = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap();
    v1::ContainerStatus {
        id: format!("{name}-{created}"),
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        state,
        exit_code,
        created_at: created,
        annotations: HashMap::from([(labels::CONTAINER_HASH.to_owned(), container_hash(c))]),
        ..Default::default()
    }
}

/// The runtime's view, newest first as [`RuntimePod::read`] sorts it.
fn runtime(
    sandboxes: Vec<v1::PodSandboxStatus>,
    mut containers: Vec<v1::ContainerStatus>,
) -> RuntimePod {
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    RuntimePod {
        sandboxes,
        containers,
    }
}

fn app(index: usize) -> Start {
    Start { init: false, index }
}

fn init(index: usize) -> Start {
    Start { init: true, index }
}

#[test]
fn a_new_pod_gets_a_sandbox_and_all_its_containers() {
    let p = pod(json!({"containers": containers(&["a", "b"])}));
    assert_eq!(
        compute_actions(&p, &RuntimePod::default()),
        Actions {
            create_sandbox: Some(0),
            start: vec![app(0), app(1)],
            ..Default::default()
        }
    );
}

#[test]
fn a_new_pod_with_init_containers_starts_only_the_first_one() {
    let p = pod(json!({
        "initContainers": containers(&["init0", "init1"]),
        "containers": containers(&["a"]),
    }));
    assert_eq!(
        compute_actions(&p, &RuntimePod::default()),
        Actions {
            create_sandbox: Some(0),
            start: vec![init(0)],
            ..Default::default()
        }
    );
}

#[test]
fn a_sandbox_that_is_not_ready_is_replaced_with_the_next_attempt() {
    let p = pod(json!({"containers": containers(&["a"])}));
    let rt = runtime(
        vec![sandbox(NOT_READY, 2, "10.244.0.7")],
        vec![ctr(&p, "a", EXITED, 137, 10)],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            kill_pod: true,
            create_sandbox: Some(3),
            start: vec![app(0)],
            ..Default::default()
        }
    );
    // A ready sandbox without an IP is as good as dead, but not for host-network pods.
    let rt = runtime(vec![sandbox(SANDBOX_READY, 0, "")], vec![]);
    assert_eq!(compute_actions(&p, &rt).create_sandbox, Some(1));
    let host = pod(json!({"hostNetwork": true, "containers": containers(&["a"])}));
    assert_eq!(
        compute_actions(&host, &rt),
        Actions {
            start: vec![app(0)],
            ..Default::default()
        }
    );
}

#[test]
fn restart_policy_never_keeps_a_dead_sandbox_once_its_containers_ran() {
    let p = pod(json!({"restartPolicy": "Never", "containers": containers(&["a", "b"])}));
    let rt = runtime(
        vec![sandbox(NOT_READY, 0, "10.244.0.7")],
        vec![ctr(&p, "a", EXITED, 0, 10), ctr(&p, "b", EXITED, 1, 11)],
    );
    assert_eq!(compute_actions(&p, &rt), Actions::default());
    // A container still running in the dead sandbox is killed, with nothing after.
    let rt = runtime(
        vec![sandbox(NOT_READY, 0, "10.244.0.7")],
        vec![ctr(&p, "a", RUNNING, 0, 10), ctr(&p, "b", EXITED, 1, 11)],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            kill_pod: true,
            ..Default::default()
        }
    );
    // No container was ever created: the sandbox is tried again.
    let rt = runtime(vec![sandbox(NOT_READY, 0, "10.244.0.7")], vec![]);
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            kill_pod: true,
            create_sandbox: Some(1),
            start: vec![app(0), app(1)],
            ..Default::default()
        }
    );
}

#[test]
fn restart_policy_on_failure_recreates_the_sandbox_only_for_the_failed_containers() {
    let p = pod(json!({"restartPolicy": "OnFailure", "containers": containers(&["a", "b"])}));
    let rt = runtime(
        vec![sandbox(NOT_READY, 0, "10.244.0.7")],
        vec![ctr(&p, "a", EXITED, 0, 10), ctr(&p, "b", EXITED, 2, 11)],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            kill_pod: true,
            create_sandbox: Some(1),
            start: vec![app(1)],
            ..Default::default()
        }
    );
    // All succeeded: nothing to run, no new sandbox.
    let rt = runtime(
        vec![sandbox(NOT_READY, 0, "10.244.0.7")],
        vec![ctr(&p, "a", EXITED, 0, 10), ctr(&p, "b", EXITED, 0, 11)],
    );
    assert_eq!(compute_actions(&p, &rt), Actions::default());
}

#[test]
fn init_containers_run_one_at_a_time_in_order() {
    struct Case {
        name: &'static str,
        policy: &'static str,
        runtime: Vec<(&'static str, i32, i32)>,
        want: Actions,
    }
    let cases = [
        Case {
            name: "init0 succeeded, init1 never ran",
            policy: "Always",
            runtime: vec![("init0", EXITED, 0)],
            want: Actions {
                start: vec![init(1)],
                ..Default::default()
            },
        },
        Case {
            name: "init0 running",
            policy: "Always",
            runtime: vec![("init0", RUNNING, 0)],
            want: Actions::default(),
        },
        Case {
            name: "init0 failed, restartPolicy Never",
            policy: "Never",
            runtime: vec![("init0", EXITED, 1)],
            want: Actions {
                kill_pod: true,
                init_failed: true,
                ..Default::default()
            },
        },
        Case {
            name: "init0 failed, restartPolicy OnFailure",
            policy: "OnFailure",
            runtime: vec![("init0", EXITED, 1)],
            want: Actions {
                start: vec![init(0)],
                ..Default::default()
            },
        },
        Case {
            name: "init0 failed, restartPolicy Always",
            policy: "Always",
            runtime: vec![("init0", EXITED, 1)],
            want: Actions {
                start: vec![init(0)],
                ..Default::default()
            },
        },
        Case {
            name: "init1 created but never started",
            policy: "Always",
            runtime: vec![("init0", EXITED, 0), ("init1", CREATED, 0)],
            want: Actions {
                start: vec![init(1)],
                ..Default::default()
            },
        },
        Case {
            name: "all init containers succeeded",
            policy: "Always",
            runtime: vec![("init0", EXITED, 0), ("init1", EXITED, 0)],
            want: Actions {
                start: vec![app(0)],
                ..Default::default()
            },
        },
        Case {
            name: "the runtime lost init0; init1 succeeded",
            policy: "Always",
            runtime: vec![("init1", EXITED, 0)],
            want: Actions {
                start: vec![app(0)],
                ..Default::default()
            },
        },
        Case {
            name: "the app runs; the init containers are gone from the runtime",
            policy: "Always",
            runtime: vec![("a", RUNNING, 0)],
            want: Actions::default(),
        },
        Case {
            name: "init0 in an unknown state, restartPolicy Never",
            policy: "Never",
            runtime: vec![("init0", UNKNOWN, 0)],
            want: Actions {
                kill_pod: true,
                init_failed: true,
                ..Default::default()
            },
        },
    ];
    for case in cases {
        let p = pod(json!({
            "restartPolicy": case.policy,
            "initContainers": containers(&["init0", "init1"]),
            "containers": containers(&["a"]),
        }));
        let statuses = case
            .runtime
            .iter()
            .enumerate()
            .map(|(i, (n, s, code))| ctr(&p, n, *s, *code, 10 + i as i64))
            .collect();
        let rt = runtime(vec![ready_sandbox()], statuses);
        assert_eq!(compute_actions(&p, &rt), case.want, "{}", case.name);
    }
}

#[test]
fn an_init_container_in_an_unknown_state_is_killed_and_started_again() {
    let p = pod(json!({
        "initContainers": containers(&["init0"]),
        "containers": containers(&["a"]),
    }));
    let rt = runtime(
        vec![ready_sandbox()],
        vec![ctr(&p, "init0", UNKNOWN, 0, 10)],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            start: vec![init(0)],
            kill: vec![(
                "init0-10".into(),
                "init0".into(),
                "Init container is in \"unknown\" state, try killing it before restart".into()
            )],
            ..Default::default()
        }
    );
}

fn sidecar_pod(policy: &str) -> Pod {
    pod(json!({
        "restartPolicy": policy,
        "initContainers": [
            {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},
            {"name": "migrate", "image": "tool"},
        ],
        "containers": containers(&["a"]),
    }))
}

#[test]
fn a_sidecar_starts_before_the_next_init_container_and_keeps_running() {
    let p = sidecar_pod("Always");
    // The sidecar runs: the next init container starts.
    let rt = runtime(
        vec![ready_sandbox()],
        vec![ctr(&p, "proxy", RUNNING, 0, 10)],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            start: vec![init(1)],
            ..Default::default()
        }
    );
    // The sidecar exited before initialization finished: it starts again first.
    let rt = runtime(vec![ready_sandbox()], vec![ctr(&p, "proxy", EXITED, 1, 10)]);
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            start: vec![init(0)],
            ..Default::default()
        }
    );
    // Initialized: the app starts beside the running sidecar.
    let rt = runtime(
        vec![ready_sandbox()],
        vec![
            ctr(&p, "proxy", RUNNING, 0, 10),
            ctr(&p, "migrate", EXITED, 0, 11),
        ],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            start: vec![app(0)],
            ..Default::default()
        }
    );
    // The sidecar exited after initialization: it is restarted, the app kept.
    let rt = runtime(
        vec![ready_sandbox()],
        vec![
            ctr(&p, "proxy", EXITED, 0, 10),
            ctr(&p, "migrate", EXITED, 0, 11),
            ctr(&p, "a", RUNNING, 0, 12),
        ],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            start: vec![init(0)],
            ..Default::default()
        }
    );
    // Its record is gone from the runtime: it is started again too.
    let rt = runtime(vec![ready_sandbox()], vec![ctr(&p, "a", RUNNING, 0, 12)]);
    assert_eq!(compute_actions(&p, &rt).start, vec![init(0)]);
}

#[test]
fn a_pod_with_nothing_left_to_run_is_stopped_sidecars_included() {
    // restartPolicy Never: the app exited; the running sidecar is not kept alive.
    let p = sidecar_pod("Never");
    let rt = runtime(
        vec![ready_sandbox()],
        vec![
            ctr(&p, "proxy", RUNNING, 0, 10),
            ctr(&p, "migrate", EXITED, 0, 11),
            ctr(&p, "a", EXITED, 0, 12),
        ],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            kill_pod: true,
            ..Default::default()
        }
    );
    // Nor restarted when it exited too.
    let rt = runtime(
        vec![ready_sandbox()],
        vec![
            ctr(&p, "proxy", EXITED, 137, 10),
            ctr(&p, "migrate", EXITED, 0, 11),
            ctr(&p, "a", EXITED, 1, 12),
        ],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            kill_pod: true,
            ..Default::default()
        }
    );
}

#[test]
fn app_containers_restart_by_the_pod_restart_policy() {
    // (policy, state, exit code, started again)
    let cases = [
        ("Always", EXITED, 0, true),
        ("Always", EXITED, 1, true),
        ("OnFailure", EXITED, 0, false),
        ("OnFailure", EXITED, 1, true),
        ("Never", EXITED, 0, false),
        ("Never", EXITED, 1, false),
        ("Never", CREATED, 0, true),
        ("Always", RUNNING, 0, false),
    ];
    for (policy, state, code, restarted) in cases {
        let p = pod(json!({"restartPolicy": policy, "containers": containers(&["a", "b"])}));
        let rt = runtime(
            vec![ready_sandbox()],
            vec![ctr(&p, "a", RUNNING, 0, 10), ctr(&p, "b", state, code, 11)],
        );
        let want = Actions {
            start: if restarted { vec![app(1)] } else { vec![] },
            ..Default::default()
        };
        assert_eq!(
            compute_actions(&p, &rt),
            want,
            "{policy} {state} exit {code}"
        );
    }
    // No policy means Always.
    let p = pod(json!({"containers": containers(&["a"])}));
    let rt = runtime(vec![ready_sandbox()], vec![ctr(&p, "a", EXITED, 0, 10)]);
    assert_eq!(compute_actions(&p, &rt).start, vec![app(0)]);
}

#[test]
fn a_container_in_an_unknown_state_is_killed_and_started_again() {
    let p = pod(json!({"restartPolicy": "Never", "containers": containers(&["a"])}));
    let rt = runtime(vec![ready_sandbox()], vec![ctr(&p, "a", UNKNOWN, 0, 10)]);
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            start: vec![app(0)],
            kill: vec![(
                "a-10".into(),
                "a".into(),
                "Container is in \"unknown\" state, try killing it before restart".into()
            )],
            ..Default::default()
        }
    );
}

#[test]
fn a_running_container_whose_spec_changed_is_killed_and_started() {
    let p = pod(json!({"restartPolicy": "Never", "containers": containers(&["a", "b"])}));
    let mut stale = ctr(&p, "b", RUNNING, 0, 11);
    stale
        .annotations
        .insert(labels::CONTAINER_HASH.into(), "deadbeef".into());
    let rt = runtime(
        vec![ready_sandbox()],
        vec![ctr(&p, "a", RUNNING, 0, 10), stale],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            start: vec![app(1)],
            kill: vec![(
                "b-11".into(),
                "b".into(),
                "Container b definition changed".into()
            )],
            ..Default::default()
        }
    );
    // A sidecar too.
    let p = sidecar_pod("Always");
    let mut proxy = ctr(&p, "proxy", RUNNING, 0, 10);
    proxy.annotations.clear();
    let rt = runtime(
        vec![ready_sandbox()],
        vec![
            proxy,
            ctr(&p, "migrate", EXITED, 0, 11),
            ctr(&p, "a", RUNNING, 0, 12),
        ],
    );
    assert_eq!(
        compute_actions(&p, &rt),
        Actions {
            start: vec![init(0)],
            kill: vec![(
                "proxy-10".into(),
                "proxy".into(),
                "Init container proxy definition changed".into()
            )],
            ..Default::default()
        }
    );
}

#[test]
fn container_hash_follows_the_spec() {
    let p = pod(json!({"containers": [
        {"name": "a", "image": "busybox:1.36"},
        {"name": "a", "image": "busybox:1.37"},
    ]}));
    let spec = p.spec.unwrap();
    let (one, two) = (&spec.containers[0], &spec.containers[1]);
    assert_eq!(container_hash(one), container_hash(&one.clone()));
    assert_ne!(container_hash(one), container_hash(two));
    assert!(
        container_hash(one)
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
}

#[test]
fn expand_replaces_references_to_the_environment() {
    let env = HashMap::from([
        ("A".to_owned(), "a".to_owned()),
        ("B".to_owned(), "bee".to_owned()),
        ("U".to_owned(), "ü".to_owned()),
    ]);
    let cases = [
        ("$(A)", "a"),
        ("x$(A)y$(B)z", "xaybeez"),
        ("$(A)$(A)", "aa"),
        ("$$", "$"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("pre $(", "pre $("),
        ("$", "$"),
        ("a$b", "a$b"),
        ("$()", "$()"),
        ("héllo $(U)!", "héllo ü!"),
        ("$é", "$é"),
        ("no refs", "no refs"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(expand(input, &env), want, "{input:?}");
    }
}

const GIB: u64 = 1 << 30;

#[test]
fn linux_resources_as_upstream() {
    struct Case {
        name: &'static str,
        pod: Value,
        want: (i64, i64, i64, i64, i64),
    }
    let res = |requests: Value, limits: Value| json!({"containers": [{"name": "c", "resources": {"requests": requests, "limits": limits}}]});
    // (shares, period, quota, memory limit, oom score adj)
    let cases = [
        Case {
            name: "best effort",
            pod: json!({"containers": [{"name": "c"}]}),
            want: (2, 100_000, 0, 0, 1000),
        },
        Case {
            name: "burstable: shares from the request, oom from the memory request",
            pod: res(json!({"cpu": "250m", "memory": "1Gi"}), json!({})),
            want: (256, 100_000, 0, 0, 900),
        },
        Case {
            name: "burstable: shares from the limit without a cpu request",
            pod: res(json!({"memory": "1Gi"}), json!({"cpu": "500m"})),
            want: (512, 100_000, 50_000, 0, 900),
        },
        Case {
            name: "tiny cpu: at least 2 shares and a 1000us quota",
            pod: res(json!({"cpu": "1m"}), json!({"cpu": "1m"})),
            want: (2, 100_000, 1000, 0, 999),
        },
        Case {
            name: "huge cpu request: at most 262144 shares",
            pod: res(json!({"cpu": "300"}), json!({})),
            want: (262_144, 100_000, 0, 0, 999),
        },
        Case {
            name: "guaranteed",
            pod: res(
                json!({"cpu": "1", "memory": "1Gi"}),
                json!({"cpu": "1", "memory": "1Gi"}),
            ),
            want: (1024, 100_000, 100_000, 1 << 30, -997),
        },
        Case {
            name: "burstable asking for 1 byte: 999, never BestEffort's 1000",
            pod: res(json!({"memory": "1"}), json!({})),
            want: (2, 100_000, 0, 0, 999),
        },
        Case {
            name: "burstable asking for all the memory and more: 3",
            pod: res(json!({"memory": "20Gi"}), json!({"memory": "30Gi"})),
            want: (2, 100_000, 0, 30 << 30, 3),
        },
        Case {
            name: "burstable asking for 99.9%: 1000 - 999 = 1, raised to 3",
            pod: res(json!({"memory": "10726680821"}), json!({})),
            want: (2, 100_000, 0, 0, 3),
        },
        Case {
            name: "burstable asking for half: 500",
            pod: res(json!({"memory": "5Gi"}), json!({})),
            want: (2, 100_000, 0, 0, 500),
        },
    ];
    for case in cases {
        let p = pod(case.pod);
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = linux_resources(&p, c, 10 * GIB);
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_period,
                r.cpu_quota,
                r.memory_limit_in_bytes,
                r.oom_score_adj
            ),
            case.want,
            "{}",
            case.name
        );
    }
}

#[test]
fn oom_score_adj_of_node_critical_pods_and_sidecars() {
    // A node-critical pod is protected whatever its QoS class.
    let p = pod(json!({
        "priorityClassName": "system-node-critical",
        "priority": 2_000_001_000,
        "containers": [{"name": "c", "resources": {"requests": {"memory": "1Gi"}}}],
    }));
    let c = &p.spec.as_ref().unwrap().containers[0];
    assert_eq!(linux_resources(&p, c, 10 * GIB).oom_score_adj, -997);
    // A sidecar scores no higher than the smallest regular container.
    let p = pod(json!({
        "initContainers": [{
            "name": "proxy", "restartPolicy": "Always",
            "resources": {"requests": {"memory": "100Mi"}},
        }],
        "containers": [
            {"name": "big", "resources": {"requests": {"memory": "2Gi"}}},
            {"name": "small", "resources": {"requests": {"memory": "1Gi"}}},
        ],
    }));
    let spec = p.spec.as_ref().unwrap();
    let proxy = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(linux_resources(&p, proxy, 10 * GIB).oom_score_adj, 900);
    assert_eq!(
        linux_resources(&p, &spec.containers[0], 10 * GIB).oom_score_adj,
        800
    );
    // Without the node's memory Burstable containers get 999.
    assert_eq!(
        linux_resources(&p, &spec.containers[0], 0).oom_score_adj,
        999
    );
}

#[test]
fn qos_class_and_cgroup_parent() {
    let cases = [
        (json!({"containers": [{"name": "c"}]}), "BestEffort"),
        (
            json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
            "Guaranteed",
        ),
        (
            json!({"containers": [{"name": "c", "resources": {
                "requests": {"cpu": "1000m", "memory": "1024Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"}}}]}),
            "Guaranteed",
        ),
        (
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}),
            "Burstable",
        ),
        (
            json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]}),
            "Burstable",
        ),
        (
            json!({"containers": [
                {"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "d"},
            ]}),
            "Burstable",
        ),
        (
            json!({
                "initContainers": [{"name": "i", "resources": {"requests": {"memory": "1Gi"}}}],
                "containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            }),
            "Burstable",
        ),
    ];
    for (spec, want) in cases {
        let p = pod(spec.clone());
        assert_eq!(qos_class(&p), want, "{spec}");
    }
    // The class the apiserver recorded wins.
    let mut p = pod(json!({"containers": [{"name": "c"}]}));
    p.status = Some(serde_json::from_value(json!({"qosClass": "Burstable"})).unwrap());
    assert_eq!(qos_class(&p), "Burstable");

    let guaranteed = pod(
        json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
    );
    let burstable =
        pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
    let best_effort = pod(json!({"containers": [{"name": "c"}]}));
    assert_eq!(cgroup_parent(&guaranteed, "/"), "/kubepods/poduid-1");
    assert_eq!(
        cgroup_parent(&burstable, "/"),
        "/kubepods/burstable/poduid-1"
    );
    assert_eq!(
        cgroup_parent(&best_effort, "/custom/"),
        "/custom/kubepods/besteffort/poduid-1"
    );
}

#[test]
fn backoff_doubles_from_10s_to_5m_and_resets_after_10m() {
    let mut b = Backoff::default();
    let key = Backoff::key("uid-1", "a");
    assert_eq!(key, "uid-1_a");
    let t0 = Instant::now();
    let secs = Duration::from_secs;
    // The first failure restarts at once.
    assert_eq!(b.check(&key, secs(1), t0), None);
    // Then 10s, 20s, 40s ... each after its wait.
    let mut now = t0;
    for want in [10, 20, 40, 80, 160, 300, 300] {
        now += secs(1);
        assert_eq!(
            b.check(&key, secs(want - 1), now),
            Some(secs(want)),
            "{want}"
        );
        now += secs(want);
        assert_eq!(b.check(&key, secs(want), now), None, "{want}");
    }
    // 10 minutes since the last restart: forgotten, the next back-off is 10s again.
    let last = now;
    assert_eq!(b.check(&key, secs(601), last + secs(601)), None);
    assert_eq!(b.check(&key, secs(9), last + secs(610)), Some(secs(10)));
    // Exactly 10 minutes is not enough.
    let mut b = Backoff::default();
    assert_eq!(b.check(&key, secs(1), t0), None);
    assert_eq!(b.check(&key, secs(10), t0 + secs(11)), None);
    assert_eq!(
        b.check(&key, secs(19), t0 + secs(11) + secs(600)),
        Some(secs(20))
    );
}

#[test]
fn backoff_is_per_container_and_forgotten_per_pod() {
    let mut b = Backoff::default();
    let t0 = Instant::now();
    let s = Duration::from_secs;
    for key in ["uid-1_a", "uid-1_b", "uid-2_a"] {
        assert_eq!(b.check(key, s(1), t0), None);
    }
    assert_eq!(b.check("uid-1_a", s(1), t0), Some(s(10)));
    b.forget_pod("uid-1");
    assert_eq!(b.check("uid-1_a", s(1), t0), None);
    assert_eq!(b.check("uid-1_b", s(1), t0), None);
    assert_eq!(b.check("uid-2_a", s(1), t0), Some(s(10)));
}

fn sandbox_ctx() -> SandboxContext {
    SandboxContext {
        pod_logs_dir: "/var/log/pods".into(),
        dns: v1::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["prod.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        },
        cgroup_parent: "/kubepods/besteffort/poduid-1".into(),
        node_hostname: "node-1".into(),
    }
}

#[test]
fn sandbox_config_as_upstream() {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "web", "namespace": "prod", "uid": "uid-1",
            "labels": {"app": "web"},
            "annotations": {"note": "x"},
        },
        "spec": {
            "securityContext": {
                "runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [5],
                "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
            },
            "initContainers": [{"name": "i", "ports": [{"containerPort": 9, "hostPort": 9}]}],
            "containers": [
                {"name": "a", "ports": [
                    {"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1", "protocol": "TCP"},
                    {"containerPort": 81, "protocol": "TCP"},
                    {"name": "dns", "containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                    {"name": "dns", "containerPort": 54, "hostPort": 5454, "protocol": "UDP"},
                ]},
                {"name": "b", "securityContext": {"privileged": true},
                 "ports": [{"containerPort": 9000, "hostPort": 9000, "protocol": "SCTP"}]},
            ],
        },
    }))
    .unwrap();
    let cfg = sandbox_config(&p, 2, &sandbox_ctx());
    assert_eq!(
        cfg.metadata,
        Some(v1::PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "prod".into(),
            attempt: 2,
        })
    );
    assert_eq!(
        cfg.labels,
        HashMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("io.kubernetes.pod.name".to_owned(), "web".to_owned()),
            ("io.kubernetes.pod.namespace".to_owned(), "prod".to_owned()),
            ("io.kubernetes.pod.uid".to_owned(), "uid-1".to_owned()),
        ])
    );
    assert_eq!(
        cfg.annotations,
        HashMap::from([("note".to_owned(), "x".to_owned())])
    );
    assert_eq!(cfg.log_directory, "/var/log/pods/prod_web_uid-1");
    assert_eq!(cfg.hostname, "web");
    assert_eq!(cfg.dns_config, Some(sandbox_ctx().dns));
    // Every port of the regular containers, once per name (upstream's
    // MakePortMappings); the runtime maps those with a hostPort.
    let tcp = v1::Protocol::Tcp as i32;
    let mapping = |protocol, container_port, host_port, host_ip: &str| v1::PortMapping {
        protocol,
        container_port,
        host_port,
        host_ip: host_ip.into(),
    };
    assert_eq!(
        cfg.port_mappings,
        vec![
            mapping(tcp, 80, 8080, "127.0.0.1"),
            mapping(tcp, 81, 0, ""),
            mapping(v1::Protocol::Udp as i32, 53, 5353, ""),
            mapping(v1::Protocol::Sctp as i32, 9000, 9000, ""),
        ]
    );
    let linux = cfg.linux.unwrap();
    assert_eq!(linux.cgroup_parent, "/kubepods/besteffort/poduid-1");
    assert_eq!(
        linux.sysctls,
        HashMap::from([(
            "net.ipv4.ip_unprivileged_port_start".to_owned(),
            "0".to_owned()
        )])
    );
    let sc = linux.security_context.unwrap();
    assert_eq!(sc.run_as_user, Some(v1::Int64Value { value: 1000 }));
    assert_eq!(sc.run_as_group, Some(v1::Int64Value { value: 3000 }));
    assert_eq!(sc.supplemental_groups, vec![5]);
    assert!(sc.privileged);
    assert!(!sc.readonly_rootfs);
    let (pod_ns, container) = (
        v1::NamespaceMode::Pod as i32,
        v1::NamespaceMode::Container as i32,
    );
    assert_eq!(
        sc.namespace_options,
        Some(v1::NamespaceOption {
            network: pod_ns,
            pid: container,
            ipc: pod_ns,
            ..Default::default()
        })
    );
}

#[test]
fn sandbox_namespaces_follow_host_network_pid_ipc_and_shared_pid() {
    let (node, pod_ns, container) = (
        v1::NamespaceMode::Node as i32,
        v1::NamespaceMode::Pod as i32,
        v1::NamespaceMode::Container as i32,
    );
    // (spec fields, network, pid, ipc)
    let cases = [
        (json!({}), pod_ns, container, pod_ns),
        (json!({"hostNetwork": true}), node, container, pod_ns),
        (json!({"hostPID": true}), pod_ns, node, pod_ns),
        (json!({"hostIPC": true}), pod_ns, container, node),
        (
            json!({"shareProcessNamespace": true}),
            pod_ns,
            pod_ns,
            pod_ns,
        ),
        (
            json!({"hostPID": true, "shareProcessNamespace": true}),
            pod_ns,
            node,
            pod_ns,
        ),
    ];
    for (fields, network, pid, ipc) in cases {
        let mut spec = fields.clone();
        spec["containers"] = containers(&["a"]);
        let p = pod(spec);
        let want = Some(v1::NamespaceOption {
            network,
            pid,
            ipc,
            ..Default::default()
        });
        let sc = sandbox_config(&p, 0, &sandbox_ctx())
            .linux
            .unwrap()
            .security_context
            .unwrap();
        assert_eq!(sc.namespace_options, want, "{fields}");
        let c = &p.spec.as_ref().unwrap().containers[0];
        let csc = container_config(&p, c, &ContainerContext::default())
            .linux
            .unwrap()
            .security_context
            .unwrap();
        assert_eq!(csc.namespace_options, want, "{fields} (container)");
    }
}

#[test]
fn host_network_sandboxes_leave_the_hostname_to_the_node() {
    let p = pod(json!({
        "hostNetwork": true,
        "containers": [{"name": "a", "ports": [{"containerPort": 8080, "hostPort": 8080}]}],
    }));
    let cfg = sandbox_config(&p, 0, &sandbox_ctx());
    assert_eq!(cfg.hostname, "");
    assert_eq!(
        cfg.port_mappings,
        vec![v1::PortMapping {
            protocol: v1::Protocol::Tcp as i32,
            container_port: 8080,
            host_port: 8080,
            host_ip: String::new(),
        }]
    );
    assert_eq!(pod_hostname(&p, "node-1"), "node-1");
}

#[test]
fn pod_hostname_is_cut_at_63_characters() {
    let long = "a".repeat(70);
    let cut_at_dash = format!("{}-{}", "b".repeat(62), "c".repeat(10));
    let cut_at_dots = format!("{}..{}", "d".repeat(61), "e".repeat(10));
    let cases = [
        (json!({"containers": []}), "web".to_owned()),
        (
            json!({"hostname": "custom", "containers": []}),
            "custom".to_owned(),
        ),
        (json!({"hostname": "", "containers": []}), "web".to_owned()),
        (json!({"hostname": long, "containers": []}), "a".repeat(63)),
        (
            json!({"hostname": cut_at_dash, "containers": []}),
            "b".repeat(62),
        ),
        (
            json!({"hostname": cut_at_dots, "containers": []}),
            "d".repeat(61),
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(pod_hostname(&pod(spec.clone()), "node-1"), want, "{spec}");
    }
    // The pod's name when there is no spec.hostname.
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "x".repeat(64), "namespace": "prod", "uid": "u"},
        "spec": {"containers": []},
    }))
    .unwrap();
    assert_eq!(pod_hostname(&p, "node-1"), "x".repeat(63));
}

#[test]
fn container_config_as_upstream() {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "prod", "uid": "uid-1", "labels": {"app": "web"}},
        "spec": {
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [5, 6]},
            "containers": [{
                "name": "main",
                "image": "busybox:1.36",
                "command": ["sh", "-c", "echo $(GREETING) $$HOME $(MISSING)"],
                "args": ["$(GREETING)-$(NAME)"],
                "workingDir": "/work",
                "stdin": true,
                "tty": true,
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                },
            }],
        },
    }))
    .unwrap();
    let c = &p.spec.as_ref().unwrap().containers[0];
    let mounts = vec![v1::Mount {
        container_path: "/dev/termination-log".into(),
        host_path: "/var/lib/kubelet/pods/uid-1/containers/main/abc".into(),
        ..Default::default()
    }];
    let ctx = ContainerContext {
        image_ref: "sha256:0123".into(),
        env: vec![
            ("GREETING".into(), "hello".into()),
            ("NAME".into(), "web".into()),
        ],
        mounts: mounts.clone(),
        restart_count: 2,
        node_memory: 10 * GIB,
    };
    let cfg = container_config(&p, c, &ctx);
    assert_eq!(
        cfg.metadata,
        Some(v1::ContainerMetadata {
            name: "main".into(),
            attempt: 2,
        })
    );
    let image = cfg.image.unwrap();
    assert_eq!(
        (image.image.as_str(), image.user_specified_image.as_str()),
        ("sha256:0123", "busybox:1.36")
    );
    assert_eq!(cfg.command, ["sh", "-c", "echo hello $HOME $(MISSING)"]);
    assert_eq!(cfg.args, ["hello-web"]);
    assert_eq!(cfg.working_dir, "/work");
    assert_eq!(
        cfg.envs,
        vec![
            v1::KeyValue {
                key: "GREETING".into(),
                value: "hello".into()
            },
            v1::KeyValue {
                key: "NAME".into(),
                value: "web".into()
            },
        ]
    );
    assert_eq!(cfg.mounts, mounts);
    assert_eq!(cfg.log_path, "main/2.log");
    assert!(cfg.stdin && cfg.tty && !cfg.stdin_once);
    assert_eq!(
        cfg.labels,
        HashMap::from([
            ("io.kubernetes.pod.name".to_owned(), "web".to_owned()),
            ("io.kubernetes.pod.namespace".to_owned(), "prod".to_owned()),
            ("io.kubernetes.pod.uid".to_owned(), "uid-1".to_owned()),
            ("io.kubernetes.container.name".to_owned(), "main".to_owned()),
        ])
    );
    assert_eq!(
        cfg.annotations,
        HashMap::from([
            ("io.kubernetes.container.hash".to_owned(), container_hash(c)),
            (
                "io.kubernetes.container.restartCount".to_owned(),
                "2".to_owned()
            ),
            (
                "io.kubernetes.container.terminationMessagePath".to_owned(),
                "/dev/termination-log".to_owned()
            ),
            (
                "io.kubernetes.container.terminationMessagePolicy".to_owned(),
                "File".to_owned()
            ),
            (
                "io.kubernetes.pod.terminationGracePeriod".to_owned(),
                "30".to_owned()
            ),
            (
                "io.kubernetes.container.ports".to_owned(),
                r#"[{"containerPort":80,"protocol":"TCP"}]"#.to_owned()
            ),
        ])
    );
    let linux = cfg.linux.unwrap();
    assert_eq!(
        linux.resources,
        Some(v1::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_shares: 2,
            oom_score_adj: 1000,
            ..Default::default()
        })
    );
    let sc = linux.security_context.unwrap();
    assert_eq!(sc.run_as_user, Some(v1::Int64Value { value: 1000 }));
    assert_eq!(sc.run_as_group, Some(v1::Int64Value { value: 3000 }));
    assert_eq!(sc.supplemental_groups, vec![5, 6]);
    assert!(sc.no_new_privs);
    assert!(sc.readonly_rootfs);
    assert!(!sc.privileged);
    assert_eq!(
        sc.capabilities,
        Some(v1::Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        })
    );
}

#[test]
fn container_config_annotations_and_security_from_the_spec() {
    let p = pod(json!({
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"runAsUser": 1000},
        "containers": [{
            "name": "c",
            "terminationMessagePath": "/tmp/msg",
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": {"runAsUser": 0, "privileged": true, "allowPrivilegeEscalation": true},
        }],
    }));
    let c = &p.spec.as_ref().unwrap().containers[0];
    let cfg = container_config(&p, c, &ContainerContext::default());
    let a = &cfg.annotations;
    assert_eq!(a[labels::TERMINATION_MESSAGE_PATH], "/tmp/msg");
    assert_eq!(
        a[labels::TERMINATION_MESSAGE_POLICY],
        "FallbackToLogsOnError"
    );
    assert_eq!(a[labels::GRACE_PERIOD], "5");
    assert_eq!(a[labels::RESTART_COUNT], "0");
    assert!(!a.contains_key(labels::PORTS));
    assert_eq!(cfg.log_path, "c/0.log");
    let sc = cfg.linux.unwrap().security_context.unwrap();
    // The container's runAsUser wins over the pod's.
    assert_eq!(sc.run_as_user, Some(v1::Int64Value { value: 0 }));
    assert_eq!(sc.run_as_group, None);
    assert!(sc.privileged);
    assert!(!sc.no_new_privs);
    assert!(!sc.readonly_rootfs);
    assert_eq!(sc.capabilities, None);
    // No security context at all: privilege escalation allowed.
    let p = pod(json!({"containers": [{"name": "c"}]}));
    let c = &p.spec.as_ref().unwrap().containers[0];
    let sc = container_config(&p, c, &ContainerContext::default())
        .linux
        .unwrap()
        .security_context
        .unwrap();
    assert!(!sc.no_new_privs);
    assert_eq!(sc.run_as_user, None);
}

#[test]
fn runtime_pod_helpers() {
    let p = pod(json!({"containers": containers(&["a", "b"])}));
    let mut a_old = ctr(&p, "a", EXITED, 1, 10);
    a_old
        .annotations
        .insert(labels::RESTART_COUNT.into(), "4".into());
    let mut a_new = ctr(&p, "a", RUNNING, 0, 20);
    a_new
        .annotations
        .insert(labels::RESTART_COUNT.into(), "5".into());
    let b = ctr(&p, "b", EXITED, 0, 15);
    let mut sb = sandbox(SANDBOX_READY, 1, "10.244.0.7");
    sb.network.as_mut().unwrap().additional_ips = vec![
        v1::PodIp {
            ip: "fd00::7".into(),
        },
        v1::PodIp { ip: String::new() },
    ];
    let rt = runtime(
        vec![sb.clone(), sandbox(NOT_READY, 0, "10.244.0.3")],
        vec![a_old, b, a_new],
    );
    assert_eq!(rt.ready_sandbox().map(|s| s.id.as_str()), Some("sb-1"));
    assert_eq!(rt.latest("a").map(|c| c.id.as_str()), Some("a-20"));
    assert_eq!(rt.latest("b").map(|c| c.id.as_str()), Some("b-15"));
    assert!(rt.latest("c").is_none());
    assert_eq!(
        rt.instances("a").map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["a-20", "a-10"]
    );
    assert_eq!(rt.pod_ips(), ["10.244.0.7", "fd00::7"]);
    assert!(rt.any_running());
    assert_eq!(rt.next_restart_count("a"), 6);
    assert_eq!(rt.next_restart_count("b"), 1);
    assert_eq!(rt.next_restart_count("c"), 0);
    // Only the newest sandbox counts, and only when ready.
    let dead = runtime(vec![sandbox(NOT_READY, 2, "10.244.0.9"), sb], vec![]);
    assert!(dead.ready_sandbox().is_none());
    assert!(dead.pod_ips().is_empty());
    assert!(!dead.any_running());
}

#[test]
fn pod_names_for_logs_and_messages() {
    let p = pod(json!({"containers": []}));
    assert_eq!(pod_ids(&p), ("web", "prod", "uid-1"));
    assert_eq!(log_dir_name(&p), "prod_web_uid-1");
    assert_eq!(pod_desc(&p), "web_prod(uid-1)");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "x", "uid": "u"}})).unwrap();
    assert_eq!(pod_ids(&p), ("x", "default", "u"));
    assert!(is_sidecar(
        &serde_json::from_value(json!({"name": "s", "restartPolicy": "Always"})).unwrap()
    ));
    assert!(!is_sidecar(
        &serde_json::from_value(json!({"name": "s"})).unwrap()
    ));
}
