//! [`ControllerManager`]: a `kube-controller-manager` started as a process against an
//! [`ApiServer`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::apiserver::ApiServer;
use crate::process::{binary, free_port};

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
