//! The event recorder, as client-go's `tools/events` broadcaster: `events.k8s.io/v1`
//! Events written in the background, so that recording never blocks the caller.
//!
//! - Writing and series aggregation (a repeated event becomes one Event whose
//!   `series.count` grows, for 6 minutes) are kube-runtime's `Recorder`.
//! - Recording is a non-blocking send into a queue of 1000 (client-go's
//!   `maxQueuedEvents`); a full queue drops the event with a log line, as upstream.
//!   Up to 16 writes are in flight at once.
//! - A spam filter per regarding object and type, as client-go's
//!   `EventSourceObjectSpamFilter`: a bucket of 25 events refilled at one per five
//!   minutes, so that a hot loop cannot flood the apiserver.
//! - [`Recorder::legacy`] writes core/v1 Events instead, as client-go's
//!   `tools/record` (what kube-controller-manager's controllers use): an identical
//!   event (same object, type, reason and message) bumps the first one's `count`
//!   and `lastTimestamp`, so that different messages stay apart.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder as KubeRecorder, Reporter};
use tokio::sync::mpsc;

use crate::ratelimit::TokenBucket;

/// client-go's `maxQueuedEvents`.
const QUEUE: usize = 1000;
/// client-go's spam filter: burst 25, then one per 300 s.
const SPAM_BURST: u32 = 25;
const SPAM_QPS: f32 = 1.0 / 300.0;
/// How many objects' buckets the spam filter keeps (client-go's LRU size).
const SPAM_KEYS: usize = 4096;

/// `Normal` or `Warning`.
pub use kube::runtime::events::EventType as Type;

struct Item {
    regarding: ObjectReference,
    event: Event,
}

/// Where events are written.
#[derive(Clone)]
enum Backend {
    /// events.k8s.io/v1, with series (kube-runtime).
    Series(KubeRecorder),
    /// core/v1, with client-go's record counting.
    Legacy(std::sync::Arc<Legacy>),
}

/// core/v1 Events of one component, with the names and counts of those written.
struct Legacy {
    client: kube::Client,
    /// `source.host` (the kubelet's node).
    host: Option<String>,
    component: String,
    seen: parking_lot::Mutex<HashMap<String, (String, i32)>>,
}

impl Legacy {
    async fn publish(&self, e: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let ns = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let type_ = match e.type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let message = e.note.clone().unwrap_or_default();
        let key = format!(
            "{}|{}|{type_}|{}|{message}",
            spam_key(regarding, e.type_),
            self.component,
            e.reason
        );
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let api: kube::Api<CoreEvent> = kube::Api::namespaced(self.client.clone(), &ns);
        let known = self.seen.lock().get(&key).cloned();
        if let Some((name, count)) = known {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": now});
            match api
                .patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(patch),
                )
                .await
            {
                Ok(_) => {
                    self.seen.lock().insert(key, (name, count + 1));
                    return Ok(());
                }
                // Gone (expired): write it anew.
                Err(err) if crate::errors::is_not_found(&err) => {}
                Err(err) => return Err(err),
            }
        }
        let nanos = now.0.as_nanosecond();
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or_default(),
            nanos
        );
        let event = CoreEvent {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: regarding.clone(),
            reason: Some(e.reason.clone()),
            message: Some(message),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            type_: Some(type_.into()),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_default()),
            ..Default::default()
        };
        api.create(&kube::api::PostParams::default(), &event)
            .await?;
        let mut seen = self.seen.lock();
        if seen.len() > SPAM_KEYS {
            seen.clear();
        }
        seen.insert(key, (name, 1));
        Ok(())
    }
}

/// Records events for one reporting controller; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Item>,
}

impl Recorder {
    /// Events reported by `controller` (`default-scheduler`, `deployment-controller`)
    /// from `instance` (the holder identity), written through `client`.
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let recorder = KubeRecorder::new(
            client,
            Reporter {
                controller: controller.to_owned(),
                instance,
            },
        );
        tokio::spawn(write(Backend::Series(recorder), rx));
        Recorder { tx }
    }

    /// core/v1 Events from `component` (`deployment-controller`), as client-go's
    /// `tools/record` recorder that upstream's controllers use.
    pub fn legacy(client: kube::Client, component: &str) -> Self {
        Self::legacy_on_host(client, component, None)
    }

    /// [`Recorder::legacy`] with `source.host` set, as the kubelet's events carry
    /// the node's name.
    pub fn legacy_on_host(client: kube::Client, component: &str, host: Option<String>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let backend = Backend::Legacy(std::sync::Arc::new(Legacy {
            client,
            host,
            component: component.to_owned(),
            seen: parking_lot::Mutex::new(HashMap::new()),
        }));
        tokio::spawn(write(backend, rx));
        Recorder { tx }
    }

    /// Records an event about `regarding`: `reason` for `action`, with `note` as
    /// its message, optionally `related` to a second object.
    pub fn event(
        &self,
        regarding: ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let item = Item {
            regarding,
            event: Event {
                type_,
                reason: reason.to_owned(),
                note: Some(truncate(note)),
                action: action.to_owned(),
                secondary: related,
            },
        };
        if let Err(mpsc::error::TrySendError::Full(i)) = self.tx.try_send(item) {
            tracing::error!(
                reason = %i.event.reason,
                object = ?i.regarding.name,
                "unable to record event: too many queued events, dropped event"
            );
        }
    }
}

/// Notes are capped at 1 kB, as the API validates.
fn truncate(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

fn spam_key(r: &ObjectReference, t: EventType) -> String {
    format!(
        "{}/{}/{}/{}/{}/{t:?}",
        r.api_version.as_deref().unwrap_or_default(),
        r.kind.as_deref().unwrap_or_default(),
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default(),
        r.uid.as_deref().unwrap_or_default(),
    )
}

/// How many event writes may be in flight at once: one slow write must not hold
/// the others back (a scheduler records one event per pod it binds).
const IN_FLIGHT: usize = 16;

async fn write(recorder: Backend, mut rx: mpsc::Receiver<Item>) {
    let mut spam: HashMap<String, TokenBucket> = HashMap::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    while let Some(item) = rx.recv().await {
        let bucket = spam
            .entry(spam_key(&item.regarding, item.event.type_))
            .or_insert_with(|| TokenBucket::new(SPAM_QPS, SPAM_BURST));
        if bucket.reserve() > Duration::ZERO {
            bucket.refund();
            tracing::debug!(reason = %item.event.reason, "event dropped by the spam filter");
            continue;
        }
        if spam.len() > SPAM_KEYS {
            // Forget the buckets that refilled, as client-go's LRU of 4096 forgets
            // the least recent; if every one is in use, forget them all rather than
            // walk the map on every event.
            spam.retain(|_, b| !b.is_full());
            if spam.len() > SPAM_KEYS / 2 {
                spam.clear();
            }
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let written = match &recorder {
                Backend::Series(r) => r.publish(&item.event, &item.regarding).await,
                Backend::Legacy(l) => l.publish(&item.event, &item.regarding).await,
            };
            if let Err(e) = written {
                tracing::info!(reason = %item.event.reason, error = %e, "unable to write event");
            }
            drop(permit);
        });
    }
}
