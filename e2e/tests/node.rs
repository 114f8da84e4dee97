//! Pods that really run: a kube-apiserver, kube-controller-manager and kube-scheduler
//! with one node (a network namespace with its own containerd 1.6 and a real
//! kubelet), images from the local registry, driven by the real kubectl. One
//! cluster for the whole binary, each test in its own namespace.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use e2e::{ApiServer, Component, Node, NodeEnv, have_kubectl};

const K: &str = "kubectl.1.33";
const NODE: &str = "e2e-node";

struct Cluster {
    api: ApiServer,
    _kcm: Component,
    _sched: Component,
    node: Node,
    /// A second node, tainted `restart-test:NoSchedule`, whose kubelet the restart
    /// test kills (the other tests' pods never land there).
    restart: Mutex<Node>,
    _env: NodeEnv,
}

/// The shared cluster, or `None` where nodes cannot run (not root, no containerd).
fn cluster() -> Option<&'static Cluster> {
    static C: OnceLock<Option<Cluster>> = OnceLock::new();
    C.get_or_init(|| {
        if !have_kubectl() {
            return None;
        }
        let env = NodeEnv::start("10.98", "kte2e")?;
        let mut flags = env.apiserver_flags();
        flags.push("--enable-admission-plugins=ServiceAccount".into());
        let api = ApiServer::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
        let ca = api.dir.path().join("pki/ca.crt").display().to_string();
        let kcm = Component::start(
            &api,
            "kcm",
            &["--leader-elect=false", &format!("--root-ca-file={ca}")],
        );
        let sched = Component::scheduler(&api, "scheduler", &["--leader-elect=false"]);
        // What kubeadm binds: the apiserver's kubelet client may use the kubelet API.
        api.ok(
            K,
            &[
                "create",
                "clusterrolebinding",
                "kube-apiserver-kubelet-client",
                "--clusterrole=system:kubelet-api-admin",
                "--user=kube-apiserver-kubelet-client",
            ],
        );
        let node = Node::start(
            &env,
            &api,
            NODE,
            101,
            "syncFrequency: 5s\nfileCheckFrequency: 1s\n",
        );
        let restart = Node::start(
            &env,
            &api,
            "e2e-restart",
            102,
            "registerWithTaints: [{key: restart-test, effect: NoSchedule}]\n",
        );
        node.wait_ready(&api, Duration::from_secs(90));
        restart.wait_ready(&api, Duration::from_secs(90));
        Some(Cluster {
            api,
            _kcm: kcm,
            _sched: sched,
            node,
            restart: Mutex::new(restart),
            _env: env,
        })
    })
    .as_ref()
}

