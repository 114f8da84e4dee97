//! Pod status: what the API shows of a pod the kubelet runs ([`api_status`], pure,
//! upstream's `generateAPIPodStatus` with `getPhase` and the condition
//! generators), and the [`Manager`] that writes it to the apiserver.
//!
//! The manager keeps the last status computed for each pod and a version; a single
//! task patches changed statuses with a strategic merge patch on `pods/status`
//! (conditions merge by type, so conditions other writers own, such as
//! `PodScheduled` or readiness gates, survive), carrying the pod's UID so a
//! recreated pod of the same name is never written. Terminated pods that are being
//! deleted are then deleted with grace period 0, as upstream's status manager does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::cri::{self, v1};
use crate::kuberuntime::{RuntimePod, is_sidecar, labels};

/// Why a container is waiting, as the last sync found (`ErrImagePull`,
/// `CrashLoopBackOff`, `CreateContainerConfigError`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The reason.
    pub reason: String,
    /// The message.
    pub message: String,
}

fn time_ns(ns: i64) -> Option<Time> {
    (ns > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(ns)).ok())
        .flatten()
        .map(Time)
}

/// The container ID as the API shows it: `containerd://<id>`.
pub fn container_id(runtime_name: &str, id: &str) -> String {
    format!("{runtime_name}://{id}")
}

fn terminated(
    st: &v1::ContainerStatus,
    runtime_name: &str,
    message: Option<String>,
) -> ContainerStateTerminated {
    // The runtime's message, then what the container wrote to its termination
    // message path, as upstream's `toKubeContainerStatus`.
    let mut msg = st.message.clone();
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&m);
    }
    ContainerStateTerminated {
        exit_code: st.exit_code,
        reason: Some(if st.reason.is_empty() {
            if st.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_owned()
        } else {
            st.reason.clone()
        }),
        message: (!msg.is_empty()).then_some(msg),
        started_at: time_ns(st.started_at),
        finished_at: time_ns(st.finished_at),
        container_id: Some(container_id(runtime_name, &st.id)),
        signal: None,
    }
}

/// The termination message of an exited container: the file it wrote at its
/// `terminationMessagePath` (the host side of that mount), at most 4096 bytes.
fn termination_message(st: &v1::ContainerStatus) -> Option<String> {
    let path = st.annotations.get(labels::TERMINATION_MESSAGE_PATH)?;
    let m = st.mounts.iter().find(|m| &m.container_path == path)?;
    let data = std::fs::read(&m.host_path).ok()?;
    let data = &data[..data.len().min(4096)];
    Some(String::from_utf8_lossy(data).into_owned())
}

fn waiting_state(reason: Option<&str>, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: reason.filter(|r| !r.is_empty()).map(str::to_owned),
            message: message.filter(|m| !m.is_empty()).map(str::to_owned),
        }),
        ..Default::default()
    }
}

fn terminated_state(t: ContainerStateTerminated) -> ContainerState {
    ContainerState {
        terminated: Some(t),
        ..Default::default()
    }
}

fn is_terminated(s: &Option<ContainerState>) -> bool {
    s.as_ref().is_some_and(|s| s.terminated.is_some())
}

fn is_running(s: &Option<ContainerState>) -> bool {
    s.as_ref().is_some_and(|s| s.running.is_some())
}

/// Upstream's `convertContainerStatus`: one runtime instance as the API shows it.
fn convert(
    c: &Container,
    st: &v1::ContainerStatus,
    runtime_name: &str,
    old: Option<&ContainerStatus>,
) -> ContainerStatus {
    let mut restart_count = st
        .annotations
        .get(labels::RESTART_COUNT)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    let state = match st.state {
        s if s == cri::state::RUNNING => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time_ns(st.started_at),
            }),
            ..Default::default()
        },
        s if s == cri::state::EXITED => {
            terminated_state(terminated(st, runtime_name, termination_message(st)))
        }
        // It ran and the runtime lost track of it: it stopped, with an unknown exit.
        s if s == cri::state::UNKNOWN && old.is_some_and(|o| is_running(&o.state)) => {
            restart_count = old.map_or(0, |o| o.restart_count) + 1;
            terminated_state(ContainerStateTerminated {
                exit_code: 137,
                reason: Some("ContainerStatusUnknown".into()),
                message: Some(
                    "The container could not be located when the pod was terminated".into(),
                ),
                ..Default::default()
            })
        }
        // Created, or unknown: waiting, with no reason.
        _ => waiting_state(None, None),
    };
    ContainerStatus {
        name: c.name.clone(),
        // The runtime's name of the image (containerd: its first tag), as upstream.
        image: st
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| c.image.clone().unwrap_or_default()),
        image_id: st.image_ref.clone(),
        container_id: Some(container_id(runtime_name, &st.id)),
        restart_count,
        state: Some(state),
        ..Default::default()
    }
}

