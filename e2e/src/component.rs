//! [`Component`]: a control-plane daemon (`kube-controller-manager`,
//! `kube-scheduler`) started as a process against an [`ApiServer`], with its secure
//! port on 127.0.0.1 and its log in the apiserver's directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::apiserver::ApiServer;
use crate::process::{binary, free_port, on_exit};

/// A daemon against an [`ApiServer`], with its secure port on 127.0.0.1 behind
/// delegated authentication and authorization (its own kubeconfig for both; read
/// `/metrics` with [`crate::ADMIN_TOKEN`]). Stopped (SIGKILL) on drop.
pub struct Component {
    child: Option<Child>,
    log: PathBuf,
    /// The secure port (health and metrics) on 127.0.0.1.
    pub port: u16,
    /// The binary's name, for messages.
    name: &'static str,
}

/// A `kube-controller-manager` ([`Component::start`]).
pub type ControllerManager = Component;

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Component {
    /// Starts a kube-controller-manager, as the admin, with `extra` flags; its log
    /// goes to `<apiserver dir>/<name>.log`.
    pub fn start(api: &ApiServer, name: &str, extra: &[&str]) -> Component {
        Self::start_as(api, &api.kubeconfig(), name, extra)
    }

    /// Starts a kube-controller-manager with `kubeconfig` (its own identity).
    pub fn start_as(api: &ApiServer, kubeconfig: &Path, name: &str, extra: &[&str]) -> Component {
        Self::launch("kube-controller-manager", api, kubeconfig, name, extra)
    }

    /// Starts a kube-scheduler, as the admin, with `extra` flags.
    pub fn scheduler(api: &ApiServer, name: &str, extra: &[&str]) -> Component {
        Self::launch("kube-scheduler", api, &api.kubeconfig(), name, extra)
    }

    /// Starts `bin` with `--kubeconfig`, the secure port flags and `extra`.
    pub fn launch(
        bin: &'static str,
        api: &ApiServer,
        kubeconfig: &Path,
        name: &str,
        extra: &[&str],
    ) -> Component {
        let port = free_port();
        let log = api.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary(bin))
            .args(["--kubeconfig", &kubeconfig.display().to_string()])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            // Delegated authentication and authorization of the secure port, as
            // kubeadm's manifests set them up.
            .args([
                "--authentication-kubeconfig",
                &kubeconfig.display().to_string(),
            ])
            .args([
                "--authorization-kubeconfig",
                &kubeconfig.display().to_string(),
            ])
            .args(extra)
            .env("RUST_LOG", "info,kube=warn,scheduler=debug")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        on_exit(&format!("kill -9 {} 2>/dev/null", child.id()));
        Component {
            child: Some(child),
            log,
            port,
            name: bin,
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
                "timed out waiting for {text:?} in the {} log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