fn ns(c: &Cluster, name: &str) {
    c.api.ok(K, &["create", "namespace", name]);
    // Pods need the namespace's default ServiceAccount (the controller manager's).
    let out = c.api.kubectl(
        K,
        &[
            "wait",
            "--for=create",
            "-n",
            name,
            "serviceaccount/default",
            "--timeout=60s",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kubelet_log(c: &Cluster) -> String {
    c.node.log()
}

/// `kubectl wait -n ns <what> --for=<cond>`, with the pod and the kubelet's log on
/// failure.
fn wait(c: &Cluster, ns: &str, what: &str, cond: &str) {
    let out = c.api.kubectl(
        K,
        &[
            "wait",
            "-n",
            ns,
            what,
            &format!("--for={cond}"),
            "--timeout=90s",
        ],
    );
    assert!(
        out.status.success(),
        "{what} never met {cond}: {}\n{}\nkubelet log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&c.api.kubectl(K, &["describe", "-n", ns, what]).stdout),
        kubelet_log(c)
    );
}

fn apply(c: &Cluster, yaml: &str) {
    c.api.ok_stdin(K, &["apply", "-f", "-"], Some(yaml));
}

fn jsonpath(c: &Cluster, ns: &str, what: &str, path: &str) -> String {
    c.api.ok(
        K,
        &["get", "-n", ns, what, "-o", &format!("jsonpath={path}")],
    )
}

#[test]
fn node_registers_ready_with_its_lease_and_info() {
    let Some(c) = cluster() else { return };
    let node = format!("node/{NODE}");
    assert!(
        jsonpath(c, "", &node, "{.status.nodeInfo.containerRuntimeVersion}")
            .starts_with("containerd://1.6")
    );
    assert_eq!(
        jsonpath(c, "", &node, "{.status.nodeInfo.kubeletVersion}"),
        "v1.33.0"
    );
    assert_eq!(
        jsonpath(
            c,
            "",
            &node,
            "{.status.addresses[?(@.type==\"InternalIP\")].address}"
        ),
        "10.98.0.111"
    );
    assert_eq!(
        jsonpath(c, "", &node, "{.metadata.labels.kubernetes\\.io/hostname}"),
        NODE
    );
    assert!(!jsonpath(c, "", &node, "{.status.allocatable.cpu}").is_empty());
    assert_eq!(
        jsonpath(
            c,
            "",
            &node,
            "{.status.conditions[?(@.type==\"Ready\")].reason}"
        ),
        "KubeletReady"
    );
    assert_eq!(
        jsonpath(
            c,
            "kube-node-lease",
            &format!("lease/{NODE}"),
            "{.spec.holderIdentity}"
        ),
        NODE
    );
    // kubectl describe node shows the upstream sections.
    let d = c.api.ok(K, &["describe", "node", NODE]);
    for section in [
        "Conditions:",
        "Addresses:",
        "Capacity:",
        "Allocatable:",
        "System Info:",
        "Container Runtime Version:  containerd://",
    ] {
        assert!(d.contains(section), "{section} missing from:\n{d}");
    }
}

#[test]
fn busybox_runs_logs_execs_and_port_forwards() {
    let Some(c) = cluster() else { return };
    ns(c, "run");
    c.api.ok(
        K,
        &["run", "-n", "run", "hello", "--image=busybox", "--", "sh", "-c",
          "echo hi from $HOSTNAME; mkdir -p /www; echo served > /www/index.html; httpd -f -p 8080 -h /www"],
    );
    wait(c, "run", "pod/hello", "condition=Ready");
    assert_eq!(
        c.api.ok(K, &["logs", "-n", "run", "hello"]),
        "hi from hello\n"
    );
    // exec, with and without stdin.
    assert_eq!(
        c.api.ok(
            K,
            &[
                "exec",
                "-n",
                "run",
                "hello",
                "--",
                "sh",
                "-c",
                "echo out; cat /etc/hostname"
            ]
        ),
        "out\nhello\n"
    );
    assert_eq!(
        c.api.ok_stdin(
            K,
            &["exec", "-i", "-n", "run", "hello", "--", "sh"],
            Some("echo from-stdin\n")
        ),
        "from-stdin\n"
    );
    // Older kubectls (SPDY exec, older log and port-forward clients) too.
    for k in e2e::installed_kubectls() {
        assert_eq!(
            c.api.ok(k, &["logs", "-n", "run", "hello"]),
            "hi from hello\n",
            "{k}"
        );
        assert_eq!(
            c.api.ok_stdin(
                k,
                &["exec", "-i", "-n", "run", "hello", "--", "cat"],
                Some("echo via {k}\n")
            ),
            "echo via {k}\n",
            "{k}"
        );
    }
    // The service account token and the kubelet-managed /etc/hosts.
    let files = c.api.ok(
        K,
        &[
            "exec",
            "-n",
            "run",
            "hello",
            "--",
            "ls",
            "/var/run/secrets/kubernetes.io/serviceaccount",
        ],
    );
    assert_eq!(files, "ca.crt\nnamespace\ntoken\n");
    let hosts = c.api.ok(
        K,
        &["exec", "-n", "run", "hello", "--", "cat", "/etc/hosts"],
    );
    let ip = jsonpath(c, "run", "pod/hello", "{.status.podIP}");
    assert!(ip.starts_with("10.244.101."), "pod IP {ip}");
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.")
            && hosts.contains(&format!("{ip}\thello")),
        "{hosts}"
    );
    // port-forward to the pod's httpd.
    let port = e2e::free_port();
    let mut pf = c.api.kubectl_spawn(
        K,
        &[
            "port-forward",
            "-n",
            "run",
            "pod/hello",
            &format!("{port}:8080"),
        ],
    );
    let body = (0..50)
        .find_map(|_| {
            let out = std::process::Command::new("curl")
                .args(["-sf", &format!("http://127.0.0.1:{port}/index.html")])
                .output()
                .ok()?;
            if out.status.success() {
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        })
        .expect("port-forward never answered");
    let _ = pf.kill();
    let _ = pf.wait();
    assert_eq!(body, "served\n");
    // Upstream's events, from the kubelet on the node.
    let events = c.api.ok(K, &["get", "events", "-n", "run", "--field-selector=involvedObject.name=hello", "-o", "jsonpath={range .items[*]}{.reason}|{.source.component}|{.source.host}|{.message}{\"\\n\"}{end}"]);
    for want in [
        "Pulling|kubelet|e2e-node|Pulling image \"busybox\"",
        "Created|kubelet|e2e-node|Created container: hello",
        "Started|kubelet|e2e-node|Started container hello",
    ] {
        assert!(events.contains(want), "{want} missing from:\n{events}");
    }
}

#[test]
fn init_containers_run_in_order_beside_a_sidecar_and_share_an_empty_dir() {
    let Some(c) = cluster() else { return };
    ns(c, "init");
    apply(
        c,
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ordered", "namespace": "init"},
  "spec": {"volumes": [{"name": "work", "emptyDir": {}}],
    "initContainers": [
      {"name": "first", "image": "busybox", "command": ["sh", "-c", "echo first >> /work/order"], "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
      {"name": "side", "image": "busybox", "restartPolicy": "Always", "command": ["sh", "-c", "echo side >> /work/order; sleep 1d"], "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
      {"name": "second", "image": "busybox", "command": ["sh", "-c", "echo second >> /work/order"], "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
    "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "cat /work/order; sleep 1d"], "volumeMounts": [{"name": "work", "mountPath": "/work"}]}]}}"#,
    );
    wait(c, "init", "pod/ordered", "condition=Ready");
    assert_eq!(
        c.api
            .ok(K, &["logs", "-n", "init", "ordered", "-c", "main"]),
        "first\nside\nsecond\n"
    );
    assert_eq!(
        jsonpath(
            c,
            "init",
            "pod/ordered",
            "{.status.initContainerStatuses[*].state.terminated.reason}"
        ),
        "Completed Completed"
    );
    assert_eq!(
        jsonpath(
            c,
            "init",
            "pod/ordered",
            "{.status.initContainerStatuses[?(@.name==\"side\")].ready}"
        ),
        "true"
    );
    // kubectl counts the sidecar among the ready containers.
    let row = c
        .api
        .ok(K, &["get", "-n", "init", "pod/ordered", "--no-headers"]);
    assert!(row.contains("2/2") && row.contains("Running"), "{row}");
}

#[test]
fn a_crashing_container_backs_off_and_a_finished_one_completes() {
    let Some(c) = cluster() else { return };
    ns(c, "crash");
    c.api.ok(
        K,
        &[
            "run",
            "-n",
            "crash",
            "crash",
            "--image=busybox",
            "--",
            "sh",
            "-c",
            "echo dying; exit 3",
        ],
    );
    c.api.ok(
        K,
        &[
            "run",
            "-n",
            "crash",
            "done",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "echo done",
        ],
    );
    c.api.ok(
        K,
        &[
            "run",
            "-n",
            "crash",
            "failed",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    wait(
        c,
        "crash",
        "pod/crash",
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}=CrashLoopBackOff",
    );
    assert_eq!(
        jsonpath(
            c,
            "crash",
            "pod/crash",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "3"
    );
    assert_eq!(
        jsonpath(
            c,
            "crash",
            "pod/crash",
            "{.status.containerStatuses[0].lastState.terminated.reason}"
        ),
        "Error"
    );
    assert_ne!(
        jsonpath(
            c,
            "crash",
            "pod/crash",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert_eq!(
        jsonpath(c, "crash", "pod/crash", "{.status.phase}"),
        "Running"
    );
    assert_eq!(
        c.api.ok(K, &["logs", "-n", "crash", "crash", "--previous"]),
        "dying\n"
    );
    let row = c
        .api
        .ok(K, &["get", "-n", "crash", "pod/crash", "--no-headers"]);
    assert!(row.contains("CrashLoopBackOff"), "{row}");
    wait(c, "crash", "pod/done", "jsonpath={.status.phase}=Succeeded");
    assert_eq!(c.api.ok(K, &["logs", "-n", "crash", "done"]), "done\n");
    assert!(
        c.api
            .ok(K, &["get", "-n", "crash", "pod/done", "--no-headers"])
            .contains("Completed")
    );
    wait(c, "crash", "pod/failed", "jsonpath={.status.phase}=Failed");
    assert_eq!(
        jsonpath(
            c,
            "crash",
            "pod/failed",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "7"
    );
}

#[test]
fn config_maps_and_secrets_reach_env_and_volumes_and_updates_propagate() {
    let Some(c) = cluster() else { return };
    ns(c, "cfg");
    c.api.ok(
        K,
        &[
            "create",
            "configmap",
            "-n",
            "cfg",
            "settings",
            "--from-literal=color=blue",
        ],
    );
    c.api.ok(
        K,
        &[
            "create",
            "secret",
            "generic",
            "-n",
            "cfg",
            "creds",
            "--from-literal=password=s3cret",
        ],
    );
    apply(
        c,
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader", "namespace": "cfg", "labels": {"app": "reader"}},
  "spec": {"volumes": [{"name": "settings", "configMap": {"name": "settings"}}, {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 256}},
                       {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}],
    "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1d"],
      "env": [{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
              {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
              {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
              {"name": "GREETING", "value": "$(COLOR) $(POD)"}],
      "volumeMounts": [{"name": "settings", "mountPath": "/settings"}, {"name": "creds", "mountPath": "/creds"}, {"name": "info", "mountPath": "/info"}]}]}}"#,
    );
    wait(c, "cfg", "pod/reader", "condition=Ready");
    let exec = |cmd: &str| {
        c.api
            .ok(K, &["exec", "-n", "cfg", "reader", "--", "sh", "-c", cmd])
    };
    assert_eq!(
        exec("echo $COLOR $PASSWORD $GREETING"),
        "blue s3cret blue reader\n"
    );
    assert_eq!(
        exec("cat /settings/color; cat /creds/password; echo; cat /info/labels"),
        "blues3cret\napp=\"reader\""
    );
    assert_eq!(exec("stat -L -c %a /creds/password"), "400\n");
    assert!(
        exec("grep -c ' /creds ' /proc/mounts").starts_with('1'),
        "secrets live on a tmpfs"
    );
    c.api.ok_stdin(
        K,
        &["apply", "-f", "-"],
        Some(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "cfg"}, "data": {"color": "green"}}"#),
    );
    // The kubelet rewrites the volume at its next sync (syncFrequency 5s here).
    let updated = (0..300).any(|_| {
        if exec("cat /settings/color") == "green" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(updated, "the configMap update never reached the volume");
    // A missing configMap: the container waits with upstream's reason and message.
    apply(
        c,
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "missing", "namespace": "cfg"},
  "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1d"],
      "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x"}}}]}]}}"#,
    );
    wait(
        c,
        "cfg",
        "pod/missing",
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}=CreateContainerConfigError",
    );
    assert_eq!(
        jsonpath(
            c,
            "cfg",
            "pod/missing",
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        "configmap \"nope\" not found"
    );
}

#[test]
fn a_missing_image_backs_off_and_graceful_deletion_waits_for_the_process() {
    let Some(c) = cluster() else { return };
    ns(c, "bad");
    c.api.ok(
        K,
        &[
            "run",
            "-n",
            "bad",
            "noimage",
            "--image=doesnotexist.example/nothing:1",
        ],
    );
    wait(
        c,
        "bad",
        "pod/noimage",
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}=ImagePullBackOff",
    );
    let events = c.api.ok(
        K,
        &[
            "get",
            "events",
            "-n",
            "bad",
            "-o",
            "jsonpath={range .items[*]}{.reason}:{.message}{\"\\n\"}{end}",
        ],
    );
    assert!(
        events.contains("Failed:Failed to pull image \"doesnotexist.example/nothing:1\""),
        "{events}"
    );
    assert!(
        events.contains("BackOff:Back-off pulling image \"doesnotexist.example/nothing:1\""),
        "{events}"
    );
    // A process that handles SIGTERM exits at once and the pod goes quickly; the
    // kubelet then deletes it (grace 0) once its containers stopped.
    c.api.ok(
        K,
        &[
            "run",
            "-n",
            "bad",
            "polite",
            "--image=busybox",
            "--",
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; while true; do sleep 1; done",
        ],
    );
    wait(c, "bad", "pod/polite", "condition=Ready");
    c.api
        .ok(K, &["delete", "-n", "bad", "pod/polite", "--wait=false"]);
    wait(c, "bad", "pod/polite", "delete");
}

#[test]
fn deployment_pods_run_and_survive_a_kubelet_restart() {
    let Some(c) = cluster() else { return };
    ns(c, "deploy");
    apply(
        c,
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "deploy"},
  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
    "template": {"metadata": {"labels": {"app": "web"}},
      "spec": {"nodeSelector": {"kubernetes.io/hostname": "e2e-restart"},
               "tolerations": [{"key": "restart-test", "operator": "Exists"}],
               "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1d"]}]}}}}"#,
    );
    let rollout = || {
        c.api.kubectl(
            K,
            &[
                "rollout",
                "status",
                "-n",
                "deploy",
                "deployment/web",
                "--timeout=90s",
            ],
        )
    };
    let out = rollout();
    let log = || c.restart.lock().map(|n| n.log()).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    let ids = || {
        jsonpath(
            c,
            "deploy",
            "pods",
            "{.items[*].status.containerStatuses[0].containerID}",
        )
    };
    let before = ids();
    {
        let mut node = c.restart.lock().expect("node");
        node.kill_kubelet();
        node.start_kubelet();
    }
    // The restarted kubelet finds its containers and keeps them: same IDs, no
    // restarts, and it serves their logs again.
    c.restart
        .lock()
        .expect("node")
        .wait_ready(&c.api, Duration::from_secs(60));
    let out = rollout();
    assert!(out.status.success(), "{}", log());
    assert_eq!(ids(), before, "the containers were not restarted");
    assert_eq!(
        jsonpath(
            c,
            "deploy",
            "pods",
            "{.items[*].status.containerStatuses[0].restartCount}"
        ),
        "0 0"
    );
    let pod = c.api.ok(K, &["get", "pods", "-n", "deploy", "-o", "name"]);
    let pod = pod.lines().next().expect("a pod");
    c.api.ok(K, &["exec", "-n", "deploy", pod, "--", "true"]);
}

