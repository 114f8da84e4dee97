//! The watch cache: one per stored resource, as upstream's `cacher`.
//!
//! A feeder task lists the resource's key prefix from the store, then watches it from
//! the next revision, keeping (a) the current object of every key, (b) a window of
//! recent events for watches that resume from a resourceVersion, and (c) the revision
//! it has seen everything up to. Progress notifications from the store move (c) forward
//! when no object of this resource changed, so a consistent read can wait until the
//! cache has caught up with the store's current revision and then be served from
//! memory.
//!
//! Objects are kept as parsed JSON behind `Arc`s at the storage version, with
//! `metadata.resourceVersion` set. Watchers receive events through a broadcast
//! channel; a watcher that falls too far behind is ended, as upstream ends slow
//! watchers, and its client re-watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::storage::{KeyValue, Kv, KvError, WatchEvent, prefix_end};

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// Upstream's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Clone, Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// The store key.
    pub key: String,
    /// The object after the change (for deletes, the last state with the delete's
    /// resourceVersion).
    pub object: Arc<Value>,
    /// The object before the change, for selector transitions.
    pub prev: Option<Arc<Value>>,
    /// The revision of the change.
    pub rv: u64,
    /// `object` serialized, once, for every watcher that sends it as is.
    pub json: std::sync::OnceLock<bytes::Bytes>,
}

impl Event {
    /// The object as JSON, serialized on first use and then shared.
    pub fn object_json(&self) -> &bytes::Bytes {
        self.json.get_or_init(|| {
            bytes::Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default())
        })
    }
}

/// A message to watchers: an event, or the cache's revision moving forward.
#[derive(Clone, Debug)]
pub enum Notice {
    /// A change.
    Event(Arc<Event>),
    /// Everything up to this revision has been delivered (bookmark material).
    Progress(u64),
}

struct State {
    objects: BTreeMap<String, Arc<Value>>,
    events: VecDeque<Arc<Event>>,
    /// Everything up to here has been applied.
    rv: u64,
    /// Events after this revision are all in `events`.
    oldest: u64,
    ready: bool,
}

/// Events kept for resuming watches.
const WINDOW: usize = 10_000;

/// The cache of one key prefix.
pub struct WatchCache {
    prefix: String,
    state: RwLock<State>,
    tx: broadcast::Sender<Notice>,
    rv_tx: watch::Sender<u64>,
    progress: tokio::sync::Notify,
}

/// Why a cache read or watch cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum CacheError {
    /// The revision is older than the cache's window.
    TooOld {
        /// Asked for.
        requested: u64,
        /// The oldest revision that can be served.
        oldest: u64,
    },
    /// The cache did not reach the revision in time.
    TooLarge {
        /// Asked for.
        requested: u64,
        /// Where the cache is.
        current: u64,
    },
}

fn decode(kv: &KeyValue, rv: u64) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
    crate::meta::set_rv(&mut v, rv);
    Some(v)
}

