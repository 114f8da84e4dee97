//! An in-process [`Kv`] with etcd's revision semantics, for unit tests of the layers
//! above storage. It keeps every version of every key, so reads at old revisions,
//! compaction and watches from the past behave as etcd's do.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{KeyValue, Kv, KvError, KvResult, RangePage, WatchEvent, WatchStream};

type Watcher = (
    Vec<u8>,
    Vec<u8>,
    mpsc::UnboundedSender<KvResult<WatchEvent>>,
);

#[derive(Default)]
struct State {
    revision: u64,
    compacted: u64,
    /// Every version of every key, oldest first; `None` is a delete at that revision.
    versions: BTreeMap<Vec<u8>, Vec<(u64, Option<KeyValue>)>>,
    log: Vec<(u64, WatchEvent)>,
    watchers: Vec<Watcher>,
}

impl State {
    fn at(&self, key: &[u8], rev: u64) -> Option<KeyValue> {
        let vs = self.versions.get(key)?;
        vs.iter()
            .rev()
            .find(|(r, _)| *r <= rev)
            .and_then(|(_, v)| v.clone())
    }
    fn latest(&self, key: &[u8]) -> Option<KeyValue> {
        self.at(key, u64::MAX)
    }
    fn emit(&mut self, ev: WatchEvent) {
        let key = match &ev {
            WatchEvent::Put { kv, .. } => kv.key.clone(),
            WatchEvent::Delete { key, .. } => key.clone(),
            WatchEvent::Progress { .. } => Vec::new(),
        };
        self.log.push((self.revision, ev.clone()));
        self.watchers
            .retain(|(s, e, tx)| !in_range(&key, s, e) || tx.send(Ok(ev.clone())).is_ok());
    }
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else {
        key >= start && (end == [0] || key < end)
    }
}

/// The in-memory store.
#[derive(Clone, Default)]
pub struct MemoryKv {
    state: Arc<Mutex<State>>,
}

impl MemoryKv {
    /// An empty store at revision 1, as a fresh etcd.
    pub fn new() -> Self {
        let kv = Self::default();
        kv.state.lock().revision = 1;
        kv
    }

    fn put(&self, key: &[u8], value: Vec<u8>, expected: Option<u64>) -> KvResult<u64> {
        let mut st = self.state.lock();
        let prev = st.latest(key);
        match expected {
            None if prev.is_some() => return Err(KvError::Exists),
            Some(e) if prev.as_ref().map(|p| p.mod_revision) != Some(e) => {
                return Err(KvError::CompareFailed(prev));
            }
            _ => {}
        }
        st.revision += 1;
        let rev = st.revision;
        let kv = KeyValue {
            key: key.to_vec(),
            value,
            mod_revision: rev,
            create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(rev),
            stale: false,
        };
        st.versions
            .entry(key.to_vec())
            .or_default()
            .push((rev, Some(kv.clone())));
        st.emit(WatchEvent::Put { kv, prev });
        Ok(rev)
    }
}

impl Kv for MemoryKv {
    fn get(&self, key: &[u8]) -> BoxFuture<'_, KvResult<(Option<KeyValue>, u64)>> {
        let st = self.state.lock();
        let r = Ok((st.latest(key), st.revision));
        futures::future::ready(r).boxed()
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
        limit: u64,
    ) -> BoxFuture<'_, KvResult<RangePage>> {
        let st = self.state.lock();
        let rev = if revision == 0 { st.revision } else { revision };
        let r = if revision != 0 && revision < st.compacted {
            Err(KvError::Compacted(st.compacted))
        } else if rev > st.revision {
            Err(KvError::FutureRevision)
        } else {
            let all: Vec<KeyValue> = st
                .versions
                .keys()
                .filter(|k| in_range(k, start, end))
                .filter_map(|k| st.at(k, rev))
                .collect();
            let count = all.len() as u64;
            let take = if limit == 0 {
                all.len()
            } else {
                limit as usize
            };
            Ok(RangePage {
                more: all.len() > take,
                kvs: all.into_iter().take(take).collect(),
                count,
                revision: st.revision,
            })
        };
        futures::future::ready(r).boxed()
    }

    fn create(&self, key: &[u8], value: Vec<u8>) -> BoxFuture<'_, KvResult<u64>> {
        futures::future::ready(self.put(key, value, None)).boxed()
    }

    fn update(&self, key: &[u8], value: Vec<u8>, expected: u64) -> BoxFuture<'_, KvResult<u64>> {
        futures::future::ready(self.put(key, value, Some(expected))).boxed()
    }

    fn delete(&self, key: &[u8], expected: u64) -> BoxFuture<'_, KvResult<u64>> {
        let mut st = self.state.lock();
        let prev = st.latest(key);
        let r = match prev {
            Some(p) if p.mod_revision == expected => {
                st.revision += 1;
                let rev = st.revision;
                st.versions
                    .entry(key.to_vec())
                    .or_default()
                    .push((rev, None));
                st.emit(WatchEvent::Delete {
                    key: key.to_vec(),
                    prev: Some(p),
                    revision: rev,
                });
                Ok(rev)
            }
            other => Err(KvError::CompareFailed(other)),
        };
        futures::future::ready(r).boxed()
    }

    fn watch(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
    ) -> BoxFuture<'_, KvResult<WatchStream>> {
        let mut st = self.state.lock();
        let r = if revision != 0 && revision < st.compacted {
            Err(KvError::Compacted(st.compacted))
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            if revision != 0 {
                for (r, ev) in &st.log {
                    let key = match ev {
                        WatchEvent::Put { kv, .. } => &kv.key,
                        WatchEvent::Delete { key, .. } => key,
                        WatchEvent::Progress { .. } => continue,
                    };
                    if *r >= revision && in_range(key, start, end) {
                        let _ = tx.send(Ok(ev.clone()));
                    }
                }
            }
            st.watchers.push((start.to_vec(), end.to_vec(), tx.clone()));
            let state = self.state.clone();
            let request_progress = Box::new(move || {
                let revision = state.lock().revision;
                let _ = tx.send(Ok(WatchEvent::Progress { revision }));
            });
            Ok(WatchStream {
                events: tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed(),
                request_progress,
            })
        };
        futures::future::ready(r).boxed()
    }

    fn current_revision(&self) -> BoxFuture<'_, KvResult<u64>> {
        futures::future::ready(Ok(self.state.lock().revision)).boxed()
    }

    fn compact(&self, revision: u64) -> BoxFuture<'_, KvResult<()>> {
        let mut st = self.state.lock();
        st.compacted = st.compacted.max(revision);
        st.log.retain(|(r, _)| *r >= revision);
        futures::future::ready(Ok(())).boxed()
    }
}
