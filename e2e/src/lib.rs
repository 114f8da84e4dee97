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

/// A `kube-apiserver` with its embedded store, in a temporary directory, started as
/// a kubeadm cluster's is: `--client-ca-file` (a test CA in `pki/`),
/// `--authorization-mode=Node,RBAC`, and an admin kubeconfig with a client
/// certificate in `system:masters`. The ServiceAccount admission plugin is off
/// unless `--enable-admission-plugins` names it (pods need the controller manager's
/// `default` accounts under it). The token file holds [`ADMIN_TOKEN`], also in
/// `system:masters`.
pub struct ApiServer {
    child: Child,
    extra: Vec<String>,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
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
        let ca = {
            use rcgen::{
                BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            };
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, "kubernetes");
            CertifiedIssuer::self_signed(p, KeyPair::generate().expect("ca key")).expect("ca")
        };
        std::fs::create_dir_all(dir.path().join("pki")).expect("pki dir");
        std::fs::write(dir.path().join("pki/ca.crt"), ca.pem()).expect("write ca");
        let mut extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        if !extra.iter().any(|f| f.starts_with("--authorization-mode")) {
            extra.push("--authorization-mode=Node,RBAC".to_owned());
        }
        // Pods need their namespace's `default` ServiceAccount under the ServiceAccount
        // plugin, and only a controller manager creates those: tests without one run
        // without the plugin unless they ask for it.
        let opted_in = extra.iter().any(|f| {
            f.starts_with("--enable-admission-plugins") && f.contains("ServiceAccount")
                || f.starts_with("--disable-admission-plugins")
        });
        if !opted_in {
            extra.push("--disable-admission-plugins=ServiceAccount".to_owned());
        }
        let child = Self::spawn(dir.path(), port, &extra);
        let s = ApiServer {
            child,
            extra,
            ca,
            dir,
            port,
        };
        s.write_kubeconfig("kubeconfig", "kubernetes-admin", Some("system:masters"));
        s.wait_ready();
        s
    }

    /// Issues a client certificate (CN `user`, O `group`) from the server's client CA;
    /// returns the certificate and key paths.
    pub fn client_cert(&self, user: &str, group: Option<&str>) -> (PathBuf, PathBuf) {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, user);
        if let Some(g) = group {
            p.distinguished_name.push(DnType::OrganizationName, g);
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.ca).expect("sign");
        let stem = user.replace(':', "_");
        let crt = self.dir.path().join(format!("pki/{stem}.crt"));
        let k = self.dir.path().join(format!("pki/{stem}.key"));
        std::fs::write(&crt, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (crt, k)
    }

    fn kubeconfig_text(&self, user_block: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    insecure-skip-tls-verify: true\n    server: https://127.0.0.1:{}\n  name: k\ncontexts:\n- context:\n    cluster: k\n    user: u\n    namespace: default\n  name: k\ncurrent-context: k\nusers:\n- name: u\n  user:\n{user_block}",
            self.port
        )
    }

    /// Writes kubeconfig `name` for a client certificate user; returns its path.
    pub fn write_kubeconfig(&self, name: &str, user: &str, group: Option<&str>) -> PathBuf {
        let (crt, key) = self.client_cert(user, group);
        let p = self.dir.path().join(name);
        let block = format!(
            "    client-certificate: {}\n    client-key: {}\n",
            crt.display(),
            key.display()
        );
        std::fs::write(&p, self.kubeconfig_text(&block)).expect("write kubeconfig");
        p
    }

    /// Writes kubeconfig `name` for a bearer token; returns its path.
    pub fn write_token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        let text = self.kubeconfig_text(&format!("    token: {token}\n"));
        std::fs::write(&p, text).expect("write kubeconfig");
        p
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
            .args(["--client-ca-file", &path("pki/ca.crt")])
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

    /// Polls `bin get <what>` until it fails (the object is gone), for up to
    /// `timeout`; returns whether it went.
    pub fn wait_gone(&self, bin: &str, what: &[&str], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let args: Vec<&str> = std::iter::once("get").chain(what.iter().copied()).collect();
        while self.kubectl(bin, &args).status.success() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
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
        Self::start_as(api, &api.kubeconfig(), name, extra)
    }

    /// Starts one with `kubeconfig` (its own identity) instead of the admin's.
    pub fn start_as(
        api: &ApiServer,
        kubeconfig: &Path,
        name: &str,
        extra: &[&str],
    ) -> ControllerManager {
        let port = free_port();
        let log = api.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary("kube-controller-manager"))
            .args(["--kubeconfig", &kubeconfig.display().to_string()])
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

