//! Status tests: the API status of a pod from the runtime's view (upstream's
//! `generateAPIPodStatus`, `getPhase` and the condition generators) and the merge
//! patch that posts it.

use serde_json::{Value, json};

use super::*;
use crate::cri::state::{CREATED, EXITED, RUNNING, SANDBOX_READY, UNKNOWN};

const SECOND: i64 = 1_000_000_000;
/// 2024-05-01T10:00:00Z
const T0: i64 = 1_714_557_600 * SECOND;

fn ts(ns: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns)).unwrap()
}

fn time(ns: i64) -> Time {
    Time(ts(ns))
}

fn now() -> Timestamp {
    ts(T0 + 100 * SECOND)
}

fn pod(spec: Value) -> Pod {
    pod_with_status(spec, json!({}))
}

fn pod_with_status(spec: Value, status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "prod", "uid": "uid-1"},
        "spec": spec,
        "status": status,
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

fn sandbox(ready: bool, ip: &str) -> v1::PodSandboxStatus {
    v1::PodSandboxStatus {
        id: "sb".into(),
        state: if ready {
            SANDBOX_READY
        } else {
            v1::PodSandboxState::SandboxNotready as i32
        },
        created_at: T0,
        network: Some(v1::PodSandboxNetworkStatus {
            ip: ip.into(),
            additional_ips: vec![],
        }),
        ..Default::default()
    }
}

/// A runtime instance of container `name`, created `at` seconds after T0.
fn ctr(name: &str, state: i32, exit_code: i32, at: i64, restarts: u32) -> v1::ContainerStatus {
    v1::ContainerStatus {
        id: format!("{name}-{at}"),
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt: restarts,
        }),
        state,
        exit_code,
        created_at: T0 + at * SECOND,
        started_at: if state == CREATED {
            0
        } else {
            T0 + (at + 1) * SECOND
        },
        finished_at: if state == EXITED {
            T0 + (at + 5) * SECOND
        } else {
            0
        },
        image_ref: format!("sha256:{name}"),
        annotations: HashMap::from([
            (labels::RESTART_COUNT.to_owned(), restarts.to_string()),
            (labels::CONTAINER_HASH.to_owned(), "1234abcd".to_owned()),
        ]),
        ..Default::default()
    }
}

fn runtime(ready: bool, mut containers: Vec<v1::ContainerStatus>) -> RuntimePod {
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    RuntimePod {
        sandboxes: vec![sandbox(ready, "10.244.1.5")],
        containers,
    }
}

fn ctx() -> StatusContext {
    StatusContext {
        runtime_name: "containerd".into(),
        host_ips: vec!["192.168.1.10".into()],
        ..Default::default()
    }
}

fn status(pod: &Pod, rt: &RuntimePod) -> PodStatus {
    api_status(pod, rt, &HashMap::new(), &ctx(), None, now())
}

fn condition<'a>(s: &'a PodStatus, type_: &str) -> &'a PodCondition {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

/// (status, reason, message) of a condition.
fn cond(s: &PodStatus, type_: &str) -> (String, Option<String>, Option<String>) {
    let c = condition(s, type_);
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn yes() -> (String, Option<String>, Option<String>) {
    ("True".into(), None, None)
}

fn no(reason: &str, message: &str) -> (String, Option<String>, Option<String>) {
    (
        "False".into(),
        (!reason.is_empty()).then(|| reason.to_owned()),
        (!message.is_empty()).then(|| message.to_owned()),
    )
}

fn waiting(reason: &str) -> Option<ContainerState> {
    Some(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: None,
        }),
        ..Default::default()
    })
}

fn container_status_of<'a>(s: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .unwrap()
}

