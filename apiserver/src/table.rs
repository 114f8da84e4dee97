//! Server-side printing: `meta.k8s.io/v1` Tables with upstream's columns for each
//! built-in kind (`pkg/printers/internalversion/printers.go`). Columns with priority 1
//! are shown by `kubectl get -o wide` only.

use serde_json::{Value, json};

use crate::meta;

type Cell = Value;

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn or_none(x: String) -> Cell {
    if x.is_empty() {
        json!("<none>")
    } else {
        json!(x)
    }
}

fn or_unset(x: String) -> Cell {
    if x.is_empty() {
        json!("<unset>")
    } else {
        json!(x)
    }
}

fn p<'a>(o: &'a Value, ptr: &str) -> Option<&'a Value> {
    o.pointer(ptr)
}

fn int(o: &Value, ptr: &str) -> i64 {
    p(o, ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// (name, type, format, description, priority)
type Col = (&'static str, &'static str, &'static str, i64);

const NAME: Col = ("Name", "string", "name", 0);
const AGE: Col = ("Age", "string", "", 0);

fn columns(kind: &str) -> Vec<Col> {
    match kind {
        "Pod" => vec![
            NAME,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            AGE,
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
            ("Nominated Node", "string", "", 1),
            ("Readiness Gates", "string", "", 1),
        ],
        "Service" => vec![
            NAME,
            ("Type", "string", "", 0),
            ("Cluster-IP", "string", "", 0),
            ("External-IP", "string", "", 0),
            ("Port(s)", "string", "", 0),
            AGE,
            ("Selector", "string", "", 1),
        ],
        "Deployment" => vec![
            NAME,
            ("Ready", "string", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        "ReplicaSet" | "ReplicationController" => vec![
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        "StatefulSet" => vec![
            NAME,
            ("Ready", "string", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
        ],
        "DaemonSet" => vec![
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            ("Node Selector", "string", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        "Job" => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Completions", "string", "", 0),
            ("Duration", "string", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        "CronJob" => vec![
            NAME,
            ("Schedule", "string", "", 0),
            ("Timezone", "string", "", 0),
            ("Suspend", "boolean", "", 0),
            ("Active", "integer", "", 0),
            ("Last Schedule", "string", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        "Node" => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Roles", "string", "", 0),
            AGE,
            ("Version", "string", "", 0),
            ("Internal-IP", "string", "", 1),
            ("External-IP", "string", "", 1),
            ("OS-Image", "string", "", 1),
            ("Kernel-Version", "string", "", 1),
            ("Container-Runtime", "string", "", 1),
        ],
        "Namespace" => vec![NAME, ("Status", "string", "", 0), AGE],
        "ConfigMap" => vec![NAME, ("Data", "integer", "", 0), AGE],
        "Secret" => vec![
            NAME,
            ("Type", "string", "", 0),
            ("Data", "integer", "", 0),
            AGE,
        ],
        "ServiceAccount" => vec![NAME, ("Secrets", "integer", "", 0), AGE],
        "Endpoints" => vec![NAME, ("Endpoints", "string", "", 0), AGE],
        "Event" => vec![
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Subobject", "string", "", 1),
            ("Source", "string", "", 1),
            ("Message", "string", "", 0),
            ("First Seen", "string", "", 1),
            ("Count", "string", "", 1),
            NAME,
        ],
        "PersistentVolumeClaim" => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Volume", "string", "", 0),
            ("Capacity", "string", "", 0),
            ("Access Modes", "string", "", 0),
            ("StorageClass", "string", "", 0),
            ("VolumeAttributesClass", "string", "", 0),
            AGE,
            ("VolumeMode", "string", "", 1),
        ],
        "Lease" => vec![NAME, ("Holder", "string", "", 0), AGE],
        "PriorityClass" => vec![
            NAME,
            ("Value", "integer", "", 0),
            ("Global-Default", "boolean", "", 0),
            AGE,
            ("PreemptionPolicy", "string", "", 0),
        ],
        "StorageClass" => vec![
            NAME,
            ("Provisioner", "string", "", 0),
            ("ReclaimPolicy", "string", "", 0),
            ("VolumeBindingMode", "string", "", 0),
            ("AllowVolumeExpansion", "string", "", 0),
            AGE,
        ],
        "PodDisruptionBudget" => vec![
            NAME,
            ("Min Available", "string", "", 0),
            ("Max Unavailable", "string", "", 0),
            ("Allowed Disruptions", "integer", "", 0),
            AGE,
        ],
        "Ingress" => vec![
            NAME,
            ("Class", "string", "", 0),
            ("Hosts", "string", "", 0),
            ("Address", "string", "", 0),
            ("Ports", "string", "", 0),
            AGE,
        ],
        "HorizontalPodAutoscaler" => vec![
            NAME,
            ("Reference", "string", "", 0),
            ("Targets", "string", "", 0),
            ("MinPods", "string", "", 0),
            ("MaxPods", "integer", "", 0),
            ("Replicas", "integer", "", 0),
            AGE,
        ],
        "EndpointSlice" => vec![
            NAME,
            ("AddressType", "string", "", 0),
            ("Ports", "string", "", 0),
            ("Endpoints", "string", "", 0),
            AGE,
        ],
        "PersistentVolume" => vec![
            NAME,
            ("Capacity", "string", "", 0),
            ("Access Modes", "string", "", 0),
            ("Reclaim Policy", "string", "", 0),
            ("Status", "string", "", 0),
            ("Claim", "string", "", 0),
            ("StorageClass", "string", "", 0),
            ("VolumeAttributesClass", "string", "", 0),
            ("Reason", "string", "", 0),
            AGE,
            ("VolumeMode", "string", "", 1),
        ],
        "ResourceQuota" => vec![
            NAME,
            AGE,
            ("Request", "string", "", 0),
            ("Limit", "string", "", 0),
        ],
        "RoleBinding" | "ClusterRoleBinding" => vec![
            NAME,
            ("Role", "string", "", 0),
            AGE,
            ("Users", "string", "", 1),
            ("Groups", "string", "", 1),
            ("ServiceAccounts", "string", "", 1),
        ],
        "NetworkPolicy" => vec![NAME, ("Pod-Selector", "string", "", 0), AGE],
        "ControllerRevision" => vec![
            NAME,
            ("Controller", "string", "", 0),
            ("Revision", "integer", "", 0),
            AGE,
        ],
        "PodTemplate" => vec![
            ("Template", "string", "name", 0),
            ("Containers", "string", "", 0),
            ("Images", "string", "", 0),
            ("Pod Labels", "string", "", 0),
        ],
        "RuntimeClass" => vec![NAME, ("Handler", "string", "", 0), AGE],
        "IngressClass" => vec![
            NAME,
            ("Controller", "string", "", 0),
            ("Parameters", "string", "", 0),
            AGE,
        ],
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
            vec![NAME, ("Webhooks", "integer", "", 0), AGE]
        }
        "CertificateSigningRequest" => vec![
            NAME,
            AGE,
            ("SignerName", "string", "", 0),
            ("Requestor", "string", "", 0),
            ("RequestedDuration", "string", "", 0),
            ("Condition", "string", "", 0),
        ],
        "CSINode" => vec![NAME, ("Drivers", "integer", "", 0), AGE],
        "VolumeAttachment" => vec![
            NAME,
            ("Attacher", "string", "", 0),
            ("PV", "string", "", 0),
            ("Node", "string", "", 0),
            ("Attached", "boolean", "", 0),
            AGE,
        ],
        "FlowSchema" => vec![
            NAME,
            ("PriorityLevel", "string", "", 0),
            ("MatchingPrecedence", "string", "", 0),
            ("DistinguisherMethod", "string", "", 0),
            AGE,
            ("MissingPL", "string", "", 0),
        ],
        "PriorityLevelConfiguration" => vec![
            NAME,
            ("Type", "string", "", 0),
            ("NominalConcurrencyShares", "string", "", 0),
            ("Queues", "string", "", 0),
            ("HandSize", "string", "", 0),
            ("QueueLengthLimit", "string", "", 0),
            AGE,
        ],
        "ComponentStatus" => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Message", "string", "", 0),
            ("Error", "string", "", 0),
        ],
        _ => vec![NAME, ("Created At", "date", "", 0)],
    }
}

fn containers(spec: Option<&Value>) -> (String, String) {
    let cs = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = cs.iter().map(|c| s(c.get("name"))).collect();
    let images: Vec<String> = cs.iter().map(|c| s(c.get("image"))).collect();
    (names.join(","), images.join(","))
}

fn selector(o: &Value) -> Cell {
    or_none(crate::handlers::label_selector_string(
        p(o, "/spec/selector").unwrap_or(&Value::Null),
    ))
}

/// The READY, STATUS and RESTARTS cells of a pod, as upstream's `printPod`: init
/// containers (`Init:1/2`, `Init:CrashLoopBackOff`, `Init:ExitCode:3`), sidecars
/// counted among the containers, the last container's waiting or terminated reason,
/// `NotReady`, `Terminating`, and restarts with how long ago the last one was.
fn pod_cells(o: &Value) -> (String, String, String) {
    let arr = |path: &str| {
        p(o, path)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let inits = arr("/spec/initContainers");
    let sidecar = |name: &str| {
        inits.iter().any(|c| {
            c.get("name").and_then(Value::as_str) == Some(name)
                && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
        })
    };
    let total = arr("/spec/containers").len()
        + inits
            .iter()
            .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last: Option<i64> = None;
    let mut sidecar_last: Option<i64> = None;
    let later = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    let finished = |c: &Value| {
        p(c, "/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(meta::parse_rfc3339)
    };
    let mut reason = s(p(o, "/status/reason"));
    if reason.is_empty() {
        reason = s(p(o, "/status/phase"));
    }
    let conditions = arr("/status/conditions");
    let condition = |t: &str| {
        conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
    };
    if condition("PodScheduled")
        .and_then(|c| c.get("reason"))
        .and_then(Value::as_str)
        == Some("SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let init_statuses = arr("/status/initContainerStatuses");
    let mut initializing = false;
    for (i, c) in init_statuses.iter().enumerate() {
        let name = s(c.get("name"));
        restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        last = later(last, finished(c));
        if sidecar(&name) {
            sidecar_restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            sidecar_last = later(sidecar_last, finished(c));
        }
        let term = p(c, "/state/terminated");
        let waiting = p(c, "/state/waiting/reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if term.and_then(|t| t.get("exitCode")).and_then(Value::as_i64) == Some(0) {
            continue;
        }
        if sidecar(&name) && c.get("started") == Some(&json!(true)) {
            if c.get("ready") == Some(&json!(true)) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = term {
            let r = s(t.get("reason"));
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if let Some(sig) = t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0) {
                format!("Init:Signal:{sig}")
            } else {
                format!(
                    "Init:ExitCode:{}",
                    t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                )
            };
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            reason = format!("Init:{waiting}");
        } else {
            reason = format!("Init:{i}/{}", inits.len());
        }
        initializing = true;
        break;
    }
    let initialized =
        condition("Initialized").and_then(|c| c.get("status")) == Some(&json!("True"));
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last = sidecar_last;
        let mut running = false;
        for c in arr("/status/containerStatuses").iter().rev() {
            restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            last = later(last, finished(c));
            let waiting = s(p(c, "/state/waiting/reason"));
            let term = p(c, "/state/terminated");
            if !waiting.is_empty() {
                reason = waiting;
            } else if let Some(t) = term {
                let r = s(t.get("reason"));
                reason = if !r.is_empty() {
                    r
                } else if let Some(sig) =
                    t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0)
                {
                    format!("Signal:{sig}")
                } else {
                    format!(
                        "ExitCode:{}",
                        t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                    )
                };
            } else if c.get("ready") == Some(&json!(true)) && p(c, "/state/running").is_some() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = if condition("Ready").and_then(|c| c.get("status")) == Some(&json!("True")) {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    let phase = s(p(o, "/status/phase"));
    if meta::field(o, "deletionTimestamp").is_some() {
        if p(o, "/status/reason").and_then(Value::as_str) == Some("NodeLost") {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let restarts = match last {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            meta::human_duration(meta::unix_now() - t)
        ),
        _ => restarts.to_string(),
    };
    (format!("{ready}/{total}"), reason, restarts)
}

fn row(kind: &str, o: &Value) -> Vec<Cell> {
    let name = json!(meta::name(o));
    let age = json!(meta::age(o));
    match kind {
        "Pod" => {
            let (ready, status, restarts) = pod_cells(o);
            vec![
                name,
                json!(ready),
                json!(status),
                json!(restarts),
                age,
                or_none(s(p(o, "/status/podIP"))),
                or_none(s(p(o, "/spec/nodeName"))),
                or_none(s(p(o, "/status/nominatedNodeName"))),
                json!("<none>"),
            ]
        }
        "Service" => {
            let ty = s(p(o, "/spec/type"));
            let ports = p(o, "/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ports: Vec<String> = ports
                .iter()
                .map(|pt| {
                    let np = pt.get("nodePort").and_then(Value::as_i64);
                    match np {
                        Some(np) => {
                            format!("{}:{}/{}", s(pt.get("port")), np, s(pt.get("protocol")))
                        }
                        None => format!("{}/{}", s(pt.get("port")), s(pt.get("protocol"))),
                    }
                })
                .collect();
            let external = match ty.as_str() {
                "ExternalName" => s(p(o, "/spec/externalName")),
                "LoadBalancer" => {
                    let ing: Vec<String> = p(o, "/status/loadBalancer/ingress")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .map(|i| s(i.get("ip").or(i.get("hostname"))))
                                .collect()
                        })
                        .unwrap_or_default();
                    if ing.is_empty() {
                        "<pending>".into()
                    } else {
                        ing.join(",")
                    }
                }
                _ => p(o, "/spec/externalIPs")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|v| s(Some(v))).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
            };
            let sel = p(o, "/spec/selector").and_then(Value::as_object).map(|m| {
                let mut v: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", s(Some(v))))
                    .collect();
                v.sort();
                v.join(",")
            });
            vec![
                name,
                json!(ty),
                or_none(s(p(o, "/spec/clusterIP"))),
                or_none(external),
                or_none(ports.join(",")),
                age,
                or_none(sel.unwrap_or_default()),
            ]
        }
        "Deployment" => {
            let (c, i) = containers(p(o, "/spec/template/spec"));
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(o, "/status/readyReplicas"),
                    int(o, "/spec/replicas")
                )),
                json!(int(o, "/status/updatedReplicas")),
                json!(int(o, "/status/availableReplicas")),
                age,
                json!(c),
                json!(i),
                selector(o),
            ]
        }
        "ReplicaSet" | "ReplicationController" => {
            let (c, i) = containers(p(o, "/spec/template/spec"));
            let sel = if kind == "ReplicationController" {
                or_none(
                    p(o, "/spec/selector")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| format!("{k}={}", s(Some(v))))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default(),
                )
            } else {
                selector(o)
            };
            vec![
                name,
                json!(int(o, "/spec/replicas")),
                json!(int(o, "/status/replicas")),
                json!(int(o, "/status/readyReplicas")),
                age,
                json!(c),
                json!(i),
                sel,
            ]
        }
        "StatefulSet" => {
            let (c, i) = containers(p(o, "/spec/template/spec"));
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(o, "/status/readyReplicas"),
                    int(o, "/spec/replicas")
                )),
                age,
                json!(c),
                json!(i),
            ]
        }
        "DaemonSet" => {
            let (c, i) = containers(p(o, "/spec/template/spec"));
            let ns = p(o, "/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", s(Some(v))))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(int(o, "/status/desiredNumberScheduled")),
                json!(int(o, "/status/currentNumberScheduled")),
                json!(int(o, "/status/numberReady")),
                json!(int(o, "/status/updatedNumberScheduled")),
                json!(int(o, "/status/numberAvailable")),
                or_none(ns),
                age,
                json!(c),
                json!(i),
                selector(o),
            ]
        }
        "Job" => {
            let (c, i) = containers(p(o, "/spec/template/spec"));
            let completions = p(o, "/spec/completions").and_then(Value::as_i64);
            let succeeded = int(o, "/status/succeeded");
            let comp = match completions {
                Some(n) => format!("{succeeded}/{n}"),
                None => format!("{succeeded}/1 of {}", int(o, "/spec/parallelism")),
            };
            let conds = p(o, "/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if meta::field(o, "deletionTimestamp").is_some() {
                "Terminating"
            } else if has("Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            let dur = match (
                p(o, "/status/startTime")
                    .and_then(Value::as_str)
                    .and_then(meta::parse_rfc3339),
                p(o, "/status/completionTime")
                    .and_then(Value::as_str)
                    .and_then(meta::parse_rfc3339),
            ) {
                (Some(s0), Some(e)) => meta::human_duration(e - s0),
                (Some(s0), None) => meta::human_duration(meta::unix_now() - s0),
                _ => String::new(),
            };
            vec![
                name,
                json!(status),
                json!(comp),
                json!(dur),
                age,
                json!(c),
                json!(i),
                selector(o),
            ]
        }
        "CronJob" => {
            let (c, i) = containers(p(o, "/spec/jobTemplate/spec/template/spec"));
            let last = p(o, "/status/lastScheduleTime")
                .and_then(Value::as_str)
                .and_then(meta::parse_rfc3339)
                .map(|t| meta::human_duration(meta::unix_now() - t))
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(s(p(o, "/spec/schedule"))),
                or_none(s(p(o, "/spec/timeZone"))),
                json!(
                    p(o, "/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                ),
                json!(
                    p(o, "/status/active")
                        .and_then(Value::as_array)
                        .map(Vec::len)
                        .unwrap_or(0)
                ),
                json!(last),
                age,
                json!(c),
                json!(i),
                selector(o),
            ]
        }
        "Node" => {
            let conds = p(o, "/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut status = match conds.iter().find(|c| c["type"] == "Ready") {
                Some(c) if c["status"] == "True" => "Ready".to_owned(),
                Some(_) => "NotReady".to_owned(),
                None => "Unknown".to_owned(),
            };
            if p(o, "/spec/unschedulable") == Some(&json!(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let mut roles: Vec<String> = crate::selectors::labels_of(o)
                .keys()
                .filter_map(|k| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_owned)
                })
                .collect();
            roles.sort();
            let addr = |t: &str| {
                p(o, "/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter()
                            .find(|x| x["type"] == t)
                            .map(|x| s(x.get("address")))
                    })
                    .unwrap_or_default()
            };
            vec![
                name,
                json!(status),
                or_none(roles.join(",")),
                age,
                json!(s(p(o, "/status/nodeInfo/kubeletVersion"))),
                or_none(addr("InternalIP")),
                or_none(addr("ExternalIP")),
                json!(s(p(o, "/status/nodeInfo/osImage"))),
                json!(s(p(o, "/status/nodeInfo/kernelVersion"))),
                json!(s(p(o, "/status/nodeInfo/containerRuntimeVersion"))),
            ]
        }
        "Namespace" => vec![name, json!(s(p(o, "/status/phase"))), age],
        "ConfigMap" => {
            let n = p(o, "/data")
                .and_then(Value::as_object)
                .map(|m| m.len())
                .unwrap_or(0)
                + p(o, "/binaryData")
                    .and_then(Value::as_object)
                    .map(|m| m.len())
                    .unwrap_or(0);
            vec![name, json!(n), age]
        }
        "Secret" => {
            let n = p(o, "/data")
                .and_then(Value::as_object)
                .map(|m| m.len())
                .unwrap_or(0);
            vec![name, json!(s(p(o, "/type"))), json!(n), age]
        }
        "ServiceAccount" => vec![
            name,
            json!(
                p(o, "/secrets")
                    .and_then(Value::as_array)
                    .map(Vec::len)
                    .unwrap_or(0)
            ),
            age,
        ],
        "Endpoints" => {
            let mut eps = Vec::new();
            for sub in p(o, "/subsets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let ports: Vec<String> = sub["ports"]
                    .as_array()
                    .map(|a| a.iter().map(|x| s(x.get("port"))).collect())
                    .unwrap_or_default();
                for a in sub["addresses"].as_array().cloned().unwrap_or_default() {
                    let ip = s(a.get("ip"));
                    if ports.is_empty() {
                        eps.push(ip);
                    } else {
                        for pt in &ports {
                            eps.push(format!("{ip}:{pt}"));
                        }
                    }
                }
            }
            let shown = if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![name, or_none(shown), age]
        }
        "Event" => {
            let last = p(o, "/lastTimestamp")
                .or(p(o, "/eventTime"))
                .and_then(Value::as_str)
                .and_then(meta::parse_rfc3339)
                .map(|t| meta::human_duration(meta::unix_now() - t))
                .unwrap_or_else(|| "<unknown>".into());
            let first = p(o, "/firstTimestamp")
                .and_then(Value::as_str)
                .and_then(meta::parse_rfc3339)
                .map(|t| meta::human_duration(meta::unix_now() - t))
                .unwrap_or_else(|| "<unknown>".into());
            let obj = format!(
                "{}/{}",
                s(p(o, "/involvedObject/kind")).to_lowercase(),
                s(p(o, "/involvedObject/name"))
            );
            let mut source = s(p(o, "/source/component"));
            if source.is_empty() {
                source = s(p(o, "/reportingComponent"));
            }
            let host = s(p(o, "/source/host"));
            if !host.is_empty() {
                source = format!("{source}, {host}");
            }
            vec![
                json!(last),
                json!(s(p(o, "/type"))),
                json!(s(p(o, "/reason"))),
                json!(obj),
                json!(s(p(o, "/involvedObject/fieldPath"))),
                json!(source),
                json!(s(p(o, "/message")).trim().to_owned()),
                json!(first),
                json!(int(o, "/count").to_string()),
                name,
            ]
        }
        "PersistentVolumeClaim" => vec![
            name,
            json!(s(p(o, "/status/phase"))),
            json!(s(p(o, "/spec/volumeName"))),
            json!(s(p(o, "/status/capacity/storage"))),
            json!(access_modes(p(o, "/status/accessModes"))),
            or_none(s(p(o, "/spec/storageClassName"))),
            or_none(s(p(o, "/spec/volumeAttributesClassName"))),
            age,
            json!(s(p(o, "/spec/volumeMode"))),
        ],
        "Lease" => vec![name, or_none(s(p(o, "/spec/holderIdentity"))), age],
        "PriorityClass" => vec![
            name,
            json!(int(o, "/value")),
            json!(
                p(o, "/globalDefault")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            age,
            or_none(s(p(o, "/preemptionPolicy"))),
        ],
        "StorageClass" => {
            let default = meta::field(o, "annotations").is_some()
                || o.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                    == Some(&json!("true"));
            let n = if default
                && o.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                    == Some(&json!("true"))
            {
                format!("{} (default)", meta::name(o))
            } else {
                meta::name(o).to_owned()
            };
            vec![
                json!(n),
                json!(s(p(o, "/provisioner"))),
                json!(s(p(o, "/reclaimPolicy"))),
                json!(s(p(o, "/volumeBindingMode"))),
                json!(
                    p(o, "/allowVolumeExpansion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                ),
                age,
            ]
        }
        "PodDisruptionBudget" => vec![
            name,
            json!(
                p(o, "/spec/minAvailable")
                    .map(|v| s(Some(v)))
                    .unwrap_or_else(|| "N/A".into())
            ),
            json!(
                p(o, "/spec/maxUnavailable")
                    .map(|v| s(Some(v)))
                    .unwrap_or_else(|| "N/A".into())
            ),
            json!(int(o, "/status/disruptionsAllowed")),
            age,
        ],
        "Ingress" => {
            let hosts: Vec<String> = p(o, "/spec/rules")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|r| s(r.get("host")))
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                or_none(s(p(o, "/spec/ingressClassName"))),
                json!(if hosts.is_empty() {
                    "*".to_owned()
                } else {
                    hosts.join(",")
                }),
                json!(""),
                json!(if p(o, "/spec/tls").is_some() {
                    "80, 443"
                } else {
                    "80"
                }),
                age,
            ]
        }
        "HorizontalPodAutoscaler" => vec![
            name,
            json!(format!(
                "{}/{}",
                s(p(o, "/spec/scaleTargetRef/kind")),
                s(p(o, "/spec/scaleTargetRef/name"))
            )),
            json!("<unknown>"),
            json!(
                p(o, "/spec/minReplicas")
                    .map(|v| s(Some(v)))
                    .unwrap_or_else(|| "<unset>".into())
            ),
            json!(int(o, "/spec/maxReplicas")),
            json!(int(o, "/status/currentReplicas")),
            age,
        ],
        "EndpointSlice" => {
            let ports: Vec<String> = p(o, "/ports")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|x| s(x.get("port"))).collect())
                .unwrap_or_default();
            let eps: Vec<String> = p(o, "/endpoints")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                        .map(|v| s(Some(&v)))
                        .collect()
                })
                .unwrap_or_default();
            vec![
                name,
                json!(s(p(o, "/addressType"))),
                or_none(ports.join(",")),
                or_none(eps.join(",")),
                age,
            ]
        }
        "PersistentVolume" => {
            let claim = match (
                s(p(o, "/spec/claimRef/namespace")),
                s(p(o, "/spec/claimRef/name")),
            ) {
                (_, n) if n.is_empty() => String::new(),
                (ns, n) => format!("{ns}/{n}"),
            };
            vec![
                name,
                json!(s(p(o, "/spec/capacity/storage"))),
                json!(access_modes(p(o, "/spec/accessModes"))),
                json!(s(p(o, "/spec/persistentVolumeReclaimPolicy"))),
                json!(if meta::field(o, "deletionTimestamp").is_some() {
                    "Terminating".to_owned()
                } else {
                    s(p(o, "/status/phase"))
                }),
                json!(claim),
                json!(s(p(o, "/spec/storageClassName"))),
                or_unset(s(p(o, "/spec/volumeAttributesClassName"))),
                json!(s(p(o, "/status/reason"))),
                age,
                or_unset(s(p(o, "/spec/volumeMode"))),
            ]
        }
        "ResourceQuota" => {
            // "resource: used/hard", requests and limits apart, sorted by name.
            let (mut req, mut lim) = (Vec::new(), Vec::new());
            if let Some(hard) = p(o, "/status/hard").and_then(Value::as_object) {
                let mut keys: Vec<&String> = hard.keys().collect();
                keys.sort();
                for k in keys {
                    let used = p(o, "/status/used").and_then(|u| u.get(k.as_str()));
                    let used = if used.is_some() { s(used) } else { "0".into() };
                    let cell = format!("{k}: {used}/{}", s(hard.get(k.as_str())));
                    if k.starts_with("limits.") {
                        lim.push(cell);
                    } else {
                        req.push(cell);
                    }
                }
            }
            vec![name, age, json!(req.join(", ")), json!(lim.join(", "))]
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let subjects = |kind: &str| -> String {
                p(o, "/subjects")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter(|x| x["kind"] == kind)
                            .map(|x| {
                                if kind == "ServiceAccount" {
                                    format!("{}/{}", s(x.get("namespace")), s(x.get("name")))
                                } else {
                                    s(x.get("name"))
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(p(o, "/roleRef/kind")),
                    s(p(o, "/roleRef/name"))
                )),
                age,
                json!(subjects("User")),
                json!(subjects("Group")),
                json!(subjects("ServiceAccount")),
            ]
        }
        "NetworkPolicy" => vec![
            name,
            or_none(crate::handlers::label_selector_string(
                p(o, "/spec/podSelector").unwrap_or(&Value::Null),
            )),
            age,
        ],
        "ControllerRevision" => {
            let owner = p(o, "/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|r| r["controller"] == json!(true)))
                .map(|r| {
                    let api = s(r.get("apiVersion"));
                    let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                    let kind = s(r.get("kind")).to_lowercase();
                    let kind = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{kind}/{}", s(r.get("name")))
                })
                .unwrap_or_default();
            vec![name, or_none(owner), json!(int(o, "/revision")), age]
        }
        "PodTemplate" => {
            let (names, images) = containers(p(o, "/template/spec"));
            let labels = p(o, "/template/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    let mut l: Vec<String> = m
                        .iter()
                        .map(|(k, v)| format!("{k}={}", s(Some(v))))
                        .collect();
                    l.sort();
                    l.join(",")
                })
                .unwrap_or_default();
            vec![name, json!(names), json!(images), or_none(labels)]
        }
        "RuntimeClass" => vec![name, json!(s(p(o, "/handler"))), age],
        "IngressClass" => {
            let params = match p(o, "/spec/parameters") {
                Some(pr) => {
                    let kind = match s(pr.get("apiGroup")) {
                        g if g.is_empty() => s(pr.get("kind")),
                        g => format!("{}.{g}", s(pr.get("kind"))),
                    };
                    format!("{kind}/{}", s(pr.get("name")))
                }
                None => "<none>".into(),
            };
            vec![name, json!(s(p(o, "/spec/controller"))), json!(params), age]
        }
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => vec![
            name,
            json!(
                p(o, "/webhooks")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            age,
        ],
        "CertificateSigningRequest" => {
            // Denied, else Approved, else Pending; then Failed and Issued appended.
            let has = |t: &str| {
                p(o, "/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|c| c["type"] == t))
            };
            let mut conds = vec![if has("Denied") {
                "Denied"
            } else if has("Approved") {
                "Approved"
            } else {
                "Pending"
            }];
            if has("Failed") {
                conds.push("Failed");
            }
            if p(o, "/status/certificate").is_some_and(|c| !s(Some(c)).is_empty()) {
                conds.push("Issued");
            }
            let duration = p(o, "/spec/expirationSeconds")
                .and_then(Value::as_i64)
                .map(meta::human_duration)
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                age,
                or_none(s(p(o, "/spec/signerName"))),
                json!(s(p(o, "/spec/username"))),
                json!(duration),
                json!(conds.join(",")),
            ]
        }
        "CSINode" => vec![
            name,
            json!(
                p(o, "/spec/drivers")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            age,
        ],
        "VolumeAttachment" => vec![
            name,
            json!(s(p(o, "/spec/attacher"))),
            json!(s(p(o, "/spec/source/persistentVolumeName"))),
            json!(s(p(o, "/spec/nodeName"))),
            json!(
                p(o, "/status/attached")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            age,
        ],
        "FlowSchema" => {
            let missing = p(o, "/status/conditions")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| c["type"] == "Dangling"))
                .map(|c| s(c.get("status")))
                .unwrap_or_else(|| "?".into());
            vec![
                name,
                json!(s(p(o, "/spec/priorityLevelConfiguration/name"))),
                json!(int(o, "/spec/matchingPrecedence").to_string()),
                json!(
                    p(o, "/spec/distinguisherMethod/type")
                        .map(|t| s(Some(t)))
                        .unwrap_or_else(|| "<none>".into())
                ),
                age,
                json!(missing),
            ]
        }
        "PriorityLevelConfiguration" => {
            let limited = p(o, "/spec/limited");
            let field = |ptr: &str| match limited.and_then(|l| l.pointer(ptr)) {
                Some(v) => s(Some(v)),
                None => "<none>".into(),
            };
            vec![
                name,
                json!(s(p(o, "/spec/type"))),
                json!(field("/nominalConcurrencyShares")),
                json!(field("/limitResponse/queuing/queues")),
                json!(field("/limitResponse/queuing/handSize")),
                json!(field("/limitResponse/queuing/queueLengthLimit")),
                age,
            ]
        }
        "ComponentStatus" => {
            let healthy = p(o, "/conditions")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| c["type"] == "Healthy"));
            let (status, msg, err) = match healthy {
                Some(c) if c["status"] == "True" => {
                    ("Healthy", s(c.get("message")), s(c.get("error")))
                }
                Some(c) => ("Unhealthy", s(c.get("message")), s(c.get("error"))),
                None => ("Unknown", String::new(), String::new()),
            };
            vec![name, json!(status), json!(msg), json!(err)]
        }
        _ => vec![
            name,
            json!(meta::field(o, "creationTimestamp").unwrap_or("")),
        ],
    }
}