/// Certificates for a test cluster: a CA, a kubelet serving pair and the
/// apiserver's kubelet client pair, written as PEM files into a directory.
pub struct Pki {
    /// `ca.crt`.
    pub ca: PathBuf,
    /// `kubelet.crt`, `kubelet.key` (SANs 127.0.0.1 and localhost).
    pub kubelet: (PathBuf, PathBuf),
    /// `apiserver-kubelet-client.crt`, `.key` (CN kube-apiserver-kubelet-client).
    pub client: (PathBuf, PathBuf),
}

impl Pki {
    /// Generates the certificates into `dir`.
    pub fn generate(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "keelson-test-ca");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca");
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write pem");
            p
        };
        let leaf = |cn: &str, sans: Vec<String>, name: &str| {
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca).expect("sign");
            (
                write(&format!("{name}.crt"), cert.pem()),
                write(&format!("{name}.key"), key.serialize_pem()),
            )
        };
        Pki {
            ca: write("ca.crt", ca.pem()),
            kubelet: leaf(
                "node1",
                vec!["127.0.0.1".into(), "localhost".into()],
                "kubelet",
            ),
            client: leaf(
                "kube-apiserver-kubelet-client",
                Vec::new(),
                "apiserver-kubelet-client",
            ),
        }
    }

    /// The apiserver flags that make it reach kubelets with these certificates.
    pub fn apiserver_flags(&self) -> Vec<String> {
        vec![
            format!("--kubelet-client-certificate={}", self.client.0.display()),
            format!("--kubelet-client-key={}", self.client.1.display()),
            format!("--kubelet-certificate-authority={}", self.ca.display()),
        ]
    }
}

/// A kubelet-side test server for the apiserver's kubelet proxying: HTTPS with a
/// client certificate required (signed by the test CA), serving the kubelet's
/// `/containerLogs/<ns>/<pod>/<container>` (five numbered lines; `tailLines`,
/// `timestamps`; `follow` keeps sending) and echoing every other request as
/// `kubelet: <METHOD> <path?query>`. `/exec` upgrades to WebSocket
/// (`v5.channel.k8s.io` or `v4.channel.k8s.io`) and runs `echo <args>` (stdout on
/// channel 1) or `exit <code>`, ending with the Status on channel 3. Real kubelets
/// arrive with the kubelet crate.
pub struct TestKubelet {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The requests it received, as `METHOD path?query client-CN`.
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestKubelet {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TestKubelet {
    /// Starts one serving `pki`'s kubelet certificate and requiring client
    /// certificates from `pki`'s CA.
    pub fn start(pki: &Pki) -> TestKubelet {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = component_base::tls::server_config(
            &pki.kubelet.0,
            &pki.kubelet.1,
            Some(&pki.ca),
            true,
            &[b"http/1.1"],
        )
        .expect("kubelet tls");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let log = requests.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                tokio::pin!(stop_rx);
                loop {
                    let tcp = tokio::select! {
                        r = listener.accept() => match r { Ok((t, _)) => t, Err(_) => continue },
                        _ = &mut stop_rx => return,
                    };
                    let acceptor = acceptor.clone();
                    let log = log.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let cn = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| client_cn(c.as_ref()))
                            .unwrap_or_default();
                        let svc = hyper::service::service_fn(
                            move |mut req: http::Request<hyper::body::Incoming>| {
                                let log = log.clone();
                                let cn = cn.clone();
                                async move {
                                    let pq = req
                                        .uri()
                                        .path_and_query()
                                        .map(|p| p.to_string())
                                        .unwrap_or_default();
                                    // Upgrades are logged with their protocol.
                                    let upgrade = req
                                        .headers()
                                        .get(http::header::UPGRADE)
                                        .and_then(|v| v.to_str().ok())
                                        .map(|u| {
                                            let protocols = req
                                                .headers()
                                                .get("sec-websocket-protocol")
                                                .and_then(|v| v.to_str().ok())
                                                .map(|p| {
                                                    format!(" protocols={}", p.replace(' ', ""))
                                                })
                                                .unwrap_or_default();
                                            format!(" upgrade={u}{protocols}")
                                        })
                                        .unwrap_or_default();
                                    log.lock()
                                        .expect("log")
                                        .push(format!("{} {pq}{upgrade} {cn}", req.method()));
                                    if req.uri().path().starts_with("/portForward/")
                                        && req.headers().contains_key(http::header::UPGRADE)
                                    {
                                        return Ok::<_, std::convert::Infallible>(port_forward(
                                            &mut req,
                                        ));
                                    }
                                    if (req.uri().path().starts_with("/exec/")
                                        || req.uri().path().starts_with("/attach/"))
                                        && req.headers().contains_key(http::header::UPGRADE)
                                    {
                                        return Ok::<_, std::convert::Infallible>(websocket_exec(
                                            &mut req, &pq,
                                        ));
                                    }
                                    Ok::<_, std::convert::Infallible>(kubelet_reply(
                                        req.method().as_str(),
                                        &pq,
                                    ))
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                            .with_upgrades()
                            .await;
                    });
                }
            });
        });
        TestKubelet {
            port,
            requests,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Registers Node `name` on `api` with this kubelet's address (InternalIP
    /// 127.0.0.1) and port. Status is the status subresource's: it is written after
    /// the create, as a kubelet does.
    pub fn add_node(&self, api: &ApiServer, name: &str) {
        let k = "kubectl.1.33";
        api.ok_stdin(
            k,
            &["create", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n"
            )),
        );
        let status = format!(
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{}}}}}}}}}"#,
            self.port
        );
        api.ok(
            k,
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
    }
}