/// Inputs of one container's status besides the runtime's view.
struct ContainerInputs<'a> {
    waiting: Option<&'a Waiting>,
    runtime_name: &'a str,
    /// What was shown last.
    old: Option<&'a ContainerStatus>,
    /// The pod has init containers: the default waiting reason is
    /// `PodInitializing`, else `ContainerCreating`.
    has_init: bool,
    /// The pod is being deleted.
    deleting: bool,
    /// A regular init container the runtime no longer has while a regular
    /// container was created: it completed.
    init_done: bool,
    /// The container's probe results.
    probe: Option<&'a crate::prober::State>,
}

/// Upstream's `convertToAPIContainerStatuses` for one container.
fn container_status(c: &Container, rt: &RuntimePod, i: &ContainerInputs<'_>) -> ContainerStatus {
    let mut instances = rt.instances(&c.name);
    let mut status = match instances.next() {
        Some(st) => {
            let mut s = convert(c, st, i.runtime_name, i.old);
            if let Some(prev) = instances.next() {
                s.last_state = convert(c, prev, i.runtime_name, i.old).state;
            }
            s
        }
        None => {
            let default_reason = if i.has_init {
                "PodInitializing"
            } else {
                "ContainerCreating"
            };
            let mut s = ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                state: Some(waiting_state(Some(default_reason), None)),
                ..Default::default()
            };
            match i.old {
                // A container the runtime no longer has keeps its last exit.
                Some(o) if is_terminated(&o.state) => s = o.clone(),
                Some(o) => {
                    s.restart_count = o.restart_count;
                    s.last_state = o.last_state.clone();
                    // It ran and is gone: it stopped, with an unknown exit.
                    let last_terminated = s
                        .last_state
                        .as_ref()
                        .is_some_and(|l| l.terminated.is_some());
                    if is_running(&o.state) && !last_terminated {
                        s.last_state = Some(terminated_state(ContainerStateTerminated {
                            exit_code: 137,
                            reason: Some("ContainerStatusUnknown".into()),
                            message: Some(
                                "The container could not be located when the pod was deleted.  The container used to be Running".into(),
                            ),
                            ..Default::default()
                        }));
                        if !i.deleting {
                            s.restart_count += 1;
                        }
                    }
                }
                None => {}
            }
            if i.init_done && !is_terminated(&s.state) {
                s.state = Some(terminated_state(ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    message: Some("Unable to get init container status from container runtime and pod has been initialized, treat it as exited normally".into()),
                    ..Default::default()
                }));
                s.ready = false;
                s.started = Some(false);
                return s;
            }
            s
        }
    };
    // Waiting to (re)start, as the last sync found: a previous exit is the last state.
    if let Some(w) = i.waiting {
        if is_terminated(&status.state) {
            status.last_state = status.state.clone();
        }
        status.state = Some(waiting_state(Some(&w.reason), Some(&w.message)));
    }
    // Started once its startup probe passed (at once without one); ready once
    // started and its readiness probe passed (at once without one). Results of an
    // earlier instance do not count.
    let running = is_running(&status.state);
    let id = status
        .container_id
        .as_deref()
        .and_then(|c| c.split_once("://"))
        .map(|(_, id)| id);
    let probe = i.probe.filter(|p| Some(p.container_id.as_str()) == id);
    let started =
        running && (c.startup_probe.is_none() || probe.and_then(|p| p.started) == Some(true));
    status.started = Some(started);
    status.ready =
        started && (c.readiness_probe.is_none() || probe.and_then(|p| p.ready) == Some(true));
    status
}