#[test]
fn a_pod_without_containers_in_the_runtime_is_pending() {
    let p = pod(json!({"containers": containers(&["a", "b"])}));
    let s = status(&p, &RuntimePod::default());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let creating = |name: &str| ContainerStatus {
        name: name.into(),
        image: format!("img-{name}"),
        state: waiting("ContainerCreating"),
        started: Some(false),
        ..Default::default()
    };
    assert_eq!(
        s.container_statuses,
        Some(vec![creating("a"), creating("b")])
    );
    assert_eq!(s.init_container_statuses, None);
    let unready = "containers with unready status: [a b]";
    let t = |type_: &str, status: &str, reason: Option<&str>, message: Option<&str>| PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(str::to_owned),
        message: message.map(str::to_owned),
        last_transition_time: Some(Time(now())),
        ..Default::default()
    };
    assert_eq!(
        s.conditions,
        Some(vec![
            t("PodReadyToStartContainers", "False", None, None),
            t("Initialized", "True", None, None),
            t("Ready", "False", Some("ContainersNotReady"), Some(unready)),
            t(
                "ContainersReady",
                "False",
                Some("ContainersNotReady"),
                Some(unready)
            ),
            t("PodScheduled", "True", None, None),
        ])
    );
    assert_eq!(s.start_time, Some(Time(now())));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(
        s.host_ips,
        Some(vec![HostIP {
            ip: "192.168.1.10".into()
        }])
    );
    assert_eq!((s.pod_ip, s.pod_ips), (None, None));
    assert_eq!((s.reason, s.message), (None, None));
}

#[test]
fn containers_of_a_pod_with_init_containers_wait_in_pod_initializing() {
    let p = pod(json!({
        "initContainers": containers(&["init0"]),
        "containers": containers(&["a"]),
    }));
    let s = status(&p, &runtime(true, vec![]));
    for name in ["init0", "a"] {
        assert_eq!(
            container_status_of(&s, name).state,
            waiting("PodInitializing"),
            "{name}"
        );
    }
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&s, "PodReadyToStartContainers"), yes());
    assert_eq!(
        cond(&s, "Initialized"),
        no(
            "ContainersNotInitialized",
            "containers with incomplete status: [init0]"
        )
    );
}

#[test]
fn a_running_container_is_ready_and_the_pod_running() {
    let p = pod(json!({"containers": containers(&["a"])}));
    let mut a = ctr("a", RUNNING, 0, 0, 0);
    a.image = Some(v1::ImageSpec {
        image: "docker.io/library/img-a:latest".into(),
        ..Default::default()
    });
    let started = time(T0 - 3600 * SECOND);
    let cached = PodStatus {
        start_time: Some(started.clone()),
        ..Default::default()
    };
    let s = api_status(
        &p,
        &runtime(true, vec![a]),
        &HashMap::new(),
        &ctx(),
        Some(&cached),
        now(),
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(
        s.container_statuses,
        Some(vec![ContainerStatus {
            name: "a".into(),
            // The runtime's name of the image, as upstream shows it.
            image: "docker.io/library/img-a:latest".into(),
            image_id: "sha256:a".into(),
            container_id: Some("containerd://a-0".into()),
            restart_count: 0,
            ready: true,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(T0 + SECOND)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }])
    );
    for type_ in [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ] {
        assert_eq!(cond(&s, type_), yes(), "{type_}");
    }
    assert_eq!(s.start_time, Some(started));
    assert_eq!(s.pod_ip.as_deref(), Some("10.244.1.5"));
    assert_eq!(
        s.pod_ips,
        Some(vec![PodIP {
            ip: "10.244.1.5".into()
        }])
    );
    // Without the runtime's image name, the spec's.
    let s = status(&p, &runtime(true, vec![ctr("a", RUNNING, 0, 0, 0)]));
    assert_eq!(container_status_of(&s, "a").image, "img-a");
}

#[test]
fn a_container_waiting_to_restart_shows_its_last_exit() {
    let p = pod(json!({"containers": containers(&["a"])}));
    let rt = runtime(true, vec![ctr("a", EXITED, 1, 0, 3)]);
    let message = "back-off 40s restarting failed container=a pod=web_prod(uid-1)";
    let waits = HashMap::from([(
        "a".to_owned(),
        Waiting {
            reason: "CrashLoopBackOff".into(),
            message: message.into(),
        },
    )]);
    let s = api_status(&p, &rt, &waits, &ctx(), None, now());
    let a = container_status_of(&s, "a");
    assert_eq!(
        a.state,
        Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                message: Some(message.into()),
            }),
            ..Default::default()
        })
    );
    assert_eq!(
        a.last_state,
        Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 1,
                reason: Some("Error".into()),
                started_at: Some(time(T0 + SECOND)),
                finished_at: Some(time(T0 + 5 * SECOND)),
                container_id: Some("containerd://a-0".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
    );
    assert_eq!(a.restart_count, 3);
    assert_eq!(a.container_id.as_deref(), Some("containerd://a-0"));
    assert!(!a.ready);
    assert_eq!(a.started, Some(false));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(
        cond(&s, "ContainersReady"),
        no("ContainersNotReady", "containers with unready status: [a]")
    );
    // A reason for a container that never ran (image pull) leaves no last state.
    let waits = HashMap::from([(
        "a".to_owned(),
        Waiting {
            reason: "ErrImagePull".into(),
            message: "pull failed".into(),
        },
    )]);
    let s = api_status(&p, &runtime(true, vec![]), &waits, &ctx(), None, now());
    let a = container_status_of(&s, "a");
    assert_eq!(
        a.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("ErrImagePull")
    );
    assert_eq!(a.last_state, None);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
}