/// An apiserver with a [`TestKubelet`] behind Node `node1`: the apiserver presents a
/// client certificate from the same generated PKI, and verifies the kubelet with it.
pub struct KubeletCluster {
    /// The apiserver.
    pub api: ApiServer,
    /// The kubelet-side test server.
    pub kubelet: TestKubelet,
    _pki_dir: tempfile::TempDir,
}

impl KubeletCluster {
    /// Generates the PKI, starts both, and registers `node1`.
    pub fn start() -> KubeletCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::generate(dir.path());
        let kubelet = TestKubelet::start(&pki);
        let flags = pki.apiserver_flags();
        let api = ApiServer::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
        kubelet.add_node(&api, "node1");
        KubeletCluster {
            api,
            kubelet,
            _pki_dir: dir,
        }
    }
}

/// A kubelet's port-forward: SPDY/3.1 streams, either tunnelled in a WebSocket
/// (`SPDY/3.1+portforward.k8s.io`, what kubectl 1.30+ asks for) or over a plain
/// `SPDY/3.1` upgrade (the fallback, and kubectl before 1.30). Each pair of
/// `error` and `data` streams with one `requestid` is a connection to
/// `127.0.0.1:<port>`.
fn port_forward(req: &mut http::Request<hyper::body::Incoming>) -> http::Response<KubeletBody> {
    use futures::StreamExt;
    let empty = || http_body_util::StreamBody::new(futures::stream::empty().boxed());
    let header = |n: &str| header_list(req, n);
    let websocket = header("upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("websocket"));
    let mut r = http::Response::new(empty());
    if websocket {
        const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
        if !header("sec-websocket-protocol").iter().any(|p| p == TUNNEL) {
            *r.status_mut() = http::StatusCode::BAD_REQUEST;
            return r;
        }
        return accept_websocket(req, TUNNEL, |ws| async move {
            spdy_port_forward(websocket_bytes(ws)).await;
        });
    }
    if !header("upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("SPDY/3.1"))
        || !header("x-stream-protocol-version")
            .iter()
            .any(|p| p == "portforward.k8s.io")
    {
        *r.status_mut() = http::StatusCode::BAD_REQUEST;
        return r;
    }
    accept_spdy(req, "portforward.k8s.io", |io| async move {
        spdy_port_forward(io).await;
    })
}

/// A WebSocket as the byte stream it tunnels: binary messages in, binary messages out.
fn websocket_bytes<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(theirs);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => return,
                Message::Close(_) => return,
                _ => {}
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = sink.close().await;
                    return;
                }
                Ok(n) => {
                    if sink
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    ours
}

/// The kubelet's side of a SPDY port-forward session over `io`.
async fn spdy_port_forward<S>(io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use component_base::spdy::{self, FLAG_FIN, Frame, HeaderCodec};
    use std::collections::HashMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, wr) = tokio::io::split(io);
    let tx = frame_writer(wr);
    let mut codec = HeaderCodec::new();
    let mut reply_codec = HeaderCodec::new();
    // requestid -> (error stream, data stream, port)
    let mut pairs: HashMap<String, (Option<u32>, Option<u32>, String)> = HashMap::new();
    // data stream -> the connection's writer
    let mut conns: HashMap<u32, tokio::sync::mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    loop {
        let Ok(frame) = spdy::read_frame(&mut rd, &mut codec).await else {
            return;
        };
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let Ok(reply) = spdy::syn_reply(&mut reply_codec, stream, &[]) else {
                    return;
                };
                let _ = tx.send(reply).await;
                let id = spdy::header(&headers, "requestid").unwrap_or("").to_owned();
                let port = spdy::header(&headers, "port").unwrap_or("").to_owned();
                let entry = pairs.entry(id.clone()).or_insert((None, None, port));
                match spdy::header(&headers, "streamtype") {
                    Some("error") => entry.0 = Some(stream),
                    Some("data") => entry.1 = Some(stream),
                    _ => {}
                }
                if let (Some(err), Some(data), port) = entry.clone() {
                    pairs.remove(&id);
                    let (ctx, mut crx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(64);
                    conns.insert(data, ctx);
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await;
                        let tcp = match tcp {
                            Ok(t) => t,
                            Err(e) => {
                                let msg = format!("error forwarding port {port} to pod: {e}");
                                let _ = tx.send(spdy::data(err, 0, msg.as_bytes())).await;
                                let _ = tx.send(spdy::data(err, FLAG_FIN, &[])).await;
                                let _ = tx.send(spdy::data(data, FLAG_FIN, &[])).await;
                                return;
                            }
                        };
                        let (mut tr, mut tw) = tcp.into_split();
                        let up = tokio::spawn(async move {
                            while let Some(Some(chunk)) = crx.recv().await {
                                if tw.write_all(&chunk).await.is_err() {
                                    return;
                                }
                            }
                            let _ = tw.shutdown().await;
                        });
                        let mut buf = vec![0u8; 32 * 1024];
                        loop {
                            match tr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if tx.send(spdy::data(data, 0, &buf[..n])).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        let _ = tx.send(spdy::data(data, FLAG_FIN, &[])).await;
                        let _ = tx.send(spdy::data(err, FLAG_FIN, &[])).await;
                        up.abort();
                    });
                }
            }
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if let Some(c) = conns.get(&stream) {
                    if !data.is_empty() {
                        let _ = c.send(Some(data)).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        let _ = c.send(None).await;
                        conns.remove(&stream);
                    }
                }
            }
            Frame::Ping(id) => {
                let _ = tx.send(spdy::ping(id)).await;
            }
            Frame::GoAway { .. } => return,
            Frame::RstStream { stream, .. } => {
                conns.remove(&stream);
            }
            _ => {}
        }
    }
}