/// Upstream's `getPhase` over the computed container statuses; `initialized`: a
/// regular container of the current sandbox has started
/// (`HasAnyActiveRegularContainerStarted`).
pub fn phase(
    pod: &Pod,
    init: &[ContainerStatus],
    containers: &[ContainerStatus],
    initialized: bool,
) -> &'static str {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let inits: &[Container] = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let regular: &[Container] = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    fn find<'a>(
        list: &'a [ContainerStatus],
        name: &str,
    ) -> Option<(ContainerState, &'a ContainerStatus)> {
        list.iter()
            .find(|s| s.name == name)
            .map(|s| (s.state.clone().unwrap_or_default(), s))
    }
    let last_terminated = |s: &ContainerStatus| {
        s.last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let (mut pending_init, mut pending_sidecar, mut failed_init) = (0, 0, 0);
    for c in inits.iter().filter(|c| !is_sidecar(c)) {
        let Some((state, st)) = find(init, &c.name) else {
            pending_init += 1;
            continue;
        };
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            match last_terminated(st) {
                Some(code) if code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in inits.iter().filter(|c| is_sidecar(c)) {
        let Some((state, st)) = find(init, &c.name) else {
            unknown += 1;
            continue;
        };
        if state.running.is_some() {
            if !st.started.unwrap_or(false) {
                pending_sidecar += 1;
            }
            running += 1;
        } else if state.terminated.is_some() {
            // Stopped sidecars do not count.
        } else if state.waiting.is_some() {
            if last_terminated(st).is_none() {
                pending_sidecar += 1;
                waiting += 1;
            }
        } else {
            pending_sidecar += 1;
            unknown += 1;
        }
    }
    for c in regular {
        let Some((state, st)) = find(containers, &c.name) else {
            unknown += 1;
            continue;
        };
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if last_terminated(st).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecar > 0 && !initialized) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        return if policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if policy == "Never" {
            "Failed"
        } else {
            "Running"
        };
    }
    "Pending"
}

/// The node-side inputs of a pod's status.
#[derive(Clone, Debug, Default)]
pub struct StatusContext {
    /// The runtime's name (`containerd`), the container IDs' scheme.
    pub runtime_name: String,
    /// The node's IPs.
    pub host_ips: Vec<String>,
    /// The pod's probe results, by container name.
    pub probes: HashMap<String, crate::prober::State>,
}

/// The conditions the kubelet owns (upstream's `PodConditionsByKubelet`).
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    "PodReadyToStartContainers",
];

fn new_condition(type_: &str, ok: bool, reason: &str, message: String) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        message: (!message.is_empty()).then_some(message),
        ..Default::default()
    }
}

fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Upstream's `generateAPIPodStatus`: the pod's status from the runtime's view, the
/// waiting reasons of the last sync, and the status the kubelet computed last
/// (`cached`; else the API's). Conditions other writers own come from the API's.
pub fn api_status(
    pod: &Pod,
    rt: &RuntimePod,
    waiting: &HashMap<String, Waiting>,
    ctx: &StatusContext,
    cached: Option<&PodStatus>,
    now: Timestamp,
) -> PodStatus {
    let now = Time(now);
    let api = pod.status.clone().unwrap_or_default();
    let old = cached.cloned().unwrap_or_else(|| api.clone());
    let spec = pod.spec.as_ref();
    let inits: &[Container] = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let containers: &[Container] = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let old_of = |list: &Option<Vec<ContainerStatus>>, name: &str| {
        list.iter().flatten().find(|s| s.name == name).cloned()
    };
    let regular_created = containers.iter().any(|c| {
        rt.latest(&c.name).is_some_and(|s| {
            [cri::state::CREATED, cri::state::RUNNING, cri::state::EXITED].contains(&s.state)
        })
    });
    let status_of = |c: &Container, old: Option<ContainerStatus>, init: bool| {
        container_status(
            c,
            rt,
            &ContainerInputs {
                waiting: waiting.get(&c.name),
                runtime_name: &ctx.runtime_name,
                old: old.as_ref(),
                has_init: !inits.is_empty(),
                deleting: pod.metadata.deletion_timestamp.is_some(),
                init_done: init && !is_sidecar(c) && regular_created,
                probe: ctx.probes.get(&c.name),
            },
        )
    };
    let init_statuses: Vec<ContainerStatus> = inits
        .iter()
        .map(|c| {
            let mut s = status_of(c, old_of(&old.init_container_statuses, &c.name), true);
            // Regular init containers are ready once they succeeded; sidecars are
            // ready while running.
            if !is_sidecar(c) {
                s.ready = s
                    .state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0);
            }
            s
        })
        .collect();
    let statuses: Vec<ContainerStatus> = containers
        .iter()
        .map(|c| status_of(c, old_of(&old.container_statuses, &c.name), false))
        .collect();
    // A regular container of the current sandbox has started.
    let sandbox_created = rt.sandboxes.first().map_or(0, |s| s.created_at);
    let active_started = containers.iter().any(|c| {
        rt.latest(&c.name)
            .is_some_and(|s| s.created_at >= sandbox_created)
    });
    let mut phase = phase(pod, &init_statuses, &statuses, active_started).to_owned();
    // A terminal phase stays: the cached one, else the API's.
    if !is_terminal(Some(&phase)) {
        if is_terminal(old.phase.as_deref()) {
            phase = old.phase.clone().unwrap_or_default();
        } else if is_terminal(api.phase.as_deref()) {
            phase = api.phase.clone().unwrap_or_default();
        }
    }
    if is_terminal(api.phase.as_deref()) && api.phase.as_deref() != Some(phase.as_str()) {
        phase = api.phase.clone().unwrap_or_default();
    }
    // The reason and message go with the phase.
    let (reason, message) = if old.phase.as_deref() == Some(phase.as_str()) {
        (
            old.reason
                .clone()
                .filter(|r| !r.is_empty())
                .or(api.reason.clone()),
            old.message
                .clone()
                .filter(|m| !m.is_empty())
                .or(api.message.clone()),
        )
    } else {
        (None, None)
    };

    let api_conditions = api.conditions.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    // Conditions other writers own stay; the kubelet's follow, as upstream orders
    // them.
    let mut conditions: Vec<PodCondition> = api_conditions
        .iter()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    if let Some(dt) = old_conditions
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
    {
        match conditions.iter_mut().find(|c| c.type_ == dt.type_) {
            Some(c) => *c = dt.clone(),
            None => conditions.push(dt.clone()),
        }
    }
    let sandbox_ready = rt.ready_sandbox().is_some()
        && (!rt.pod_ips().is_empty() || spec.and_then(|s| s.host_network).unwrap_or(false));
    conditions.push(new_condition(
        "PodReadyToStartContainers",
        sandbox_ready,
        "",
        String::new(),
    ));
    let incomplete: Vec<&str> = inits
        .iter()
        .zip(&init_statuses)
        .filter(|(c, s)| {
            if is_sidecar(c) {
                !s.started.unwrap_or(false)
            } else {
                !s.ready
            }
        })
        .map(|(c, _)| c.name.as_str())
        .collect();
    let regular_started = statuses
        .iter()
        .any(|s| is_running(&s.state) || is_terminated(&s.state));
    conditions.push(if inits.is_empty() {
        new_condition("Initialized", true, "", String::new())
    } else if phase == "Succeeded" {
        new_condition("Initialized", true, "PodCompleted", String::new())
    } else if regular_started || incomplete.is_empty() {
        new_condition("Initialized", true, "", String::new())
    } else {
        new_condition(
            "Initialized",
            false,
            "ContainersNotInitialized",
            format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            ),
        )
    });
    let unready: Vec<&str> = inits
        .iter()
        .zip(&init_statuses)
        .filter(|(c, s)| is_sidecar(c) && !s.ready)
        .map(|(c, _)| c.name.as_str())
        .chain(
            containers
                .iter()
                .zip(&statuses)
                .filter(|(_, s)| !s.ready)
                .map(|(c, _)| c.name.as_str()),
        )
        .collect();
    let containers_ready = match phase.as_str() {
        "Succeeded" => new_condition("ContainersReady", false, "PodCompleted", String::new()),
        "Failed" => new_condition("ContainersReady", false, "PodFailed", String::new()),
        _ if !unready.is_empty() => new_condition(
            "ContainersReady",
            false,
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        ),
        _ => new_condition("ContainersReady", true, "", String::new()),
    };
    // Ready: ContainersReady, and every readiness gate's condition True.
    let ready = if containers_ready.status != "True" {
        PodCondition {
            type_: "Ready".into(),
            ..containers_ready.clone()
        }
    } else {
        let gates: Vec<String> = spec
            .and_then(|s| s.readiness_gates.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|g| {
                let t = g.condition_type.as_str();
                match conditions.iter().find(|c| c.type_ == t) {
                    None => Some(format!(
                        "corresponding condition of pod readiness gate \"{t}\" does not exist."
                    )),
                    Some(c) if c.status != "True" => Some(format!(
                        "the status of pod readiness gate \"{t}\" is not \"True\", but {}",
                        c.status
                    )),
                    Some(_) => None,
                }
            })
            .collect();
        if gates.is_empty() {
            new_condition("Ready", true, "", String::new())
        } else {
            new_condition("Ready", false, "ReadinessGatesNotReady", gates.join(", "))
        }
    };
    conditions.push(ready);
    conditions.push(containers_ready);
    conditions.push(new_condition("PodScheduled", true, "", String::new()));
    // A condition keeps its transition time while its status holds (upstream's
    // `updateLastTransitionTime`).
    for c in conditions.iter_mut() {
        if !KUBELET_CONDITIONS.contains(&c.type_.as_str()) && c.type_ != "DisruptionTarget" {
            continue;
        }
        c.last_transition_time = Some(
            old_conditions
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == c.status)
                .and_then(|o| o.last_transition_time.clone())
                .unwrap_or_else(|| now.clone()),
        );
    }
    let mut pod_ips: Vec<String> = rt.pod_ips();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        pod_ips = ctx.host_ips.clone();
    }
    if pod_ips.is_empty() {
        // Keep the last known IPs while the sandbox is gone (terminating pods).
        pod_ips = old.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    }
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: ctx.host_ips.first().cloned(),
        host_ips: (!ctx.host_ips.is_empty()).then(|| {
            ctx.host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old.start_time.clone().or(Some(now)),
        qos_class: Some(crate::kuberuntime::qos_class(pod).to_owned()),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        nominated_node_name: old.nominated_node_name.clone(),
        reason,
        message,
        ..Default::default()
    }
}

