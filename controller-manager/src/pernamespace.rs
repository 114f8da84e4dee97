//! The driver shared by controllers that keep one named object in every namespace:
//! the serviceaccount controller (`default` ServiceAccounts) and the root CA
//! publisher (`kube-root-ca.crt` ConfigMaps).
//!
//! Two watches feed one work queue of namespace names: every namespace add or update,
//! and every change to or deletion of an object with the kept name. A worker then
//! reads the object and creates it when missing, or replaces it when the
//! [`Keeper`] says it drifted. A create refused because the namespace is gone or
//! terminating is not retried, as upstream's; other failures go back on the queue
//! with backoff.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use serde::de::DeserializeOwned;

use client_base::workqueue::{Metrics, Queue, run_workers};

/// What a per-namespace controller keeps.
pub trait Keeper: Send + Sync + 'static {
    /// The kept object's type.
    type K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    /// The kept object's name.
    fn object_name(&self) -> &'static str;
    /// The work queue's name, as upstream's (for the `workqueue_*` metrics).
    fn queue_name(&self) -> &'static str;
    /// The object to create in a namespace that lacks it.
    fn desired(&self) -> Self::K;
    /// The replacement for an existing object that drifted, if it did.
    fn repair(&self, have: &Self::K) -> Option<Self::K>;
    /// Records one sync's outcome (HTTP-style code) and duration.
    fn observe(&self, _code: u16, _seconds: f64) {}
}

/// Whether upstream would sync a namespace: only while it is active.
pub fn active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// A create that must not be retried: the namespace is gone, or terminating.
fn gone(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 404
                || s.code == 409
                || (s.code == 403 && s.message.contains("because it is being terminated"))
        }
        _ => false,
    }
}

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        _ => 500,
    }
}

/// One namespace's sync.
async fn sync<P: Keeper>(
    reader: &kube::Client,
    writer: &kube::Client,
    keeper: &P,
    ns: &str,
) -> Result<(), kube::Error> {
    let namespaces: Api<Namespace> = Api::all(reader.clone());
    match namespaces.get_opt(ns).await? {
        Some(n) if active(&n) => {}
        _ => return Ok(()),
    }
    let read: Api<P::K> = Api::namespaced(reader.clone(), ns);
    let api: Api<P::K> = Api::namespaced(writer.clone(), ns);
    match read.get_opt(keeper.object_name()).await? {
        None => match api.create(&PostParams::default(), &keeper.desired()).await {
            Ok(_) => {
                tracing::info!(namespace = ns, name = keeper.object_name(), "created");
                Ok(())
            }
            Err(e) if gone(&e) => Ok(()),
            Err(e) => Err(e),
        },
        Some(have) => match keeper.repair(&have) {
            None => Ok(()),
            Some(want) => {
                api.replace(keeper.object_name(), &PostParams::default(), &want)
                    .await?;
                tracing::info!(namespace = ns, name = keeper.object_name(), "updated");
                Ok(())
            }
        },
    }
}

/// Runs the controller until the process ends. Watches and reads use `reader` (the
/// manager's own identity, as upstream's shared informers do); creates and updates
/// use `writer` (the controller's, which may hold only those verbs).
pub async fn run<P: Keeper>(
    reader: kube::Client,
    writer: kube::Client,
    keeper: P,
    metrics: Metrics,
) {
    let keeper = Arc::new(keeper);
    let queue: Arc<Queue<String>> = Queue::new(keeper.queue_name(), Some(metrics));

    let namespaces: Api<Namespace> = Api::all(reader.clone());
    let q = queue.clone();
    let ns_watch = async move {
        let mut events = watcher(namespaces, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::InitApply(n) | watcher::Event::Apply(n)) if active(&n) => {
                    q.add(n.metadata.name.unwrap_or_default());
                }
                Ok(_) => {}
                Err(e) => tracing::info!(error = %e, "namespace watch failed; retrying"),
            }
        }
    };
    let objects: Api<P::K> = Api::all(reader.clone());
    let q = queue.clone();
    let selector = format!("metadata.name={}", keeper.object_name());
    let object_watch = async move {
        let mut events = watcher(objects, watcher::Config::default().fields(&selector))
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(
                    watcher::Event::Apply(o)
                    | watcher::Event::InitApply(o)
                    | watcher::Event::Delete(o),
                ) => {
                    q.add(
                        kube::Resource::meta(&o)
                            .namespace
                            .clone()
                            .unwrap_or_default(),
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::info!(error = %e, "watch failed; retrying"),
            }
        }
    };
    let worker = run_workers(queue.clone(), 1, move |ns: String| {
        let (reader, writer, keeper) = (reader.clone(), writer.clone(), keeper.clone());
        async move {
            let start = std::time::Instant::now();
            let result = sync(&reader, &writer, keeper.as_ref(), &ns).await;
            let seconds = start.elapsed().as_secs_f64();
            keeper.observe(result.as_ref().map_or_else(code, |()| 200), seconds);
            result
        }
    });
    tokio::join!(ns_watch, object_watch, worker);
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::NamespaceStatus;

    use super::*;

    #[test]
    fn only_active_namespaces_are_synced() {
        let mut ns = Namespace::default();
        assert!(active(&ns));
        ns.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert!(!active(&ns));
    }

    #[test]
    fn creates_into_vanished_namespaces_are_not_retried() {
        let status = |code: u16, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: message.into(),
                ..Default::default()
            }))
        };
        assert!(gone(&status(404, "namespaces \"x\" not found")));
        assert!(gone(&status(
            403,
            "serviceaccounts \"default\" is forbidden: unable to create new content in namespace x because it is being terminated"
        )));
        assert!(!gone(&status(403, "forbidden")));
        assert!(!gone(&status(500, "etcd")));
    }
}