/// Input to an exec session's command: chunks of stdin, `None` when it closes.
type StdinRx = tokio::sync::mpsc::Receiver<Option<Vec<u8>>>;
/// Output of an exec session's command: (channel, bytes), 1 stdout and 2 stderr.
type OutputTx = tokio::sync::mpsc::Sender<(u8, Vec<u8>)>;

/// Runs an exec session's command, whatever carries it: `echo`, `cat` and `tar` for
/// real, `exit <code>`; returns the Status the kubelet reports (JSON).
async fn run_command(command: Vec<String>, stdin: Option<StdinRx>, out: OutputTx) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    match command.first().map(String::as_str) {
        Some("exit") => {
            let code = command.get(1).cloned().unwrap_or_else(|| "1".into());
            non_zero(&command, &code)
        }
        Some("echo" | "cat" | "tar") => {
            let spawned = tokio::process::Command::new(&command[0])
                .args(&command[1..])
                .stdin(if stdin.is_some() {
                    std::process::Stdio::piped()
                } else {
                    std::process::Stdio::null()
                })
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    return format!(r#"{{"metadata":{{}},"status":"Failure","message":"{e}"}}"#);
                }
            };
            let feeder = stdin.map(|mut rx| {
                let mut pipe = child.stdin.take();
                tokio::spawn(async move {
                    while let Some(Some(chunk)) = rx.recv().await {
                        if let Some(p) = pipe.as_mut()
                            && p.write_all(&chunk).await.is_err()
                        {
                            pipe = None;
                        }
                    }
                    // Closed: dropping the pipe ends the command's stdin.
                })
            });
            let pump = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>, ch: u8| {
                let out = out.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if out.send((ch, buf[..n].to_vec())).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                })
            };
            let o = pump(Box::new(child.stdout.take().expect("stdout")), 1);
            let e = pump(Box::new(child.stderr.take().expect("stderr")), 2);
            let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(1);
            let _ = o.await;
            let _ = e.await;
            if let Some(f) = feeder {
                f.abort();
            }
            if code == 0 {
                r#"{"metadata":{},"status":"Success"}"#.to_owned()
            } else {
                non_zero(&command, &code.to_string())
            }
        }
        _ => r#"{"metadata":{},"status":"Failure","message":"unknown command"}"#.to_owned(),
    }
}