#[test]
fn the_previous_instance_is_the_last_state_and_the_runtime_reason_is_kept() {
    let p = pod(json!({"containers": containers(&["a"])}));
    let mut old = ctr("a", EXITED, 137, 0, 0);
    old.reason = "OOMKilled".into();
    old.message = "out of memory".into();
    let rt = runtime(true, vec![old, ctr("a", RUNNING, 0, 10, 1)]);
    let s = status(&p, &rt);
    let a = container_status_of(&s, "a");
    assert_eq!(a.restart_count, 1);
    assert_eq!(a.container_id.as_deref(), Some("containerd://a-10"));
    let last = a.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (
            last.exit_code,
            last.reason.as_deref(),
            last.message.as_deref(),
            last.container_id.as_deref()
        ),
        (
            137,
            Some("OOMKilled"),
            Some("out of memory"),
            Some("containerd://a-0")
        )
    );
    assert!(a.ready);
}

#[test]
fn a_created_container_waits_without_a_reason() {
    let p = pod(json!({"containers": containers(&["a"])}));
    let s = status(&p, &runtime(true, vec![ctr("a", CREATED, 0, 0, 0)]));
    let a = container_status_of(&s, "a");
    assert_eq!(
        a.state,
        Some(ContainerState {
            waiting: Some(ContainerStateWaiting::default()),
            ..Default::default()
        })
    );
    assert_eq!(a.container_id.as_deref(), Some("containerd://a-0"));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
}

#[test]
fn the_termination_message_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("msg");
    std::fs::write(&file, "x".repeat(5000)).unwrap();
    let mut a = ctr("a", EXITED, 2, 0, 0);
    a.annotations.insert(
        labels::TERMINATION_MESSAGE_PATH.into(),
        "/dev/termination-log".into(),
    );
    a.mounts = vec![v1::Mount {
        container_path: "/dev/termination-log".into(),
        host_path: file.to_string_lossy().into_owned(),
        ..Default::default()
    }];
    a.message = "runtime says".into();
    let p = pod(json!({"restartPolicy": "Never", "containers": containers(&["a"])}));
    let s = status(&p, &runtime(true, vec![a]));
    let t = container_status_of(&s, "a")
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(
        t.message,
        Some(format!("runtime says: {}", "x".repeat(4096)))
    );
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn phase_as_upstream_get_phase() {
    /// A regular container's (state, exit code); `None`: not in the runtime.
    type Runtime = Vec<Option<(i32, i32)>>;
    // (restartPolicy, regular containers, phase)
    let cases: [(&str, Runtime, &str); 12] = [
        (
            "Never",
            vec![Some((EXITED, 0)), Some((EXITED, 0))],
            "Succeeded",
        ),
        ("OnFailure", vec![Some((EXITED, 0))], "Succeeded"),
        (
            "Never",
            vec![Some((EXITED, 0)), Some((EXITED, 1))],
            "Failed",
        ),
        ("OnFailure", vec![Some((EXITED, 1))], "Running"),
        (
            "OnFailure",
            vec![Some((EXITED, 0)), Some((EXITED, 1))],
            "Running",
        ),
        ("Always", vec![Some((EXITED, 0))], "Running"),
        (
            "Always",
            vec![Some((EXITED, 1)), Some((EXITED, 0))],
            "Running",
        ),
        (
            "Never",
            vec![Some((RUNNING, 0)), Some((EXITED, 1))],
            "Running",
        ),
        ("Always", vec![None], "Pending"),
        ("Never", vec![Some((EXITED, 0)), None], "Pending"),
        (
            "Never",
            vec![Some((RUNNING, 0)), Some((CREATED, 0))],
            "Pending",
        ),
        (
            "Always",
            vec![Some((RUNNING, 0)), Some((RUNNING, 0))],
            "Running",
        ),
    ];
    for (policy, states, want) in cases {
        let names = ["a", "b"];
        let p = pod(json!({
            "restartPolicy": policy,
            "containers": containers(&names[..states.len()]),
        }));
        let rt = runtime(
            true,
            states
                .iter()
                .zip(names)
                .filter_map(|(s, n)| s.map(|(state, code)| ctr(n, state, code, 0, 0)))
                .collect(),
        );
        let s = status(&p, &rt);
        assert_eq!(s.phase.as_deref(), Some(want), "{policy} {states:?}");
    }
}