impl WatchCache {
    /// Starts a cache over `prefix`, fed from `kv`, and returns once the first list is
    /// loaded.
    pub async fn start(kv: Arc<dyn Kv>, prefix: String) -> Arc<WatchCache> {
        let (tx, _) = broadcast::channel(WINDOW);
        let (rv_tx, _) = watch::channel(0);
        let cache = Arc::new(WatchCache {
            prefix,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                events: VecDeque::new(),
                rv: 0,
                oldest: 0,
                ready: false,
            }),
            tx,
            rv_tx,
            progress: tokio::sync::Notify::new(),
        });
        let mut ready = cache.rv_tx.subscribe();
        tokio::spawn(feed(cache.clone(), kv));
        let _ = ready.wait_for(|rv| *rv > 0).await;
        cache
    }

    /// The revision everything has been seen up to.
    pub fn rv(&self) -> u64 {
        self.state.read().rv
    }

    /// Waits until the cache has seen every change up to `rv`, asking the store for a
    /// progress notification; gives up after 3 s as upstream does.
    pub async fn wait_fresh(&self, rv: u64) -> Result<(), CacheError> {
        let mut sub = self.rv_tx.subscribe();
        if *sub.borrow() >= rv {
            return Ok(());
        }
        self.progress.notify_one();
        let wait = sub.wait_for(|cur| *cur >= rv);
        match tokio::time::timeout(Duration::from_secs(3), wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(CacheError::TooLarge {
                requested: rv,
                current: self.rv(),
            }),
        }
    }

    /// The current objects under `sub_prefix` (a namespace, or all) and the revision
    /// they are at.
    pub fn snapshot(&self, sub_prefix: &str) -> (Vec<Arc<Value>>, u64) {
        let st = self.state.read();
        let start = format!("{}{}", self.prefix, sub_prefix);
        let items = st
            .objects
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.rv)
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.state.read().objects.get(key).cloned()
    }

    /// Starts a watch after `rv`: the events already past it, and a receiver for the
    /// rest. With `initial`, the current objects come first as ADDED (RV "0" or
    /// unset).
    pub fn watch_from(
        &self,
        rv: u64,
        initial: bool,
    ) -> Result<(Vec<Notice>, broadcast::Receiver<Notice>), CacheError> {
        let st = self.state.read();
        let rx = self.tx.subscribe();
        if initial {
            let backlog = st
                .objects
                .iter()
                .map(|(k, v)| {
                    Notice::Event(Arc::new(Event {
                        kind: EventType::Added,
                        key: k.clone(),
                        object: v.clone(),
                        prev: None,
                        rv: st.rv,
                        json: std::sync::OnceLock::new(),
                    }))
                })
                .collect();
            return Ok((backlog, rx));
        }
        if rv < st.oldest {
            return Err(CacheError::TooOld {
                requested: rv,
                oldest: st.oldest + 1,
            });
        }
        if rv > st.rv {
            return Err(CacheError::TooLarge {
                requested: rv,
                current: st.rv,
            });
        }
        let backlog = st
            .events
            .iter()
            .filter(|e| e.rv > rv)
            .map(|e| Notice::Event(e.clone()))
            .collect();
        Ok((backlog, rx))
    }

    fn apply(&self, ev: WatchEvent) {
        let mut st = self.state.write();
        let event = match ev {
            WatchEvent::Progress { revision } => {
                if revision > st.rv {
                    st.rv = revision;
                    drop(st);
                    self.rv_tx.send_replace(revision);
                    let _ = self.tx.send(Notice::Progress(revision));
                }
                return;
            }
            WatchEvent::Put { kv, .. } => {
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                let Some(obj) = decode(&kv, kv.mod_revision) else {
                    tracing::warn!(key, "undecodable object in store; skipped");
                    return;
                };
                let obj = Arc::new(obj);
                let prev = st.objects.insert(key.clone(), obj.clone());
                Event {
                    kind: if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    key,
                    object: obj,
                    prev,
                    rv: kv.mod_revision,
                    json: std::sync::OnceLock::new(),
                }
            }
            WatchEvent::Delete { key, revision, .. } => {
                let key = String::from_utf8_lossy(&key).into_owned();
                let Some(prev) = st.objects.remove(&key) else {
                    st.rv = st.rv.max(revision);
                    return;
                };
                let mut last = (*prev).clone();
                crate::meta::set_rv(&mut last, revision);
                Event {
                    kind: EventType::Deleted,
                    key,
                    object: Arc::new(last),
                    prev: Some(prev),
                    rv: revision,
                    json: std::sync::OnceLock::new(),
                }
            }
        };
        let rv = event.rv;
        let event = Arc::new(event);
        st.events.push_back(event.clone());
        while st.events.len() > WINDOW {
            if let Some(e) = st.events.pop_front() {
                st.oldest = e.rv;
            }
        }
        st.rv = st.rv.max(rv);
        // Sent under the lock, so that `watch_from` never misses or repeats one.
        let _ = self.tx.send(Notice::Event(event));
        drop(st);
        self.rv_tx.send_replace(rv);
    }

    /// Replaces the contents after a relist.
    fn reset(&self, objects: BTreeMap<String, Arc<Value>>, rv: u64) {
        let mut st = self.state.write();
        st.objects = objects;
        st.events.clear();
        st.rv = rv;
        st.oldest = rv;
        st.ready = true;
        drop(st);
        self.rv_tx.send_replace(rv);
    }
}