/// Runs an exec session over the WebSocket `ws` (channel byte first in each binary
/// message; v5's close signal ends stdin).
async fn run_exec<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    command: Vec<String>,
    wants_stdin: bool,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut sink, mut incoming) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
    let writer = tokio::spawn(async move {
        while let Some((ch, bytes)) = out_rx.recv().await {
            let mut frame = Vec::with_capacity(bytes.len() + 1);
            frame.push(ch);
            frame.extend_from_slice(&bytes);
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(
                tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code:
                        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "".into(),
                },
            )))
            .await;
        let _ = sink.flush().await;
    });
    let stdin = wants_stdin.then(|| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(64);
        tokio::spawn(async move {
            while let Some(Ok(msg)) = incoming.next().await {
                match msg {
                    Message::Binary(b) => match b.first() {
                        Some(0) if tx.send(Some(b[1..].to_vec())).await.is_err() => return,
                        // v5: the close signal for stream 0 (stdin).
                        Some(255) if v5 && b.get(1) == Some(&0) => {
                            let _ = tx.send(None).await;
                        }
                        _ => {}
                    },
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = tx.send(None).await;
        });
        rx
    });
    let status = run_command(command, stdin, out_tx.clone()).await;
    let _ = out_tx.send((3, status.into_bytes())).await;
    drop(out_tx);
    let _ = writer.await;
}

/// One writer for a SPDY connection's frames, whichever task produces them; the
/// connection is shut down when every sender is gone.
fn frame_writer<W>(mut wr: W) -> tokio::sync::mpsc::Sender<Vec<u8>>
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if wr.write_all(&f).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    tx
}

