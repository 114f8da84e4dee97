//! Whole-cluster tests for Keelson: its binaries started as processes, driven by the
//! real clients (kubectl 1.33/1.32/1.27, kube-rs, the Python `kubernetes` client).
//!
//! This library is the harness the tests in `e2e/tests/` share:
//! - `process`: [`binary`] finds (and if needed builds) a workspace binary such as
//!   `kube-apiserver`, next to the test executable in the target directory;
//!   [`kubectl_path`] picks one of the installed kubectl versions; [`free_port`];
//! - `apiserver`: [`ApiServer`] starts a fresh `kube-apiserver` with its embedded
//!   store in a temporary directory, with a token file and a kubeconfig, and stops it
//!   on drop;
//! - `component`: [`Component`] starts a `kube-controller-manager` or a
//!   `kube-scheduler` against one;
//! - `pki`: [`Pki`] generates the certificates for an apiserver and a kubelet;
//! - `kubelet`: [`TestKubelet`], a kubelet-side test server (logs, exec, attach,
//!   port-forward), and [`KubeletCluster`], an apiserver with one behind a Node;
//! - `https`: [`https_get`], [`https_get_as`] and [`websocket_ping`], for requests
//!   kubectl cannot make;
//! - `webhook`: [`TestWebhook`], an HTTPS admission webhook server;
//! - `node`: [`NodeEnv`] (the local registry with the images and a node network)
//!   and [`Node`] (a network namespace with its own containerd and a real kubelet).
//!
//! Tests skip (with a message) when a client they need is not installed, so that the
//! suite stays runnable on a developer machine; CI installs everything.

mod apiserver;
mod component;
mod https;
mod kubelet;
mod node;
mod pki;
mod process;
mod webhook;

pub use apiserver::{ADMIN_TOKEN, ApiServer};
pub use component::{Component, ControllerManager};
pub use https::{https_get, https_get_as, websocket_ping};
pub use kubelet::{KubeletCluster, TestKubelet};
pub use node::{Node, NodeEnv};
pub use pki::Pki;
pub use process::{KUBECTLS, binary, free_port, have_kubectl, installed_kubectls, kubectl_path};
pub use webhook::TestWebhook;