/// The strategic merge patch that turns `old` into `new`: `new`, with an explicit
/// null for every field `old` has and `new` lacks (a container's `waiting` once it
/// runs, a condition's `reason` once it holds), list items matched by their merge
/// keys (conditions by `type`, IPs by `ip`), as upstream's status manager diffs the
/// old and new status. Container statuses are atomic lists: sent whole.
pub fn merge_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn key(v: &Value) -> Option<(&'static str, &Value)> {
        ["type", "ip"]
            .into_iter()
            .find_map(|k| v.get(k).map(|x| (k, x)))
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in n {
                out.insert(k.clone(), merge_patch(o.get(k).unwrap_or(&Value::Null), v));
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        (Value::Array(o), Value::Array(n)) => Value::Array(
            n.iter()
                .map(|item| {
                    let matched =
                        key(item).and_then(|(k, want)| o.iter().find(|x| x.get(k) == Some(want)));
                    match matched {
                        Some(m) => merge_patch(m, item),
                        None => item.clone(),
                    }
                })
                .collect(),
        ),
        _ => new.clone(),
    }
}

/// Deletion with grace period 0 of the object with UID `uid` only: how the kubelet
/// removes a terminated pod and a mirror pod (never a same-named successor).
pub fn delete_now(uid: &str) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..Default::default()
    }
}

/// What the manager holds of one pod.
struct Entry {
    namespace: String,
    name: String,
    /// The status as the apiserver last had it from us (or as it was).
    last: serde_json::Value,
    status: PodStatus,
    /// Bumped on every change; the writer posts the latest.
    version: u64,
    posted: u64,
    /// Delete the pod (grace 0) once this status is posted.
    delete: bool,
    /// The UID the API knows the pod by: its own, or its mirror pod's for a static
    /// pod (`None` until the mirror exists: nothing is posted before).
    api_uid: Option<String>,
}

/// Writes pod statuses to the apiserver.
#[derive(Clone)]
pub struct Manager {
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
    wake: Arc<Notify>,
}

impl Default for Manager {
    fn default() -> Self {
        Manager {
            entries: Arc::default(),
            wake: Arc::new(Notify::new()),
        }
    }
}