/// Runs an exec session over SPDY (kubectl before 1.30): the client opens `error`,
/// `stdin`, `stdout` and `stderr` streams (as the query asks), the command runs once
/// they are all there, and the Status goes on `error` (v4.channel.k8s.io).
async fn spdy_exec<S>(io: S, command: Vec<String>, query: Vec<(String, String)>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use component_base::spdy::{self, FLAG_FIN, Frame, HeaderCodec};
    let want = |k: &str| {
        query
            .iter()
            .any(|(n, v)| n == k && (v == "true" || v == "1"))
    };
    let (mut rd, wr) = tokio::io::split(io);
    let tx = frame_writer(wr);
    let mut codec = HeaderCodec::new();
    let mut reply_codec = HeaderCodec::new();
    let (mut error, mut stdin_id, mut stdout, mut stderr) = (None, None, None, None);
    let mut resize = None;
    let (stdin_tx, stdin_rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(64);
    let mut stdin_rx = Some(stdin_rx);
    let mut started = false;
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let mut done_tx = Some(done_tx);
    loop {
        let frame = tokio::select! {
            f = spdy::read_frame(&mut rd, &mut codec) => match f {
                Ok(f) => f,
                Err(_) => return,
            },
            _ = &mut done_rx => return,
        };
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let Ok(reply) = spdy::syn_reply(&mut reply_codec, stream, &[]) else {
                    return;
                };
                let _ = tx.send(reply).await;
                match spdy::header(&headers, "streamtype") {
                    Some("error") => error = Some(stream),
                    Some("stdin") => stdin_id = Some(stream),
                    Some("stdout") => stdout = Some(stream),
                    Some("stderr") => stderr = Some(stream),
                    Some("resize") => resize = Some(stream),
                    _ => {}
                }
            }
            Frame::Data {
                stream,
                flags,
                data,
            } if Some(stream) == stdin_id => {
                if !data.is_empty() {
                    let _ = stdin_tx.send(Some(data)).await;
                }
                if flags & FLAG_FIN != 0 {
                    let _ = stdin_tx.send(None).await;
                }
            }
            Frame::Ping(id) => {
                let _ = tx.send(spdy::ping(id)).await;
            }
            Frame::GoAway { .. } => return,
            _ => {}
        }
        let ready = error.is_some()
            && (!want("stdin") || stdin_id.is_some())
            && (!want("stdout") || stdout.is_some())
            && (!want("stderr") || stderr.is_some())
            // With a terminal, the client also opens a resize stream (and no stderr).
            && (!want("tty") || resize.is_some());
        if ready && !started {
            started = true;
            let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
            let tx = tx.clone();
            let stdin = want("stdin").then(|| stdin_rx.take()).flatten();
            let command = command.clone();
            let done = done_tx.take();
            let (err_id, out_id, errout_id) = (error.unwrap_or(0), stdout, stderr);
            tokio::spawn(async move {
                let relay = {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Some((ch, bytes)) = out_rx.recv().await {
                            let id = if ch == 1 { out_id } else { errout_id };
                            if let Some(id) = id
                                && tx.send(spdy::data(id, 0, &bytes)).await.is_err()
                            {
                                return;
                            }
                        }
                    })
                };
                let status = run_command(command, stdin, out_tx).await;
                let _ = relay.await;
                let _ = tx.send(spdy::data(err_id, 0, status.as_bytes())).await;
                for id in [Some(err_id), out_id, errout_id].into_iter().flatten() {
                    let _ = tx.send(spdy::data(id, FLAG_FIN, &[])).await;
                }
                let _ = tx.send(spdy::go_away(0)).await;
                if let Some(d) = done {
                    let _ = d.send(());
                }
            });
        }
    }
}

/// The Status a kubelet sends for a command that exited with `code`.
fn non_zero(command: &[String], code: &str) -> String {
    format!(
        r#"{{"metadata":{{}},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [{}], exit code {code}","reason":"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}"#,
        command.join(" ")
    )
}

/// The subject CN of a DER certificate, found by its OID (2.5.4.3) followed by a
/// string; enough for the test certificates this harness makes.
fn client_cn(der: &[u8]) -> String {
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    der.windows(oid.len())
        .rposition(|w| w == oid)
        .and_then(|i| {
            let len = *der.get(i + oid.len() + 1)? as usize;
            let start = i + oid.len() + 2;
            der.get(start..start + len)
        })
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

type KubeletBody = http_body_util::StreamBody<
    futures::stream::BoxStream<
        'static,
        Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >,
>;

fn kubelet_reply(method: &str, path_and_query: &str) -> http::Response<KubeletBody> {
    use futures::StreamExt;
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
    };
    let frame = |s: String| Ok(hyper::body::Frame::data(bytes::Bytes::from(s)));
    let body: futures::stream::BoxStream<'static, _> = if path.starts_with("/containerLogs/") {
        let container = path.rsplit('/').next().unwrap_or("").to_owned();
        let stamp = param("timestamps").is_some();
        let line = move |i: usize| {
            let text = format!("{container} line {i}\n");
            if stamp {
                format!("2026-11-23T00:00:0{i}.000000000Z {text}")
            } else {
                text
            }
        };
        let tail: usize = param("tailLines").and_then(|t| t.parse().ok()).unwrap_or(5);
        let first: Vec<_> = (1..=5)
            .skip(5usize.saturating_sub(tail))
            .map(|i| frame(line(i)))
            .collect();
        if param("follow").is_some() {
            let more = futures::stream::unfold(6usize, move |i| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (i < 600).then(|| {
                    (
                        Ok(hyper::body::Frame::data(bytes::Bytes::from(format!(
                            "tick {i}\n"
                        )))),
                        i + 1,
                    )
                })
            });
            futures::stream::iter(first).chain(more).boxed()
        } else {
            futures::stream::iter(first).boxed()
        }
    } else {
        futures::stream::iter(vec![frame(format!("kubelet: {method} {path_and_query}"))]).boxed()
    };
    http::Response::new(http_body_util::StreamBody::new(body))
}

