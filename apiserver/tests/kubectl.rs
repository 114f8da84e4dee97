//! The real kubectl (1.33, 1.32 and 1.27) against a freshly started kube-apiserver
//! with its embedded store. Skipped with a message when kubectl is not installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct ApiServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ApiServer {
    fn start() -> ApiServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokens.csv"),
            "admintoken,admin,admin-uid,\"system:masters\"\n",
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kube-apiserver"))
            .args(["--data-dir", &dir.path().join("data").display().to_string()])
            .args([
                "--cert-dir",
                &dir.path().join("certs").display().to_string(),
            ])
            .args([
                "--token-auth-file",
                &dir.path().join("tokens.csv").display().to_string(),
            ])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(
            dir.path().join("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    insecure-skip-tls-verify: true\n    server: https://127.0.0.1:{port}\n  name: k\ncontexts:\n- context:\n    cluster: k\n    user: admin\n  name: k\ncurrent-context: k\nusers:\n- name: admin\n  user:\n    token: admintoken\n"
            ),
        )
        .unwrap();
        let s = ApiServer { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = s.kubectl("kubectl.1.33", &["get", "--raw", "/readyz"]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "apiserver not ready: {}",
                std::fs::read_to_string(s.dir.path().join("apiserver.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    fn kubectl(&self, bin: &str, args: &[&str]) -> Output {
        self.kubectl_stdin(bin, args, None)
    }

    fn kubectl_stdin(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(kubectl_path(bin).unwrap());
        cmd.env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl, asserts success, returns stdout.
    fn ok(&self, bin: &str, args: &[&str]) -> String {
        let out = self.kubectl(bin, args);
        assert!(
            out.status.success(),
            "{bin} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, asserts failure, returns stderr.
    fn fails(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(bin, args, stdin);
        assert!(!out.status.success(), "{bin} {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn kubectl_path(bin: &str) -> Option<PathBuf> {
    let real = std::fs::canonicalize("/usr/bin/kubectl").ok()?;
    let p = real.parent()?.join(bin);
    p.exists().then_some(p)
}

fn have_kubectl() -> bool {
    if kubectl_path("kubectl.1.33").is_none() {
        eprintln!("skipping: kubectl.1.33 not installed next to /usr/bin/kubectl");
        return false;
    }
    true
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn kubectl_versions_discover_and_read() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    for bin in ["kubectl.1.33", "kubectl.1.32", "kubectl.1.27"] {
        if kubectl_path(bin).is_none() {
            continue;
        }
        let ns = s.ok(bin, &["get", "ns"]);
        for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(ns.contains(n), "{bin}: {ns}");
        }
        assert!(ns.starts_with("NAME"), "server-side table: {ns}");
        let res = s.ok(bin, &["api-resources"]);
        assert!(
            res.contains("deployments") && res.contains("deploy") && res.contains("apps/v1"),
            "{res}"
        );
        let vs = s.ok(bin, &["api-versions"]);
        assert!(
            vs.contains("autoscaling/v2") && vs.contains("rbac.authorization.k8s.io/v1"),
            "{vs}"
        );
        let svc = s.ok(bin, &["get", "svc", "kubernetes", "-o", "wide"]);
        assert!(
            svc.contains("10.0.0.1") && svc.contains("443/TCP") && svc.contains("SELECTOR"),
            "{svc}"
        );
    }
    let v = s.ok("kubectl.1.33", &["version", "-o", "json"]);
    assert!(v.contains("\"minor\": \"33\""), "{v}");
    let explain = s.ok("kubectl.1.33", &["explain", "pods.spec.restartPolicy"]);
    assert!(
        explain.contains("Restart policy for all containers"),
        "{explain}"
    );
    let info = s.ok("kubectl.1.33", &["cluster-info"]);
    assert!(info.contains(&format!("127.0.0.1:{}", s.port)), "{info}");
}

#[test]
fn kubectl_writes_and_errors() {
    if !have_kubectl() {
        return;
    }
    let s = ApiServer::start();
    let k = "kubectl.1.33";
    let f = write(s.dir.path(), "dep.yaml", DEPLOYMENT);
    assert!(
        s.ok(k, &["create", "-f", &f])
            .contains("deployment.apps/web created")
    );
    let err = s.fails(k, &["create", "-f", &f], None);
    assert!(
        err.contains("Error from server (AlreadyExists): error when creating")
            && err.contains("deployments.apps \"web\" already exists"),
        "{err}"
    );
    // Defaults are applied server-side.
    let y = s.ok(k, &["get", "deploy", "web", "-o", "yaml"]);
    for want in [
        "progressDeadlineSeconds: 600",
        "maxSurge: 25%",
        "imagePullPolicy: IfNotPresent",
        "restartPolicy: Always",
        "generation: 1",
    ] {
        assert!(y.contains(want), "missing {want}: {y}");
    }
    // Client-side apply of a change bumps the generation.
    let f2 = write(
        s.dir.path(),
        "dep2.yaml",
        &DEPLOYMENT.replace("1.27", "1.28"),
    );
    assert!(s.ok(k, &["apply", "-f", &f2]).contains("configured"));
    assert_eq!(
        s.ok(
            k,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}"
            ]
        ),
        "nginx:1.28 2"
    );
    assert!(s.ok(k, &["apply", "-f", &f2]).contains("unchanged"));
    // scale, label, annotate.
    s.ok(k, &["scale", "deploy", "web", "--replicas=5"]);
    s.ok(k, &["label", "deploy", "web", "tier=front"]);
    s.ok(k, &["annotate", "deploy", "web", "note=hi"]);
    let got = s.ok(
        k,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.labels.tier} {.metadata.annotations.note}",
        ],
    );
    assert_eq!(got, "5 front hi");
    let shown = s.ok(k, &["get", "deploy", "--show-labels"]);
    assert!(shown.contains("tier=front"), "{shown}");
    let cc = s.ok(
        k,
        &[
            "get",
            "deploy",
            "-o",
            "custom-columns=N:.metadata.name,R:.spec.replicas",
        ],
    );
    assert!(cc.contains("web") && cc.contains('5'), "{cc}");
    // Conflict from a stale resourceVersion.
    let err = s.fails(
        k,
        &[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"resourceVersion":"2"},"spec":{"replicas":1}}"#,
        ],
        None,
    );
    assert!(
        err.contains("Error from server (Conflict)")
            && err.contains("the object has been modified"),
        "{err}"
    );
    // Invalid objects: the upstream message, built from the Status causes.
    let err = s.fails(
        k,
        &["create", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - name: c\n",
        ),
    );
    assert!(
        err.contains("The Pod \"bad\" is invalid: spec.containers[0].image: Required value"),
        "{err}"
    );
    // Unknown fields are refused under kubectl's fieldValidation=Strict.
    let err = s.fails(k, &["create", "-f", "-"], Some("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: c, image: i, bogus: 1}]\n"));
    assert!(
        err.contains("strict decoding error: unknown field \"spec.containers[0].bogus\""),
        "{err}"
    );
    let err = s.fails(k, &["get", "pod", "nothere"], None);
    assert!(
        err.contains("Error from server (NotFound): pods \"nothere\" not found"),
        "{err}"
    );
    // Pods: create, selectors, graceful and immediate delete.
    s.ok(k, &["run", "p1", "--image=busybox", "--labels=app=a"]);
    s.ok(k, &["run", "p2", "--image=busybox:1.36", "--labels=app=b"]);
    let sel = s.ok(k, &["get", "pods", "-l", "app in (a)", "-o", "name"]);
    assert_eq!(sel.trim(), "pod/p1");
    let fs = s.ok(
        k,
        &[
            "get",
            "pods",
            "--field-selector",
            "metadata.name=p2",
            "-o",
            "name",
        ],
    );
    assert_eq!(fs.trim(), "pod/p2");
    let sorted = s.ok(
        k,
        &["get", "pods", "--sort-by=.metadata.name", "-o", "name"],
    );
    assert_eq!(sorted.trim(), "pod/p1\npod/p2");
    let all = s.ok(k, &["get", "all", "-A"]);
    assert!(
        all.contains("pod/p1")
            && all.contains("deployment.apps/web")
            && all.contains("service/kubernetes"),
        "{all}"
    );
    assert!(
        s.ok(k, &["delete", "pod", "p1", "--wait"])
            .contains("pod \"p1\" deleted")
    );
    s.fails(k, &["get", "pod", "p1"], None);
    // Namespaces: the system ones cannot be deleted.
    let err = s.fails(k, &["delete", "ns", "kube-system"], None);
    assert!(
        err.contains("Forbidden") && err.contains("this namespace may not be deleted"),
        "{err}"
    );
    // Creating in a namespace that does not exist.
    let err = s.fails(k, &["run", "p3", "--image=busybox", "-n", "nope"], None);
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");
    // Services get a ClusterIP from the range.
    s.ok(
        k,
        &["expose", "deploy", "web", "--port=80", "--type=NodePort"],
    );
    let ip = s.ok(
        k,
        &[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort} {.spec.ports[0].targetPort}",
        ],
    );
    let parts: Vec<&str> = ip.split(' ').collect();
    assert!(
        parts[0].starts_with("10.0.0.") && parts[0] != "10.0.0.1",
        "{ip}"
    );
    let np: u16 = parts[1].parse().unwrap();
    assert!((30000..=32767).contains(&np), "{ip}");
    assert_eq!(parts[2], "80");
    assert!(s.ok(k, &["delete", "deploy", "web"]).contains("deleted"));
    // A watch sees later changes.
    let mut w = Command::new(kubectl_path(k).unwrap())
        .env("KUBECONFIG", s.dir.path().join("kubeconfig"))
        .env("KUBECACHEDIR", s.dir.path().join("cache"))
        .args(["get", "pods", "-w", "--request-timeout=8s", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    s.ok(k, &["run", "watched", "--image=busybox"]);
    std::thread::sleep(Duration::from_secs(1));
    let _ = w.kill();
    let out = w.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pod/watched"), "{text}");
}
