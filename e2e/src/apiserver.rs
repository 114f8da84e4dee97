//! [`ApiServer`]: a `kube-apiserver` started as a process in a temporary directory,
//! with the kubectl helpers the tests drive it with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::{binary, free_port, kubectl_path, on_exit};

/// The admin bearer token every [`ApiServer`] accepts.
pub const ADMIN_TOKEN: &str = "admintoken";

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
        let child = Command::new(binary("kube-apiserver"))
            .args(["--data-dir", &path("data"), "--cert-dir", &path("certs")])
            .args(["--token-auth-file", &path("tokens.csv")])
            .args(["--client-ca-file", &path("pki/ca.crt")])
            .args(
                (!extra.iter().any(|f| f.starts_with("--bind-address")))
                    .then_some(["--bind-address", "127.0.0.1"])
                    .into_iter()
                    .flatten(),
            )
            .args(["--secure-port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kube-apiserver");
        on_exit(&format!(
            "kill -9 {} 2>/dev/null; rm -rf {}",
            child.id(),
            dir.display()
        ));
        child
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