/// A kubelet's exec over WebSocket (`v5.channel.k8s.io` or `v4.channel.k8s.io`):
/// upgrade, then the command's stdin from channel 0 (closed by v5's close signal),
/// stdout on 1, stderr on 2, the Status on 3, and a close frame. Commands: `echo`,
/// `cat` and `tar` run for real (so `kubectl cp` works on the test's own files),
/// `exit <code>` fails with that code. `/attach` gets the same session: a `cat` of
/// stdin, or one line without it.
fn websocket_exec(
    req: &mut http::Request<hyper::body::Incoming>,
    path_and_query: &str,
) -> http::Response<KubeletBody> {
    use futures::StreamExt;
    let header_values = |name: &str| header_list(req, name);
    let empty = || http_body_util::StreamBody::new(futures::stream::empty().boxed());
    let query = path_and_query.split_once('?').map(|(_, q)| q).unwrap_or("");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let wants_stdin = pairs
        .iter()
        .any(|(k, v)| k == "stdin" && (v == "true" || v == "1"));
    // An attached "container" is a `cat` when given stdin, else it prints one line.
    let command: Vec<String> = if path_and_query.starts_with("/attach/") {
        let container = path_and_query
            .split('?')
            .next()
            .and_then(|p| p.rsplit('/').next())
            .unwrap_or("")
            .to_owned();
        if wants_stdin {
            vec!["cat".into()]
        } else {
            vec!["echo".into(), format!("attached to {container}")]
        }
    } else {
        pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect()
    };
    // SPDY (kubectl before 1.30): v4.channel.k8s.io negotiated in a header.
    if header_values("upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("SPDY/3.1"))
    {
        let mut r = http::Response::new(empty());
        if !header_values("x-stream-protocol-version")
            .iter()
            .any(|p| p == "v4.channel.k8s.io")
        {
            *r.status_mut() = http::StatusCode::FORBIDDEN;
            return r;
        }
        return accept_spdy(req, "v4.channel.k8s.io", |io| async move {
            spdy_exec(io, command, pairs).await;
        });
    }
    let offered = header_values("sec-websocket-protocol");
    let protocol = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p));
    let Some(protocol) = protocol else {
        let mut r = http::Response::new(empty());
        *r.status_mut() = http::StatusCode::BAD_REQUEST;
        return r;
    };
    let v5 = protocol == "v5.channel.k8s.io";
    accept_websocket(req, protocol, move |ws| async move {
        run_exec(ws, command, wants_stdin, v5).await;
    })
}

/// The values of a request header, comma lists split.
fn header_list(req: &http::Request<hyper::body::Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The upgraded connection a session runs on.
type Upgraded = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

/// Accepts a WebSocket upgrade speaking `protocol`: the 101 answer, and `session`
/// run on the socket once the connection is handed over.
fn accept_websocket<F, Fut>(
    req: &mut http::Request<hyper::body::Incoming>,
    protocol: &'static str,
    session: F,
) -> http::Response<KubeletBody>
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use base64::Engine;
    use futures::StreamExt;
    use sha1::Digest;
    let key = header_list(req, "sec-websocket-key")
        .first()
        .cloned()
        .unwrap_or_default();
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(io) = on_upgrade.await else {
            return;
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(io),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        session(ws).await;
    });
    let mut r = http::Response::new(http_body_util::StreamBody::new(
        futures::stream::empty().boxed(),
    ));
    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        "sec-websocket-accept",
        http::HeaderValue::from_str(&accept).expect("accept header"),
    );
    h.insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static(protocol),
    );
    r
}

