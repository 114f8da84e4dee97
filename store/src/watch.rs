//! The watch hub: fan-out of applied changes to watchers.
//!
//! A watcher is *synced* once it has seen every event up to the hub's
//! `published_rev`; from then on the apply loop pushes matching events to it directly
//! ([`WatchHub::publish`]). A watcher that starts in the past first catches up from the
//! stored history ([`crate::mvcc::MvccStore::events_between`]) and then registers with
//! [`WatchHub::try_sync`], which succeeds only if nothing was published in between; if
//! something was, it reads again. So no event is lost or delivered twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use proto::mvccpb::Event;
use proto::mvccpb::event::EventType;
use tokio::sync::mpsc;

use crate::mvcc::{Change, KeyRange};

/// What a watcher's stream receives from the hub.
#[derive(Debug)]
pub enum HubMsg {
    /// Events of one apply round, in revision order, already filtered; `rev` is the
    /// round's last revision.
    Events {
        /// The hub-wide watcher ID.
        watcher: u64,
        /// The events.
        events: Vec<Event>,
        /// The last revision published.
        rev: i64,
    },
    /// The stored state was replaced (snapshot restore): catch up again from the
    /// last revision seen.
    Resync {
        /// The hub-wide watcher ID.
        watcher: u64,
    },
}

/// What a watcher wants.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The keys watched.
    pub range: KeyRange,
    /// Drop PUT events.
    pub no_put: bool,
    /// Drop DELETE events.
    pub no_delete: bool,
}

impl Filter {
    /// Whether the event passes.
    pub fn matches(&self, ev: &Event) -> bool {
        let is_put = ev.r#type == EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return false;
        }
        ev.kv
            .as_ref()
            .is_some_and(|kv| self.range.contains(&kv.key))
    }
}

struct Synced {
    filter: Filter,
    tx: mpsc::UnboundedSender<HubMsg>,
}

struct Inner {
    published_rev: i64,
    synced: HashMap<u64, Synced>,
}

/// The hub.
pub struct WatchHub {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
}

impl WatchHub {
    /// A hub whose history is complete up to `rev`.
    pub fn new(rev: i64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                published_rev: rev,
                synced: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh hub-wide watcher ID.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The last revision whose events were published.
    pub fn published_rev(&self) -> i64 {
        self.inner.lock().published_rev
    }

    /// Registers a watcher that has seen everything up to `seen`; fails (returning the
    /// current published revision) if more has been published since.
    pub fn try_sync(
        &self,
        id: u64,
        seen: i64,
        filter: Filter,
        tx: mpsc::UnboundedSender<HubMsg>,
    ) -> Result<(), i64> {
        let mut inner = self.inner.lock();
        if inner.published_rev != seen {
            return Err(inner.published_rev);
        }
        inner.synced.insert(id, Synced { filter, tx });
        Ok(())
    }

    /// Removes a watcher.
    pub fn remove(&self, id: u64) {
        self.inner.lock().synced.remove(&id);
    }

    /// The number of synced watchers.
    pub fn watchers(&self) -> usize {
        self.inner.lock().synced.len()
    }

    /// Publishes an apply round's changes (in revision order) and advances
    /// `published_rev` to `rev`.
    pub fn publish(&self, changes: &[(i64, Change)], rev: i64) {
        let mut inner = self.inner.lock();
        if !changes.is_empty() {
            inner.synced.retain(|id, w| {
                let events: Vec<Event> = changes
                    .iter()
                    .filter(|(_, c)| w.filter.matches(&c.event))
                    .map(|(_, c)| c.event.clone())
                    .collect();
                if events.is_empty() {
                    return true;
                }
                // A closed receiver means the stream is gone.
                w.tx.send(HubMsg::Events {
                    watcher: *id,
                    events,
                    rev,
                })
                .is_ok()
            });
        }
        inner.published_rev = inner.published_rev.max(rev);
    }

    /// After a snapshot restore: every synced watcher must catch up again.
    pub fn reset(&self, rev: i64) {
        let mut inner = self.inner.lock();
        inner.published_rev = rev;
        for (id, w) in inner.synced.drain() {
            let _ = w.tx.send(HubMsg::Resync { watcher: id });
        }
    }
}