#[test]
fn probes_gate_readiness_and_a_failing_liveness_probe_restarts_the_container() {
    let Some(c) = cluster() else { return };
    ns(c, "probes");
    apply(
        c,
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed", "namespace": "probes"},
  "spec": {"containers": [{"name": "c", "image": "busybox",
    "command": ["sh", "-c", "touch /alive; mkdir -p /www; (sleep 2; echo ok > /www/ready) & httpd -f -p 8080 -h /www"],
    "ports": [{"name": "http", "containerPort": 8080}],
    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
    "livenessProbe": {"exec": {"command": ["test", "-f", "/alive"]}, "periodSeconds": 1, "failureThreshold": 2}}]}}"#,
    );
    // Running but not ready until /ready exists.
    wait(
        c,
        "probes",
        "pod/probed",
        "jsonpath={.status.phase}=Running",
    );
    wait(c, "probes", "pod/probed", "condition=Ready");
    // The readiness probe fails on a 404: not ready, with upstream's event.
    c.api.ok(
        K,
        &["exec", "-n", "probes", "probed", "--", "rm", "/www/ready"],
    );
    wait(c, "probes", "pod/probed", "condition=Ready=false");
    assert_eq!(
        jsonpath(
            c,
            "probes",
            "pod/probed",
            "{.status.containerStatuses[0].ready}"
        ),
        "false"
    );
    // The liveness probe fails twice: the container is killed and restarted (and
    // its new instance is not ready until its readiness probe passes again).
    c.api
        .ok(K, &["exec", "-n", "probes", "probed", "--", "rm", "/alive"]);
    wait(
        c,
        "probes",
        "pod/probed",
        "jsonpath={.status.containerStatuses[0].restartCount}=1",
    );
    wait(c, "probes", "pod/probed", "condition=Ready");
    let events = c.api.ok(
        K,
        &[
            "get",
            "events",
            "-n",
            "probes",
            "-o",
            "jsonpath={range .items[*]}{.reason}:{.message}{\"\\n\"}{end}",
        ],
    );
    for want in [
        "Unhealthy:Readiness probe failed: HTTP probe failed with statuscode: 404",
        "Unhealthy:Liveness probe failed: ",
        "Killing:Container c failed liveness probe, will be restarted",
    ] {
        assert!(events.contains(want), "{want} missing from:\n{events}");
    }
}

