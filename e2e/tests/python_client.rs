//! The Python `kubernetes` client from PyPI (e2e/python/crud_watch.py) against a
//! fresh kube-apiserver. `hack/test.sh` makes a venv with the client and points
//! `KEELSON_PYTHON` at it; without that the test skips with a message.

use std::process::Command;

use e2e::{ApiServer, have_kubectl};

#[test]
fn python_client_crud_and_watch() {
    let Ok(python) = std::env::var("KEELSON_PYTHON") else {
        eprintln!("skipping: KEELSON_PYTHON is not set (hack/test.sh sets it)");
        return;
    };
    let s = ApiServer::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/crud_watch.py");
    let out = Command::new(python)
        .arg(script)
        .env("KUBECONFIG", s.kubeconfig())
        .output()
        .expect("run python");
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
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = e2e::Pki::generate(dir.path());
    let kubelet = e2e::TestKubelet::start(&pki);
    let flags = pki.apiserver_flags();
    let s = ApiServer::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let k = "kubectl.1.33";
    kubelet.add_node(&s, "node1");
    s.ok_stdin(
        k,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeName: node1\n  containers: [{name: a, image: busybox}]\n"),
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/exec_v4.py");
    let out = Command::new(python)
        .arg(script)
        .env("KUBECONFIG", s.kubeconfig())
        .output()
        .expect("run python");
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
