//! The Python `kubernetes` client from PyPI (e2e/python/crud_watch.py) against a
//! fresh kube-apiserver. `hack/test.sh` makes a venv with the client and points
//! `KEELSON_PYTHON` at it; without that the test skips with a message.

use std::process::Command;

use e2e::ApiServer;

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