#[test]
fn a_static_pod_runs_from_its_file_and_the_api_shows_its_mirror() {
    let Some(c) = cluster() else { return };
    ns(c, "static");
    let file = c.node.dir.join("manifests/web.yaml");
    let manifest = |msg: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: static\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'echo {msg}; sleep 1d']\n"
        )
    };
    std::fs::write(&file, manifest("v1")).expect("write manifest");
    let mirror = format!("pod/web-{NODE}");
    wait(c, "static", &mirror, "create");
    wait(c, "static", &mirror, "condition=Ready");
    let hash = jsonpath(
        c,
        "static",
        &mirror,
        "{.metadata.annotations.kubernetes\\.io/config\\.mirror}",
    );
    assert_eq!(
        hash.len(),
        32,
        "the mirror annotation holds the static pod's hash"
    );
    assert_eq!(
        jsonpath(
            c,
            "static",
            &mirror,
            "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"
        ),
        format!("Node/{NODE}")
    );
    assert_eq!(c.api.ok(K, &["logs", "-n", "static", &mirror]), "v1\n");
    // Deleting the mirror pod does not stop the static pod: the kubelet recreates it.
    let container = || {
        jsonpath(
            c,
            "static",
            &mirror,
            "{.status.containerStatuses[0].containerID}",
        )
    };
    let before = container();
    // `kubectl delete` waits for this object (by UID) to be gone.
    c.api.ok(K, &["delete", "-n", "static", &mirror]);
    wait(c, "static", &mirror, "create");
    wait(c, "static", &mirror, "condition=Ready");
    assert_eq!(container(), before, "the container kept running");
    // An edited file is a new pod: the old mirror is replaced, the new pod runs.
    std::fs::write(&file, manifest("v2")).expect("rewrite manifest");
    let replaced = (0..600).any(|_| {
        let h = c.api.kubectl(
            K,
            &[
                "get",
                "-n",
                "static",
                &mirror,
                "-o",
                "jsonpath={.metadata.annotations.kubernetes\\.io/config\\.mirror}",
            ],
        );
        let now = String::from_utf8_lossy(&h.stdout).into_owned();
        if h.status.success() && !now.is_empty() && now != hash {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(
        replaced,
        "the mirror pod was never replaced:\n{}",
        kubelet_log(c)
    );
    wait(c, "static", &mirror, "condition=Ready");
    assert_eq!(c.api.ok(K, &["logs", "-n", "static", &mirror]), "v2\n");
    assert_ne!(container(), before);
    // A removed file: the pod stops and its mirror leaves the API.
    std::fs::remove_file(&file).expect("remove manifest");
    wait(c, "static", &mirror, "delete");
}
