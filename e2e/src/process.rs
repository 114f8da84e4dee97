//! Finding the workspace's binaries and the installed kubectls, and picking ports.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub use component_base::bench::free_port;

/// The kubectl versions the suite drives: the target version and two older ones
/// inside and beyond upstream's skew policy.
pub const KUBECTLS: [&str; 3] = ["kubectl.1.33", "kubectl.1.32", "kubectl.1.27"];

/// The path of workspace binary `name` in this test's target directory. Builds it
/// first (a no-op when it is fresh): `cargo test -p keelson-e2e` alone does not
/// build other packages' binaries. Bench binaries (in `target/<profile>` itself)
/// find their siblings the same way.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    // target/<profile>/deps/<test>, or target/<profile>/<bench binary>.
    let parent = exe.parent().expect("executable in a directory");
    let dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent.parent().expect("target/<profile>")
    } else {
        parent
    };
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

/// Runs the bash `script` once this test process has exited, however it ends. The
/// shared clusters live in statics, which Rust never drops: without this their
/// processes, nodes and directories would outlive the test binary.
pub(crate) fn on_exit(script: &str) {
    let pid = std::process::id();
    let _ = Command::new("setsid")
        .args([
            "bash",
            "-c",
            &format!("tail --pid={pid} -f /dev/null; {script}"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