#[test]
fn phase_with_init_containers() {
    // (restartPolicy, init containers in the runtime, regular ones, phase,
    // Initialized condition)
    let incomplete = |names: &str| {
        no(
            "ContainersNotInitialized",
            &format!("containers with incomplete status: [{names}]"),
        )
    };
    let cases = [
        (
            "Never",
            vec![("init0", EXITED, 1)],
            vec![],
            "Failed",
            incomplete("init0 init1"),
        ),
        (
            "OnFailure",
            vec![("init0", EXITED, 1)],
            vec![],
            "Pending",
            incomplete("init0 init1"),
        ),
        (
            "Always",
            vec![("init0", RUNNING, 0)],
            vec![],
            "Pending",
            incomplete("init0 init1"),
        ),
        (
            "Always",
            vec![("init0", EXITED, 0)],
            vec![],
            "Pending",
            incomplete("init1"),
        ),
        (
            "Always",
            vec![("init0", EXITED, 0), ("init1", EXITED, 0)],
            vec![],
            "Pending",
            yes(),
        ),
        (
            "Always",
            vec![("init0", EXITED, 0), ("init1", EXITED, 0)],
            vec![("a", RUNNING, 0)],
            "Running",
            yes(),
        ),
        (
            "Never",
            vec![("init0", EXITED, 0), ("init1", EXITED, 0)],
            vec![("a", EXITED, 0)],
            "Succeeded",
            (
                "True".to_owned(),
                Some("PodCompleted".to_owned()),
                None::<String>,
            ),
        ),
    ];
    for (policy, inits, apps, want, initialized) in cases {
        let p = pod(json!({
            "restartPolicy": policy,
            "initContainers": containers(&["init0", "init1"]),
            "containers": containers(&["a"]),
        }));
        let rt = runtime(
            true,
            inits
                .iter()
                .chain(&apps)
                .enumerate()
                .map(|(i, (n, state, code))| ctr(n, *state, *code, i as i64 * 10, 0))
                .collect(),
        );
        let s = status(&p, &rt);
        assert_eq!(
            s.phase.as_deref(),
            Some(want),
            "{policy} {inits:?} {apps:?}"
        );
        assert_eq!(
            cond(&s, "Initialized"),
            initialized,
            "{policy} {inits:?} {apps:?}"
        );
    }
}

#[test]
fn a_failed_init_container_waiting_to_restart_fails_the_pod_only_under_never() {
    let p = |policy: &str| {
        pod(json!({
            "restartPolicy": policy,
            "initContainers": containers(&["init0"]),
            "containers": containers(&["a"]),
        }))
    };
    let rt = runtime(true, vec![ctr("init0", EXITED, 1, 0, 2)]);
    let waits = HashMap::from([(
        "init0".to_owned(),
        Waiting {
            reason: "CrashLoopBackOff".into(),
            message: String::new(),
        },
    )]);
    let s = api_status(&p("OnFailure"), &rt, &waits, &ctx(), None, now());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let init0 = container_status_of(&s, "init0");
    assert_eq!(init0.state, waiting("CrashLoopBackOff"));
    assert!(!init0.ready);
    assert_eq!(
        init0
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        1
    );
    let s = api_status(&p("Never"), &rt, &waits, &ctx(), None, now());
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(cond(&s, "ContainersReady"), no("PodFailed", ""));
    assert_eq!(cond(&s, "Ready"), no("PodFailed", ""));
}

