//! Real nodes for the tests: [`NodeEnv`] brings up the local registry with the
//! cluster's images (`hack/images.sh`) and a node network of the test binary's own
//! (bridge and address range, so it never meets README command 1's); [`Node`] is one
//! node on it (`hack/node.sh`: a network namespace with its own containerd) with a
//! real `kubelet` started in that namespace. Everything is torn down on drop.
//!
//! Nodes need root (namespaces, mounts, cgroups) and containerd; [`NodeEnv::start`]
//! returns `None` (the tests skip) without them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::apiserver::ApiServer;
use crate::pki::Pki;
use crate::process::{binary, free_port, on_exit};

fn hack(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hack")
        .join(script)
}

/// The registry and node network of one test binary.
pub struct NodeEnv {
    /// State: registry storage, nodes, PKI.
    pub dir: tempfile::TempDir,
    /// The node network's first two octets (`10.98`).
    pub net: String,
    /// The host bridge's name.
    pub bridge: String,
    /// The registry's port.
    pub registry_port: u16,
    /// The certificates kubelets trust for the apiserver's client.
    pub pki: Pki,
}

impl Drop for NodeEnv {
    fn drop(&mut self) {
        let _ = self.script("node.sh", &["down-all"]).status();
        let _ = self.script("images.sh", &["stop"]).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl NodeEnv {
    /// Starts the registry (pushing the images) for a node network `net.0.0/24` on
    /// bridge `bridge`; `None` (with a message) where nodes cannot run.
    pub fn start(net: &str, bridge: &str) -> Option<NodeEnv> {
        if !is_root()
            || Command::new("containerd")
                .arg("--version")
                .output()
                .is_err()
        {
            eprintln!("skipping: nodes need root and containerd (CI installs it)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_dir = dir.path().join("pki");
        std::fs::create_dir_all(&pki_dir).expect("pki dir");
        let env = NodeEnv {
            pki: Pki::generate(&pki_dir),
            dir,
            net: net.to_owned(),
            bridge: bridge.to_owned(),
            registry_port: free_port(),
        };
        // However the test binary ends, the nodes and the registry go with it.
        on_exit(&format!(
            "export KEELSON_DATA={d} KEELSON_NET={n} KEELSON_BRIDGE={b} KEELSON_REGISTRY_PORT={p}; sleep 1; bash {node} down-all; bash {images} stop; rm -rf {d}",
            d = env.dir.path().display(),
            n = env.net,
            b = env.bridge,
            p = env.registry_port,
            node = hack("node.sh").display(),
            images = hack("images.sh").display(),
        ));
        let out = env
            .script("images.sh", &[])
            .env("KEELSON_PAUSE_BIN", binary("pause"))
            .output()
            .expect("run images.sh");
        assert!(
            out.status.success(),
            "images.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(env)
    }

    fn script(&self, name: &str, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(hack(name))
            .args(args)
            .env("KEELSON_DATA", self.dir.path())
            .env("KEELSON_NET", &self.net)
            .env("KEELSON_BRIDGE", &self.bridge)
            .env("KEELSON_REGISTRY_PORT", self.registry_port.to_string());
        c
    }

    /// The host's address on the node network (where nodes reach the apiserver).
    pub fn gateway(&self) -> String {
        format!("{}.0.1", self.net)
    }

    /// The apiserver flags for clusters with these nodes: listen where nodes reach
    /// it, and call kubelets by their InternalIP with a client certificate they
    /// trust.
    pub fn apiserver_flags(&self) -> Vec<String> {
        vec![
            "--bind-address=0.0.0.0".into(),
            format!(
                "--kubelet-client-certificate={}",
                self.pki.client.0.display()
            ),
            format!("--kubelet-client-key={}", self.pki.client.1.display()),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
        ]
    }
}

/// One node: its network namespace and containerd, and a kubelet in it.
pub struct Node {
    /// The node's name.
    pub name: String,
    /// Its address on the node network.
    pub ip: String,
    /// Its state directory (`<env>/nodes/<name>`).
    pub dir: PathBuf,
    args: Vec<String>,
    kubelet: Option<Child>,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_kubelet();
    }
}

impl Node {
    /// Brings up node `name` (index 1..200 on the env's network) and starts its
    /// kubelet against `api` with `config` appended to its KubeletConfiguration.
    pub fn start(env: &NodeEnv, api: &ApiServer, name: &str, index: u32, config: &str) -> Node {
        let out = env
            .script("node.sh", &["up", name, &index.to_string()])
            .output()
            .expect("run node.sh");
        assert!(
            out.status.success(),
            "node.sh up {name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = env.dir.path().join("nodes").join(name);
        let ip = format!("{}.0.{}", env.net, index + 10);
        let (crt, key) = api.client_cert(&format!("system:node:{name}"), Some("system:nodes"));
        let kubeconfig = dir.join("kubelet.conf");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    insecure-skip-tls-verify: true\n    server: https://{}:{}\n  name: k\ncontexts:\n- context:\n    cluster: k\n    user: u\n  name: k\ncurrent-context: k\nusers:\n- name: u\n  user:\n    client-certificate: {}\n    client-key: {}\n",
                env.gateway(),
                api.port,
                crt.display(),
                key.display()
            ),
        )
        .expect("write kubelet.conf");
        let cfg = dir.join("kubelet-config.yaml");
        std::fs::write(
            &cfg,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  x509:\n    clientCAFile: {ca}\nclusterDomain: cluster.local\ncgroupRoot: /keelson-{name}\npodLogsDir: {dir}/logs\nstaticPodPath: {dir}/manifests\ncontainerRuntimeEndpoint: unix://{dir}/containerd/containerd.sock\nhealthzPort: 0\n{config}",
                ca = env.pki.ca.display(),
                dir = dir.display(),
            ),
        )
        .expect("write kubelet config");
        std::fs::create_dir_all(dir.join("manifests")).expect("manifests dir");
        let args = vec![
            format!("--net=/run/netns/keelson-{name}"),
            binary("kubelet").display().to_string(),
            "--config".into(),
            cfg.display().to_string(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--root-dir".into(),
            dir.join("kubelet").display().to_string(),
            "--cert-dir".into(),
            dir.join("kubelet/pki").display().to_string(),
            "--hostname-override".into(),
            name.to_owned(),
            "--node-ip".into(),
            ip.clone(),
        ];
        let mut node = Node {
            name: name.to_owned(),
            ip,
            log: dir.join("kubelet.log"),
            dir,
            args,
            kubelet: None,
        };
        node.start_kubelet();
        node
    }

    /// Starts the kubelet (again).
    pub fn start_kubelet(&mut self) {
        assert!(self.kubelet.is_none(), "the kubelet already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("kubelet log");
        let child = Command::new("nsenter")
            .args(&self.args)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kubelet");
        on_exit(&format!("kill -9 {} 2>/dev/null", child.id()));
        self.kubelet = Some(child);
    }

    /// Stops the kubelet at once (SIGKILL); its pods keep running in containerd.
    pub fn kill_kubelet(&mut self) {
        if let Some(mut c) = self.kubelet.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The kubelet's process ID (of the `nsenter` that execs it), while it runs.
    pub fn kubelet_pid(&self) -> Option<u32> {
        self.kubelet.as_ref().map(Child::id)
    }

    /// The kubelet's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (with `kubectl wait`) until the Node exists and reports Ready; panics
    /// with the kubelet's log after `timeout`.
    pub fn wait_ready(&self, api: &ApiServer, timeout: Duration) {
        let t = format!("--timeout={}s", timeout.as_secs());
        let node = format!("node/{}", self.name);
        for cond in ["--for=create", "--for=condition=Ready"] {
            let out = api.kubectl("kubectl.1.33", &["wait", cond, &node, &t]);
            assert!(
                out.status.success(),
                "node {} never became Ready ({cond}): {}\nkubelet log:\n{}",
                self.name,
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
    }
}
