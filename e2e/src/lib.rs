//! Whole-cluster tests for Keelson: its binaries started as processes, driven by the
//! real clients (kubectl 1.33/1.32/1.27, kube-rs, the Python `kubernetes` client).
//!
//! This library is the harness the tests in `e2e/tests/` share:
//! - [`binary`] finds (and if needed builds) a workspace binary such as
//!   `kube-apiserver`, next to the test executable in the target directory;
//! - [`ApiServer`] starts a fresh `kube-apiserver` with its embedded store in a
//!   temporary directory, with a token file and a kubeconfig, and stops it on drop;
//! - [`ControllerManager`] starts a `kube-controller-manager` against one;
//! - [`kubectl_path`] picks one of the installed kubectl versions.
//!
//! Tests skip (with a message) when a client they need is not installed, so that the
//! suite stays runnable on a developer machine; CI installs everything.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use component_base::bench::free_port;

/// The admin bearer token every [`ApiServer`] accepts.
pub const ADMIN_TOKEN: &str = "admintoken";

/// The kubectl versions the suite drives: the target version and two older ones
/// inside and beyond upstream's skew policy.
pub const KUBECTLS: [&str; 3] = ["kubectl.1.33", "kubectl.1.32", "kubectl.1.27"];

/// The path of workspace binary `name` in this test's target directory. Builds it
/// first (a no-op when it is fresh): `cargo test -p keelson-e2e` alone does not
/// build other packages' binaries.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", "--bins"]);
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bins failed");
    });
    dir.join(name)
}

/// Where kubectl `bin` (e.g. `kubectl.1.32`) is installed: next to the real file
/// behind `/usr/bin/kubectl`.
pub fn kubectl_path(bin: &str) -> Option<PathBuf> {
    let real = std::fs::canonicalize("/usr/bin/kubectl").ok()?;
    let p = real.parent()?.join(bin);
    p.exists().then_some(p)
}

/// The versions of [`KUBECTLS`] that are installed here.
pub fn installed_kubectls() -> Vec<&'static str> {
    KUBECTLS
        .into_iter()
        .filter(|b| kubectl_path(b).is_some())
        .collect()
}

/// Whether kubectl 1.33 is installed; prints why a test skips when it is not.
pub fn have_kubectl() -> bool {
    if kubectl_path("kubectl.1.33").is_none() {
        eprintln!("skipping: kubectl.1.33 not installed next to /usr/bin/kubectl");
        return false;
    }
    true
}

/// A `kube-apiserver` with its embedded store, in a temporary directory.
pub struct ApiServer {
    child: Child,
    extra: Vec<String>,
    /// The server's directory: data, certs, tokens, kubeconfig, log.
    pub dir: tempfile::TempDir,
    /// The secure port on 127.0.0.1.
    pub port: u16,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiServer {
    /// Starts a server and waits until `/readyz` answers.
    pub fn start() -> ApiServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra flags.
    pub fn start_with(extra: &[&str]) -> ApiServer {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n"),
        )
        .expect("write tokens");
        let port = free_port();
        std::fs::write(
            dir.path().join("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    insecure-skip-tls-verify: true\n    server: https://127.0.0.1:{port}\n  name: k\ncontexts:\n- context:\n    cluster: k\n    user: admin\n    namespace: default\n  name: k\ncurrent-context: k\nusers:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\n"
            ),
        )
        .expect("write kubeconfig");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = Self::spawn(dir.path(), port, &extra);
        let s = ApiServer {
            child,
            extra,
            dir,
            port,
        };
        s.wait_ready();
        s
    }

    fn spawn(dir: &Path, port: u16, extra: &[String]) -> Child {
        let path = |p: &str| dir.join(p).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("apiserver.log"))
            .expect("log file");
        Command::new(binary("kube-apiserver"))
            .args(["--data-dir", &path("data"), "--cert-dir", &path("certs")])
            .args(["--token-auth-file", &path("tokens.csv")])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--secure-port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kube-apiserver")
    }

    /// Stops the server (SIGKILL) and starts it again on the same data and port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.dir.path(), self.port, &self.extra);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.dir.path().join("certs/apiserver.crt").exists()
                && (kubectl_path("kubectl.1.33").is_none()
                    || self
                        .kubectl("kubectl.1.33", &["get", "--raw", "/readyz"])
                        .status
                        .success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "apiserver not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The kubeconfig that reaches this server as admin.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Writes `text` to `name` in the server's directory; returns the path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p.display().to_string()
    }

    /// Runs kubectl `bin` with `args`.
    pub fn kubectl(&self, bin: &str, args: &[&str]) -> Output {
        self.kubectl_stdin(bin, args, None)
    }

    /// Runs kubectl `bin` with `args`, feeding `stdin`.
    pub fn kubectl_stdin(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let path = kubectl_path(bin).unwrap_or_else(|| panic!("{bin} is not installed"));
        let mut cmd = Command::new(path);
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            if let Some(mut i) = child.stdin.take() {
                i.write_all(input.as_bytes()).expect("write kubectl stdin");
            }
        }
        child.wait_with_output().expect("wait for kubectl")
    }

    /// Starts kubectl `bin` with `args` in the background (for `-w`), stdout piped.
    pub fn kubectl_spawn(&self, bin: &str, args: &[&str]) -> Child {
        let path = kubectl_path(bin).unwrap_or_else(|| panic!("{bin} is not installed"));
        Command::new(path)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl")
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub fn ok(&self, bin: &str, args: &[&str]) -> String {
        self.ok_stdin(bin, args, None)
    }

    /// Runs kubectl with `stdin`, asserts success, returns stdout.
    pub fn ok_stdin(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(bin, args, stdin);
        assert!(
            out.status.success(),
            "{bin} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, asserts failure, returns stderr.
    pub fn fails(&self, bin: &str, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(bin, args, stdin);
        assert!(
            !out.status.success(),
            "{bin} {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// A `kube-controller-manager` against an [`ApiServer`], as the admin user, with its
/// secure port on 127.0.0.1. Stopped (SIGKILL) on drop.
pub struct ControllerManager {
    child: Option<Child>,
    log: PathBuf,
    /// The secure port (health and metrics) on 127.0.0.1.
    pub port: u16,
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        self.kill();
    }
}

impl ControllerManager {
    /// Starts one with `extra` flags; its log goes to `<apiserver dir>/<name>.log`.
    pub fn start(api: &ApiServer, name: &str, extra: &[&str]) -> ControllerManager {
        let port = free_port();
        let log = api.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary("kube-controller-manager"))
            .args(["--kubeconfig", &api.kubeconfig().display().to_string()])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start kube-controller-manager");
        ControllerManager {
            child: Some(child),
            log,
            port,
        }
    }

    /// Stops it at once (SIGKILL), as a crash would: the Lease is not released.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log contains `text`; panics with the log after `timeout`.
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?} in the controller-manager log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