impl Manager {
    /// The last status computed for `uid`.
    pub fn get(&self, uid: &str) -> Option<PodStatus> {
        self.entries.lock().get(uid).map(|e| e.status.clone())
    }

    /// Records `status` for `pod`; the writer posts it if it changed.
    pub fn set(&self, pod: &Pod, status: PodStatus) {
        let (name, ns, uid) = crate::kuberuntime::pod_ids(pod);
        let mut entries = self.entries.lock();
        let e = entries.entry(uid.to_owned()).or_insert_with(|| Entry {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            last: serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default(),
            status: PodStatus::default(),
            version: 0,
            posted: 0,
            delete: false,
            // Static pods are known to the API by their mirror pods' UIDs.
            api_uid: (!crate::static_pods::is_static(pod)).then(|| uid.to_owned()),
        });
        if e.version == 0 || e.status != status {
            e.status = status;
            e.version += 1;
            drop(entries);
            self.wake.notify_one();
        }
    }

    /// The API knows the (static) pod `uid` as `api_uid` (its mirror pod).
    pub fn set_api_uid(&self, uid: &str, api_uid: &str) {
        let mut entries = self.entries.lock();
        if let Some(e) = entries.get_mut(uid)
            && e.api_uid.as_deref() != Some(api_uid)
        {
            e.api_uid = Some(api_uid.to_owned());
            // The new mirror has none of the status: post it all again.
            e.last = serde_json::Value::Null;
            e.posted = 0;
            drop(entries);
            self.wake.notify_one();
        }
    }

    /// Deletes the pod from the API (grace 0, UID precondition) after its final
    /// status is posted: its containers are gone.
    pub fn terminated(&self, pod: &Pod) {
        let (_, _, uid) = crate::kuberuntime::pod_ids(pod);
        if let Some(e) = self.entries.lock().get_mut(uid) {
            e.delete = true;
            e.version += 1;
        }
        self.wake.notify_one();
    }

    /// Forgets a pod the kubelet no longer runs.
    pub fn forget(&self, uid: &str) {
        self.entries.lock().remove(uid);
    }

    /// Posts changed statuses until the process ends.
    pub async fn run(self, client: kube::Client) {
        loop {
            #[allow(clippy::type_complexity)]
            let due: Vec<(
                String,
                String,
                String,
                String,
                serde_json::Value,
                PodStatus,
                u64,
                bool,
            )> = self
                .entries
                .lock()
                .iter()
                .filter(|(_, e)| e.posted < e.version && e.api_uid.is_some())
                .map(|(uid, e)| {
                    (
                        uid.clone(),
                        e.api_uid.clone().unwrap_or_default(),
                        e.namespace.clone(),
                        e.name.clone(),
                        e.last.clone(),
                        e.status.clone(),
                        e.version,
                        e.delete,
                    )
                })
                .collect();
            if due.is_empty() {
                self.wake.notified().await;
                continue;
            }
            let mut failed = false;
            for (uid, api_uid, ns, name, last, status, version, delete) in due {
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let new = serde_json::to_value(&status).unwrap_or_default();
                let patch = serde_json::json!({"metadata": {"uid": api_uid}, "status": merge_patch(&last, &new)});
                let r = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await;
                let ok = match r {
                    Ok(_) => true,
                    Err(e) if client_base::errors::is_not_found(&e) => {
                        self.forget(&uid);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "Failed to update status for pod");
                        false
                    }
                };
                if ok && delete {
                    match api.delete(&name, &delete_now(&api_uid)).await {
                        Ok(_) => {
                            tracing::info!(pod = %format!("{ns}/{name}"), "Pod fully terminated and removed from etcd");
                            self.forget(&uid);
                            continue;
                        }
                        Err(e)
                            if client_base::errors::is_not_found(&e)
                                || client_base::errors::is_conflict(&e) =>
                        {
                            self.forget(&uid);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "Failed to delete status for pod");
                            failed = true;
                            continue;
                        }
                    }
                }
                if ok {
                    if let Some(e) = self.entries.lock().get_mut(&uid) {
                        e.posted = e.posted.max(version);
                        e.last = new;
                    }
                } else {
                    failed = true;
                }
            }
            if failed {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