/// Accepts a SPDY/3.1 upgrade whose `X-Stream-Protocol-Version` is `version`: the 101
/// answer, and `session` run on the connection once it is handed over.
fn accept_spdy<F, Fut>(
    req: &mut http::Request<hyper::body::Incoming>,
    version: &'static str,
    session: F,
) -> http::Response<KubeletBody>
where
    F: FnOnce(Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use futures::StreamExt;
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(io) = on_upgrade.await {
            session(hyper_util::rt::TokioIo::new(io)).await;
        }
    });
    let mut r = http::Response::new(http_body_util::StreamBody::new(
        futures::stream::empty().boxed(),
    ));
    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("SPDY/3.1"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        "x-stream-protocol-version",
        http::HeaderValue::from_static(version),
    );
    r
}

/// Opens a WebSocket to the apiserver at `path` (as the admin, offering `protocol`),
/// sends a Ping and returns the payload of the Pong that comes back: through the
/// apiserver's splice, from whatever answers at the other end.
pub async fn websocket_ping(port: u16, path: &str, protocol: &str) -> Result<Vec<u8>, String> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The apiserver's serving certificate is self-signed here.
    let tls = component_base::tls::unverified_client_config();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut req = format!("wss://127.0.0.1:{port}{path}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let h = req.headers_mut();
    h.insert(
        "authorization",
        http::HeaderValue::from_str(&format!("Bearer {ADMIN_TOKEN}")).map_err(|e| e.to_string())?,
    );
    h.insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_str(protocol).map_err(|e| e.to_string())?,
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| e.to_string())?;
    ws.send(Message::Ping(b"keelson".to_vec().into()))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "no pong within 10 s".to_owned())?;
        match next {
            Some(Ok(Message::Pong(p))) => {
                let _ = ws.close(None).await;
                return Ok(p.to_vec());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed before the pong".into()),
        }
    }
}

/// One HTTPS GET to the apiserver on 127.0.0.1:`port` with `headers` and no client
/// certificate (the server is not verified); returns the status and body. For the
/// requests kubectl cannot make, such as one without any credentials (kubectl would
/// prompt for a password).
pub fn https_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    https_get_as(port, path, headers, None)
}

/// [`https_get`], presenting a client certificate and key (PEM files) when given.
pub fn https_get_as(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    client: Option<(&Path, &Path)>,
) -> (u16, String) {
    let config = match client {
        None => component_base::tls::unverified_client_config(),
        Some((cert, key)) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let certs = component_base::tls::load_certs(cert).expect("client cert");
            let key = rustls_pemfile::private_key(&mut std::fs::read(key).expect("key").as_slice())
                .expect("key")
                .expect("a key");
            let mut c = rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(component_base::tls::AnyServerCert::new())
                .with_client_auth_cert(certs, key)
                .expect("client auth");
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            std::sync::Arc::new(c)
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use http_body_util::BodyExt;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("tls");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let mut req = http::Request::get(path).header("host", format!("127.0.0.1:{port}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = send
            .send_request(
                req.body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("request"),
            )
            .await
            .expect("send");
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    })
}

/// An HTTPS server for admission webhook tests: a certificate for 127.0.0.1 from its
/// own CA, and `handler(path, AdmissionReview) -> response body` answering every POST.
/// Stopped on drop.
pub struct TestWebhook {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The CA bundle to put in `clientConfig.caBundle` (base64 PEM).
    pub ca_bundle: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestWebhook {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TestWebhook {
    /// Starts serving `handler`.
    pub fn start<F>(handler: F) -> TestWebhook
    where
        F: Fn(&str, serde_json::Value) -> serde_json::Value + Send + Sync + 'static,
    {
        use base64::Engine;
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "webhook-ca");
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("sign");
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
            )
            .expect("tls config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handler = std::sync::Arc::new(handler);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                component_base::serve::serve_tls(
                    listener,
                    std::sync::Arc::new(tls),
                    async {
                        let _ = stop_rx.await;
                    },
                    move |req: http::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let review: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let out = handler(&path, review);
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from(
                                    serde_json::to_vec(&out).unwrap_or_default(),
                                )))
                                .expect("response")
                        }
                    },
                )
                .await;
            });
        });
        TestWebhook {
            port,
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca.pem()),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}