/// `ReadWriteOnce,ReadOnlyMany` as kubectl prints it: `RWO,ROX`.
fn access_modes(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|m| match m.as_str() {
                    Some("ReadWriteOnce") => "RWO",
                    Some("ReadOnlyMany") => "ROX",
                    Some("ReadWriteMany") => "RWX",
                    Some("ReadWriteOncePod") => "RWOP",
                    _ => "",
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// What each row carries as its object (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// None.
    None,
    /// PartialObjectMetadata (the default).
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter.
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// A custom resource's columns: Name, then its CRD's printer columns.
fn custom_columns(info: &crate::crd::CustomInfo) -> Vec<Value> {
    let mut cols = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": column_description("Name"), "priority": 0})];
    cols.extend(info.columns.iter().map(|c| {
        json!({"name": c.name, "type": c.ty, "format": c.format, "description": c.description, "priority": c.priority})
    }));
    cols
}

/// A custom object's row; `date` columns print as ages, as upstream's CR table
/// convertor does.
fn custom_row(info: &crate::crd::CustomInfo, o: &Value) -> Vec<Value> {
    let mut cells = vec![json!(meta::name(o))];
    cells.extend(info.columns.iter().map(|c| {
        let v = crate::crd::cell(o, c);
        match (c.ty.as_str(), v.as_str()) {
            ("date", Some(t)) => json!(meta::since(t)),
            _ => v,
        }
    }));
    cells
}

/// Builds a Table of `objects` of `res`.
pub fn table(
    res: &crate::catalog::Resource,
    objects: &[Value],
    rv: Option<String>,
    cont: Option<String>,
    include: IncludeObject,
) -> Value {
    let kind = res.kind;
    let cols: Vec<Value> = match res.custom {
        Some(info) => custom_columns(info),
        None => columns(kind)
            .into_iter()
            .map(|(n, t, f, pr)| {
                json!({"name": n, "type": t, "format": f, "description": column_description(n), "priority": pr})
            })
            .collect(),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells = match res.custom {
                Some(info) => json!(custom_row(info, o)),
                None => json!(row(kind, o)),
            };
            let mut r = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Object => r["object"] = o.clone(),
                IncludeObject::Metadata => {
                    r["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
            }
            r
        })
        .collect();
    let mut md = serde_json::Map::new();
    if let Some(rv) = rv {
        md.insert("resourceVersion".into(), json!(rv));
    }
    if let Some(c) = cont {
        md.insert("continue".into(), json!(c));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": md,
        "columnDefinitions": cols,
        "rows": rows,
    })
}

fn column_description(name: &str) -> &'static str {
    match name {
        "Name" => {
            "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
        }
        "Age" | "Created At" => {
            "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in resource of `kind` (its first version in the catalog).
    fn res(kind: &str) -> &'static crate::catalog::Resource {
        crate::catalog::catalog()
            .all()
            .iter()
            .find(|r| r.kind == kind)
            .unwrap_or_else(|| panic!("no resource of kind {kind}"))
    }

    #[test]
    fn pod_row() {
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": meta::now()},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.1.0.2", "containerStatuses": [{"ready": true, "restartCount": 2, "state": {"running": {}}}]}});
        let t = table(
            res("Pod"),
            &[pod],
            Some("5".into()),
            None,
            IncludeObject::Metadata,
        );
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "1/1");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "2");
        assert_eq!(cells[6], "n1");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn pod_status_cells_as_upstream_print_pod() {
        let cells = |o: Value| {
            let t = table(res("Pod"), &[o], None, None, IncludeObject::None);
            let c = &t["rows"][0]["cells"];
            (
                c[1].as_str().unwrap().to_owned(),
                c[2].as_str().unwrap().to_owned(),
                c[3].as_str().unwrap().to_owned(),
            )
        };
        let ago = meta::rfc3339(meta::unix_now() - 30);
        // A sidecar counts among the containers once started.
        let sidecar = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i"}, {"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
              "initContainerStatuses": [{"name": "i", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                                        {"name": "s", "started": true, "ready": true, "state": {"running": {}}}],
              "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(cells(sidecar), ("2/2".into(), "Running".into(), "0".into()));
        let init = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending",
              "initContainerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                                        {"name": "b", "state": {"running": {}}}],
              "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        assert_eq!(cells(init).1, "Init:1/2");
        let init_crash = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "a"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending",
              "initContainerStatuses": [{"name": "a", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago}}}]}});
        assert_eq!(
            cells(init_crash),
            (
                "0/1".into(),
                "Init:CrashLoopBackOff".into(),
                "3 (30s ago)".into()
            )
        );
        let crash = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "restartCount": 2,
              "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 3, "finishedAt": ago}}}]}});
        assert_eq!(
            cells(crash),
            (
                "0/1".into(),
                "CrashLoopBackOff".into(),
                "2 (30s ago)".into()
            )
        );
        let exited = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}});
        assert_eq!(cells(exited).1, "Signal:9");
        let terminating = json!({"metadata": {"name": "p", "deletionTimestamp": ago}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(cells(terminating).1, "Terminating");
        let done = json!({"metadata": {"name": "p", "deletionTimestamp": ago}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(
            cells(done).1,
            "Completed",
            "a terminal pod is not Terminating"
        );
    }

    #[test]
    fn more_printers() {
        let cells = |kind: &str, o: Value| {
            let t = table(res(kind), &[o], None, None, IncludeObject::None);
            assert_eq!(
                t["columnDefinitions"].as_array().unwrap().len(),
                t["rows"][0]["cells"].as_array().unwrap().len(),
                "{kind}: one cell per column"
            );
            t["rows"][0]["cells"].clone()
        };
        let rb = cells(
            "RoleBinding",
            json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "Role", "name": "r"},
                "subjects": [{"kind": "User", "name": "bob"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]}),
        );
        assert_eq!(rb[1], "Role/r");
        assert_eq!(rb[3], "bob");
        assert_eq!(rb[5], "ns/sa");
        let q = cells(
            "ResourceQuota",
            json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "10", "limits.cpu": "2"}, "used": {"pods": "1"}}}),
        );
        assert_eq!(q[2], "pods: 1/10");
        assert_eq!(q[3], "limits.cpu: 0/2");
        let pv = cells(
            "PersistentVolume",
            json!({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "d", "name": "c"}}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(
            (
                pv[1].as_str(),
                pv[2].as_str(),
                pv[4].as_str(),
                pv[5].as_str()
            ),
            (Some("1Gi"), Some("RWO"), Some("Bound"), Some("d/c"))
        );
        let cr = cells(
            "ControllerRevision",
            json!({"metadata": {"name": "cr", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "controller": true}]}, "revision": 3}),
        );
        assert_eq!(cr[1], "daemonset.apps/ds");
        assert_eq!(cr[2], 3);
        for kind in [
            "NetworkPolicy",
            "PodTemplate",
            "RuntimeClass",
            "IngressClass",
            "ValidatingWebhookConfiguration",
            "CertificateSigningRequest",
            "CSINode",
            "VolumeAttachment",
            "FlowSchema",
            "PriorityLevelConfiguration",
            "ComponentStatus",
        ] {
            cells(kind, json!({"metadata": {"name": "x"}}));
        }
    }
}