async fn list_all(
    kv: &dyn Kv,
    prefix: &str,
) -> Result<(BTreeMap<String, Arc<Value>>, u64), KvError> {
    let end = prefix_end(prefix.as_bytes());
    let mut start = prefix.as_bytes().to_vec();
    let mut rev = 0;
    let mut out = BTreeMap::new();
    loop {
        let page = kv.range(&start, &end, rev, 1000).await?;
        if rev == 0 {
            rev = page.revision;
        }
        for item in &page.kvs {
            if let Some(v) = decode(item, item.mod_revision) {
                out.insert(String::from_utf8_lossy(&item.key).into_owned(), Arc::new(v));
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                start = last.key.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    Ok((out, rev))
}

/// Lists, then watches, forever; relists after a compaction or a broken stream.
async fn feed(cache: Arc<WatchCache>, kv: Arc<dyn Kv>) {
    let end = prefix_end(cache.prefix.as_bytes());
    loop {
        let (objects, rev) = match list_all(kv.as_ref(), &cache.prefix).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(prefix = cache.prefix, error = %e, "watch cache list failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        cache.reset(objects, rev.max(1));
        let mut stream = match kv.watch(cache.prefix.as_bytes(), &end, rev + 1).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(prefix = cache.prefix, error = %e, "watch cache watch failed; relisting");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                ev = stream.events.next() => match ev {
                    Some(Ok(ev)) => cache.apply(ev),
                    Some(Err(e)) => {
                        tracing::info!(prefix = cache.prefix, error = %e, "watch cache stream ended; relisting");
                        break;
                    }
                    None => break,
                },
                _ = cache.progress.notified() => (stream.request_progress)(),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryKv;

    #[tokio::test]
    async fn lists_then_follows() {
        let kv = MemoryKv::new();
        kv.create(
            b"/registry/pods/a/x",
            br#"{"metadata":{"name":"x"}}"#.to_vec(),
        )
        .await
        .unwrap();
        let kv: Arc<dyn Kv> = Arc::new(kv);
        let cache = WatchCache::start(kv.clone(), "/registry/pods/".into()).await;
        let (items, rv) = cache.snapshot("");
        assert_eq!(items.len(), 1);
        let (_, mut rx) = cache.watch_from(rv, false).unwrap();
        let r2 = kv
            .create(
                b"/registry/pods/a/y",
                br#"{"metadata":{"name":"y"}}"#.to_vec(),
            )
            .await
            .unwrap();
        match rx.recv().await.unwrap() {
            Notice::Event(e) => {
                assert_eq!(e.kind, EventType::Added);
                assert_eq!(e.rv, r2);
                assert_eq!(e.object["metadata"]["resourceVersion"], r2.to_string());
            }
            other => panic!("{other:?}"),
        }
        cache.wait_fresh(r2).await.unwrap();
        // A revision from before the cache started is gone.
        assert!(matches!(
            cache.watch_from(0, false),
            Err(CacheError::TooOld { .. })
        ));
        // Another prefix moving the store forward: freshness arrives by progress.
        let r3 = kv.create(b"/registry/other", b"{}".to_vec()).await.unwrap();
        cache.wait_fresh(r3).await.unwrap();
        assert!(cache.rv() >= r3);
    }
}
