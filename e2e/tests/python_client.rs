//! The Python `kubernetes` client from PyPI (e2e/python/crud_watch.py) against a
//! fresh kube-apiserver. `hack/test.sh` makes a venv with the client and points
//! `KEELSON_PYTHON` at it; without that the test skips with a message.

use std::process::Command;

use e2e::{ApiServer, have_kubectl};

/// Runs `e2e/python/<script>` with the venv's interpreter against `api`.
fn run_python(python: &str, script: &str, api: &ApiServer) -> std::process::Output {
    Command::new(python)
        .arg(format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR")))
        .env("KUBECONFIG", api.kubeconfig())
        .output()
        .expect("run python")
}

#[test]
fn python_client_crud_and_watch() {
    let Ok(python) = std::env::var("KEELSON_PYTHON") else {
        eprintln!("skipping: KEELSON_PYTHON is not set (hack/test.sh sets it)");
        return;
    };
    let s = ApiServer::start();
    let out = run_python(&python, "crud_watch.py", &s);
    assert!(
        out.status.success(),
        "python client failed:\n{}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client: ok"));
}

/// exec through the apiserver to the test kubelet with the Python client's
/// WebSocket streams, which speak `v4.channel.k8s.io` (e2e/python/exec_v4.py).
#[test]
fn python_client_exec_over_v4_channels() {
    let Ok(python) = std::env::var("KEELSON_PYTHON") else {
        eprintln!("skipping: KEELSON_PYTHON is not set (hack/test.sh sets it)");
        return;
    };
    if !have_kubectl() {
        return;
    }
    let cluster = e2e::KubeletCluster::start();
    let (s, kubelet) = (&cluster.api, &cluster.kubelet);
    let k = "kubectl.1.33";
    s.ok_stdin(
        k,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeName: node1\n  containers: [{name: a, image: busybox}]\n"),
    );
    let out = run_python(&python, "exec_v4.py", s);
    assert!(
        out.status.success(),
        "python exec failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python exec: ok"));
    let reqs = kubelet.requests.lock().expect("requests").clone();
    assert!(
        reqs.iter().any(|r| r.contains("/exec/default/p/a?")
            && r.contains("upgrade=websocket protocols=v4.channel.k8s.io ")),
        "{reqs:?}"
    );
}