#[test]
fn sidecars_count_while_they_run() {
    let p = pod(json!({
        "restartPolicy": "Never",
        "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
        "containers": containers(&["a"]),
    }));
    // Initializing: the sidecar has not started yet.
    let s = status(&p, &runtime(true, vec![]));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(
        cond(&s, "Initialized"),
        no(
            "ContainersNotInitialized",
            "containers with incomplete status: [proxy]"
        )
    );
    // The sidecar runs and is ready; the app has not started.
    let s = status(&p, &runtime(true, vec![ctr("proxy", RUNNING, 0, 0, 0)]));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&s, "Initialized"), yes());
    assert!(container_status_of(&s, "proxy").ready);
    assert_eq!(
        cond(&s, "ContainersReady"),
        no("ContainersNotReady", "containers with unready status: [a]")
    );
    // The app is done but the sidecar still runs: Running.
    let s = status(
        &p,
        &runtime(
            true,
            vec![ctr("proxy", RUNNING, 0, 0, 0), ctr("a", EXITED, 0, 10, 0)],
        ),
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(
        cond(&s, "ContainersReady"),
        no("ContainersNotReady", "containers with unready status: [a]")
    );
    // Once the sidecar stopped too: Succeeded.
    let s = status(
        &p,
        &runtime(
            true,
            vec![ctr("proxy", EXITED, 137, 0, 0), ctr("a", EXITED, 0, 10, 0)],
        ),
    );
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    // A sidecar that stopped while the app runs is unready.
    let p = pod(json!({
        "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
        "containers": containers(&["a"]),
    }));
    let s = status(
        &p,
        &runtime(
            true,
            vec![ctr("proxy", EXITED, 1, 0, 0), ctr("a", RUNNING, 0, 10, 0)],
        ),
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Initialized"), yes());
    assert_eq!(
        cond(&s, "Ready"),
        no(
            "ContainersNotReady",
            "containers with unready status: [proxy]"
        )
    );
}

#[test]
fn terminal_phases_leave_the_pod_unready() {
    let p = pod(json!({"restartPolicy": "Never", "containers": containers(&["a"])}));
    let s = status(&p, &runtime(false, vec![ctr("a", EXITED, 0, 0, 0)]));
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(cond(&s, "ContainersReady"), no("PodCompleted", ""));
    assert_eq!(cond(&s, "Ready"), no("PodCompleted", ""));
    assert_eq!(cond(&s, "Initialized"), yes());
    assert_eq!(cond(&s, "PodReadyToStartContainers"), no("", ""));
    let s = status(&p, &runtime(false, vec![ctr("a", EXITED, 3, 0, 0)]));
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(cond(&s, "ContainersReady"), no("PodFailed", ""));
    assert_eq!(cond(&s, "Ready"), no("PodFailed", ""));
}

#[test]
fn a_terminal_phase_never_goes_back() {
    let p = pod(json!({"restartPolicy": "Never", "containers": containers(&["a"])}));
    // The kubelet posted Succeeded; the runtime since lost the container.
    let cached = PodStatus {
        phase: Some("Succeeded".into()),
        reason: Some("Done".into()),
        ..Default::default()
    };
    let s = api_status(
        &p,
        &RuntimePod::default(),
        &HashMap::new(),
        &ctx(),
        Some(&cached),
        now(),
    );
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(s.reason.as_deref(), Some("Done"));
    // The API says Failed: so it stays, whatever the runtime shows.
    let p = pod_with_status(
        json!({"containers": containers(&["a"])}),
        json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}),
    );
    let s = status(&p, &runtime(true, vec![ctr("a", RUNNING, 0, 0, 0)]));
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(
        (s.reason.as_deref(), s.message.as_deref()),
        (Some("Evicted"), Some("low on memory"))
    );
}

