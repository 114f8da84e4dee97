//! Pods held at Permit, as upstream's `waitingPodsMap`: a Permit plugin that
//! answers [`Code::Wait`](super::Code::Wait) parks the pod here with a timeout;
//! its binding cycle waits until every waiting plugin allows it, one rejects it,
//! a timeout passes (a rejection in upstream's words), or the pod is deleted.
//! Plugins reach the waiting pods through [`WaitingPods`] (upstream's
//! `IterateOverWaitingPods`, `GetWaitingPod`, `RejectWaitingPod`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::{Code, Status};

/// Upstream's `maxTimeout`: no plugin may hold a pod longer.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A pod waiting at Permit.
pub struct WaitingPod {
    pod: Arc<Pod>,
    node: String,
    pending: Mutex<HashSet<String>>,
    done: Mutex<Option<oneshot::Sender<Status>>>,
    timers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl WaitingPod {
    /// The pod.
    pub fn pod(&self) -> &Arc<Pod> {
        &self.pod
    }
    /// The node it was assumed on.
    pub fn node(&self) -> &str {
        &self.node
    }
    /// The plugins that have not allowed it yet.
    pub fn pending_plugins(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pending.lock().iter().cloned().collect();
        v.sort();
        v
    }
    fn finish(&self, s: Status) {
        if let Some(tx) = self.done.lock().take() {
            let _ = tx.send(s);
        }
        for t in self.timers.lock().drain(..) {
            t.abort();
        }
    }
    /// `plugin` allows the pod; once every waiting plugin has, it goes on to bind.
    pub fn allow(&self, plugin: &str) {
        let mut pending = self.pending.lock();
        pending.remove(plugin);
        if pending.is_empty() {
            drop(pending);
            self.finish(Status::success());
        }
    }
    /// `plugin` rejects the pod: it is unschedulable with `message`.
    pub fn reject(&self, plugin: &str, message: &str) {
        self.finish(Status::unschedulable(message).with_plugin(plugin));
    }
}

/// The waiting pods of a profile, by UID.
#[derive(Default)]
pub struct WaitingPods {
    pods: Mutex<HashMap<String, Arc<WaitingPod>>>,
}

impl WaitingPods {
    /// The waiting pod with `uid`.
    pub fn get(&self, uid: &str) -> Option<Arc<WaitingPod>> {
        self.pods.lock().get(uid).cloned()
    }
    /// Every waiting pod.
    pub fn all(&self) -> Vec<Arc<WaitingPod>> {
        self.pods.lock().values().cloned().collect()
    }
    /// Rejects the pod `uid` (deleted while waiting): whether it was waiting.
    pub fn reject(&self, uid: &str) -> bool {
        match self.get(uid) {
            Some(wp) => {
                wp.reject("", "removed");
                true
            }
            None => false,
        }
    }

    /// Parks `pod` on `node` until each plugin of `waits` allows it or its
    /// timeout passes; the receiver gets the outcome.
    pub(crate) fn add(
        &self,
        pod: Arc<Pod>,
        node: &str,
        waits: HashMap<String, Duration>,
    ) -> oneshot::Receiver<Status> {
        let (tx, rx) = oneshot::channel();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let wp = Arc::new(WaitingPod {
            pod,
            node: node.to_owned(),
            pending: Mutex::new(waits.keys().cloned().collect()),
            done: Mutex::new(Some(tx)),
            timers: Mutex::default(),
        });
        let timers = waits
            .into_iter()
            .map(|(plugin, d)| {
                let w = wp.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let waited = component_base::duration::go_string(d.as_nanos() as i64);
                    w.reject(
                        &plugin,
                        &format!(
                            "rejected due to timeout after waiting {waited} at plugin {plugin}"
                        ),
                    );
                })
            })
            .collect();
        *wp.timers.lock() = timers;
        self.pods.lock().insert(uid, wp);
        rx
    }

    pub(crate) fn remove(&self, uid: &str) {
        self.pods.lock().remove(uid);
    }
}

/// The outcome of waiting: success, the rejection, or an error when the waiting
/// pod was dropped without an answer.
pub(crate) async fn outcome(rx: oneshot::Receiver<Status>) -> Status {
    match rx.await {
        Ok(s) if s.is_success() || s.is_rejected() => s,
        Ok(s) => Status::error(format!("waiting on permit for pod: {}", s.message()))
            .with_plugin(&s.plugin),
        Err(_) => Status::new(Code::Error, ["waiting on permit for pod: abandoned"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.metadata.uid = Some("u".into());
        Arc::new(p)
    }

    #[tokio::test(start_paused = true)]
    async fn every_waiting_plugin_must_allow() {
        let w = WaitingPods::default();
        let waits = HashMap::from([
            ("A".to_owned(), Duration::from_secs(10)),
            ("B".to_owned(), Duration::from_secs(10)),
        ]);
        let rx = w.add(pod(), "n1", waits);
        let wp = w.get("u").unwrap();
        assert_eq!(wp.node(), "n1");
        wp.allow("A");
        assert_eq!(wp.pending_plugins(), ["B"]);
        wp.allow("B");
        assert!(outcome(rx).await.is_success());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_or_a_timeout_ends_the_wait() {
        let w = WaitingPods::default();
        let rx = w.add(
            pod(),
            "n1",
            HashMap::from([("A".to_owned(), Duration::from_secs(10))]),
        );
        w.get("u").unwrap().reject("A", "no room");
        assert_eq!(
            outcome(rx).await,
            Status::unschedulable("no room").with_plugin("A")
        );

        let rx = w.add(
            pod(),
            "n1",
            HashMap::from([("Gang".to_owned(), Duration::from_secs(90))]),
        );
        assert_eq!(
            outcome(rx).await,
            Status::unschedulable("rejected due to timeout after waiting 1m30s at plugin Gang")
                .with_plugin("Gang")
        );

        let rx = w.add(
            pod(),
            "n1",
            HashMap::from([("A".to_owned(), Duration::from_secs(10))]),
        );
        assert!(w.reject("u"));
        assert_eq!(outcome(rx).await, Status::unschedulable("removed"));
    }
}