#[test]
fn the_reason_and_message_go_with_the_phase() {
    let p = pod(json!({"containers": containers(&["a"])}));
    let cached = PodStatus {
        phase: Some("Pending".into()),
        reason: Some("SomeReason".into()),
        message: Some("some message".into()),
        ..Default::default()
    };
    let s = api_status(
        &p,
        &RuntimePod::default(),
        &HashMap::new(),
        &ctx(),
        Some(&cached),
        now(),
    );
    assert_eq!(
        (s.reason.as_deref(), s.message.as_deref()),
        (Some("SomeReason"), Some("some message"))
    );
    let s = api_status(
        &p,
        &runtime(true, vec![ctr("a", RUNNING, 0, 0, 0)]),
        &HashMap::new(),
        &ctx(),
        Some(&cached),
        now(),
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!((s.reason, s.message), (None, None));
}

#[test]
fn readiness_gates() {
    let spec = json!({
        "readinessGates": [{"conditionType": "example.com/lb"}],
        "containers": containers(&["a"]),
    });
    let rt = runtime(true, vec![ctr("a", RUNNING, 0, 0, 0)]);
    // The gate's condition is missing.
    let s = status(&pod(spec.clone()), &rt);
    assert_eq!(cond(&s, "ContainersReady"), yes());
    assert_eq!(
        cond(&s, "Ready"),
        no(
            "ReadinessGatesNotReady",
            "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."
        )
    );
    // False.
    let gate = |status: &str| {
        json!({"conditions": [{"type": "example.com/lb", "status": status,
            "lastTransitionTime": "2024-05-01T09:00:00Z"}]})
    };
    let s = status(&pod_with_status(spec.clone(), gate("False")), &rt);
    assert_eq!(
        cond(&s, "Ready"),
        no(
            "ReadinessGatesNotReady",
            "the status of pod readiness gate \"example.com/lb\" is not \"True\", but False"
        )
    );
    // True: ready, and the gate's condition is kept as its writer set it.
    let s = status(&pod_with_status(spec.clone(), gate("True")), &rt);
    assert_eq!(cond(&s, "Ready"), yes());
    let g = condition(&s, "example.com/lb");
    assert_eq!(
        (g.status.as_str(), g.last_transition_time.clone()),
        ("True", Some(time(T0 - 3600 * SECOND)))
    );
    // Every unready gate is named.
    let two = json!({
        "readinessGates": [{"conditionType": "x/one"}, {"conditionType": "x/two"}],
        "containers": containers(&["a"]),
    });
    let s = status(
        &pod_with_status(
            two,
            json!({"conditions": [{"type": "x/two", "status": "Unknown"}]}),
        ),
        &rt,
    );
    assert_eq!(
        cond(&s, "Ready"),
        no(
            "ReadinessGatesNotReady",
            "corresponding condition of pod readiness gate \"x/one\" does not exist., the status of pod readiness gate \"x/two\" is not \"True\", but Unknown"
        )
    );
    // Containers not ready: Ready says so, gates aside.
    let s = status(&pod(spec), &runtime(true, vec![]));
    assert_eq!(
        cond(&s, "Ready"),
        no("ContainersNotReady", "containers with unready status: [a]")
    );
}

#[test]
fn conditions_of_other_writers_and_transition_times() {
    let t_sched = "2024-05-01T09:00:00Z";
    let t_ready = "2024-05-01T09:30:00Z";
    let p = pod_with_status(
        json!({"containers": containers(&["a"])}),
        json!({"conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t_sched},
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
             "message": "Eviction API: evicting", "lastTransitionTime": t_ready},
            {"type": "Ready", "status": "True", "lastTransitionTime": t_ready},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": t_ready},
        ]}),
    );
    let at = |s: &str| Some(Time(s.parse().unwrap()));
    let s = status(&p, &runtime(true, vec![ctr("a", RUNNING, 0, 0, 0)]));
    let types: Vec<&str> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "DisruptionTarget",
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled"
        ]
    );
    let dt = condition(&s, "DisruptionTarget");
    assert_eq!(
        (
            dt.status.as_str(),
            dt.reason.as_deref(),
            dt.message.as_deref(),
            dt.last_transition_time.clone()
        ),
        (
            "True",
            Some("EvictionByEvictionAPI"),
            Some("Eviction API: evicting"),
            at(t_ready)
        )
    );
    // Unchanged statuses keep their transition times; new ones get now.
    assert_eq!(
        condition(&s, "PodScheduled").last_transition_time,
        at(t_sched)
    );
    assert_eq!(condition(&s, "Ready").last_transition_time, at(t_ready));
    assert_eq!(
        condition(&s, "ContainersReady").last_transition_time,
        at(t_ready)
    );
    assert_eq!(
        condition(&s, "Initialized").last_transition_time,
        Some(Time(now()))
    );
    // Ready turns False: a new transition time.
    let s = status(&p, &runtime(true, vec![ctr("a", EXITED, 1, 0, 0)]));
    let r = condition(&s, "Ready");
    assert_eq!(
        (r.status.as_str(), r.last_transition_time.clone()),
        ("False", Some(Time(now())))
    );
    // The cached status, when there is one, is what changed from.
    let cached = s.clone();
    let later = ts(T0 + 200 * SECOND);
    let s2 = api_status(
        &p,
        &runtime(true, vec![ctr("a", EXITED, 1, 0, 0)]),
        &HashMap::new(),
        &ctx(),
        Some(&cached),
        later,
    );
    assert_eq!(
        condition(&s2, "Ready").last_transition_time,
        Some(Time(now()))
    );
    // A pod bound without the scheduler gets PodScheduled from the kubelet.
    let p = pod(json!({"containers": containers(&["a"])}));
    let s = status(&p, &runtime(true, vec![]));
    assert_eq!(cond(&s, "PodScheduled"), yes());
}

#[test]
fn pod_ips_come_from_the_ready_sandbox_or_the_host() {
    let p = pod(json!({"containers": containers(&["a"])}));
    let mut rt = runtime(true, vec![ctr("a", RUNNING, 0, 0, 0)]);
    rt.sandboxes[0].network.as_mut().unwrap().additional_ips = vec![v1::PodIp {
        ip: "fd00:10:244::5".into(),
    }];
    let s = status(&p, &rt);
    assert_eq!(s.pod_ip.as_deref(), Some("10.244.1.5"));
    assert_eq!(
        s.pod_ips,
        Some(vec![
            PodIP {
                ip: "10.244.1.5".into()
            },
            PodIP {
                ip: "fd00:10:244::5".into()
            },
        ])
    );
    // No ready sandbox: no IP, and not ready to start containers.
    let s = status(&p, &runtime(false, vec![]));
    assert_eq!((&s.pod_ip, &s.pod_ips), (&None, &None));
    assert_eq!(cond(&s, "PodReadyToStartContainers"), no("", ""));
    // Host-network pods have the node's IPs, and need none from the sandbox.
    let host = pod(json!({"hostNetwork": true, "containers": containers(&["a"])}));
    let mut rt = runtime(true, vec![ctr("a", RUNNING, 0, 0, 0)]);
    rt.sandboxes[0].network = None;
    let s = status(&host, &rt);
    assert_eq!(s.pod_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(
        s.pod_ips,
        Some(vec![PodIP {
            ip: "192.168.1.10".into()
        }])
    );
    assert_eq!(cond(&s, "PodReadyToStartContainers"), yes());
}

#[test]
fn qos_class_is_computed_when_the_api_has_none() {
    let p = pod(json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}));
    assert_eq!(
        status(&p, &RuntimePod::default()).qos_class.as_deref(),
        Some("Burstable")
    );
    let p = pod_with_status(
        json!({"containers": containers(&["a"])}),
        json!({"qosClass": "Guaranteed"}),
    );
    assert_eq!(
        status(&p, &RuntimePod::default()).qos_class.as_deref(),
        Some("Guaranteed")
    );
}

#[test]
fn containers_the_runtime_lost() {
    let p = pod(json!({"containers": containers(&["a", "b", "c"])}));
    let terminated = ContainerStatus {
        name: "a".into(),
        image: "img-a".into(),
        restart_count: 2,
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 0,
                reason: Some("Completed".into()),
                container_id: Some("containerd://gone".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        started: Some(false),
        ..Default::default()
    };
    let running = ContainerStatus {
        name: "b".into(),
        image: "img-b".into(),
        restart_count: 4,
        ready: true,
        started: Some(true),
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(T0)),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut waiting_old = running.clone();
    waiting_old.name = "c".into();
    waiting_old.state = waiting("ContainerCreating");
    waiting_old.restart_count = 1;
    waiting_old.last_state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 2,
            ..Default::default()
        }),
        ..Default::default()
    });
    let cached = PodStatus {
        container_statuses: Some(vec![terminated.clone(), running, waiting_old.clone()]),
        ..Default::default()
    };
    let s = api_status(
        &p,
        &runtime(true, vec![]),
        &HashMap::new(),
        &ctx(),
        Some(&cached),
        now(),
    );
    // A terminated container keeps what was shown.
    assert_eq!(container_status_of(&s, "a"), &terminated);
    // A running one is waiting again, its run ended with an unknown exit.
    let b = container_status_of(&s, "b");
    assert_eq!(b.state, waiting("ContainerCreating"));
    assert_eq!(b.restart_count, 5);
    assert!(!b.ready);
    assert_eq!(
        b.last_state,
        Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                reason: Some("ContainerStatusUnknown".into()),
                message: Some(
                    "The container could not be located when the pod was deleted.  The container used to be Running".into()
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
    );
    // A waiting one keeps its restart count and last state.
    let c = container_status_of(&s, "c");
    assert_eq!(
        (c.restart_count, &c.last_state, &c.state),
        (1, &waiting_old.last_state, &waiting("ContainerCreating"))
    );
    // A pod being deleted does not count the lost run as a restart.
    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(time(T0));
    let s = api_status(
        &deleting,
        &runtime(true, vec![]),
        &HashMap::new(),
        &ctx(),
        Some(&cached),
        now(),
    );
    assert_eq!(container_status_of(&s, "b").restart_count, 4);
}

#[test]
fn a_container_in_an_unknown_state_that_ran_has_terminated() {
    let p = pod(json!({"containers": containers(&["a"])}));
    let cached = PodStatus {
        container_statuses: Some(vec![ContainerStatus {
            name: "a".into(),
            restart_count: 1,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let rt = runtime(true, vec![ctr("a", UNKNOWN, 0, 0, 1)]);
    let s = api_status(&p, &rt, &HashMap::new(), &ctx(), Some(&cached), now());
    let a = container_status_of(&s, "a");
    assert_eq!(a.restart_count, 2);
    let t = a.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (137, Some("ContainerStatusUnknown"))
    );
    // Without a running status before, unknown is waiting.
    let s = status(&p, &rt);
    assert_eq!(
        container_status_of(&s, "a").state,
        Some(ContainerState {
            waiting: Some(ContainerStateWaiting::default()),
            ..Default::default()
        })
    );
}

#[test]
fn an_init_container_the_runtime_lost_after_initialization_completed() {
    let p = pod(json!({
        "initContainers": containers(&["init0"]),
        "containers": containers(&["a"]),
    }));
    let s = status(&p, &runtime(true, vec![ctr("a", RUNNING, 0, 10, 0)]));
    let init0 = container_status_of(&s, "init0");
    let t = init0.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert!(init0.ready);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Initialized"), yes());
    assert_eq!(cond(&s, "Ready"), yes());
}

#[test]
fn merge_patch_nulls_removed_keys() {
    let old = json!({"a": 1, "b": {"c": 1, "d": 2}, "e": [1, 2]});
    let new = json!({"b": {"c": 3}, "e": [2], "f": "x"});
    assert_eq!(
        merge_patch(&old, &new),
        json!({"a": null, "b": {"c": 3, "d": null}, "e": [2], "f": "x"})
    );
    assert_eq!(merge_patch(&Value::Null, &new), new);
    assert_eq!(
        merge_patch(&json!({"a": 1}), &json!({"a": 1})),
        json!({"a": 1})
    );
}

#[test]
fn merge_patch_matches_conditions_by_type_and_ips_by_ip() {
    let old = json!({
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "m"},
        ],
        "podIPs": [{"ip": "10.0.0.1"}],
    });
    let new = json!({
        "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Initialized", "status": "True"},
        ],
        "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
    });
    assert_eq!(
        merge_patch(&old, &new),
        json!({
            "conditions": [
                {"type": "Ready", "status": "True", "reason": null, "message": null},
                {"type": "Initialized", "status": "True"},
            ],
            "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
        })
    );
}

#[test]
fn merge_patch_sends_container_statuses_whole() {
    let old = json!({"containerStatuses": [
        {"name": "a", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}},
    ]});
    let new = json!({"containerStatuses": [
        {"name": "a", "ready": true, "state": {"running": {"startedAt": "2024-05-01T10:00:01Z"}}},
    ]});
    assert_eq!(merge_patch(&old, &new), new);
}

#[test]
fn merge_patch_of_a_pod_starting_to_run() {
    let p = pod(json!({"containers": containers(&["a"])}));
    let pending = status(&p, &runtime(true, vec![]));
    let running = api_status(
        &p,
        &runtime(true, vec![ctr("a", RUNNING, 0, 0, 0)]),
        &HashMap::new(),
        &ctx(),
        Some(&pending),
        now(),
    );
    let patch = merge_patch(
        &serde_json::to_value(&pending).unwrap(),
        &serde_json::to_value(&running).unwrap(),
    );
    assert_eq!(patch["phase"], "Running");
    let ready = patch["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(
        ready,
        &json!({
            "type": "Ready", "status": "True", "reason": null, "message": null,
            "lastTransitionTime": "2024-05-01T10:01:40Z",
        })
    );
    // Container statuses go whole: no null for the waiting state they left.
    assert_eq!(
        patch["containerStatuses"],
        serde_json::to_value(running.container_statuses.unwrap()).unwrap()
    );
    assert!(!patch["containerStatuses"].to_string().contains("null"));
}
