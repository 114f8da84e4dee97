//! The key-value side of the apiserver: what it needs from etcd, behind [`Kv`].
//!
//! [`etcd::EtcdKv`] speaks the etcd v3 gRPC API (keelson-store, or a real etcd 3.4/3.5).
//! [`memory::MemoryKv`] is an in-process fake with the same semantics for unit tests of
//! the registry logic. Everything above this module sees revisions, not objects; the
//! registry turns revisions into resourceVersions.

pub mod encryption;
pub mod etcd;
pub mod memory;
pub mod metered;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// A stored value and the revision that last modified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// Full key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// The revision of the last modification: the object's resourceVersion.
    pub mod_revision: u64,
    /// The revision that created the key.
    pub create_revision: u64,
    /// Read through an encryption provider other than the one writes use: the value
    /// should be rewritten even when unchanged (upstream's `stale` transform result,
    /// what makes `kubectl replace` rotate keys).
    pub stale: bool,
}

/// One page of a range read.
#[derive(Clone, Debug, Default)]
pub struct RangePage {
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// More keys follow the page.
    pub more: bool,
    /// Keys in the whole range at that revision.
    pub count: u64,
    /// The revision the read was served at.
    pub revision: u64,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A put: `prev` is the value before it, if the key existed.
    Put {
        /// The new value.
        kv: KeyValue,
        /// The previous value.
        prev: Option<KeyValue>,
    },
    /// A delete at `revision`; `prev` is the deleted value.
    Delete {
        /// The key.
        key: Vec<u8>,
        /// The deleted value, when the store returned it.
        prev: Option<KeyValue>,
        /// The revision of the delete.
        revision: u64,
    },
    /// The watch has seen every change up to `revision`.
    Progress {
        /// The revision.
        revision: u64,
    },
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// `create` found the key.
    #[error("key exists")]
    Exists,
    /// A compare failed; carries the current value, if any.
    #[error("compare failed")]
    CompareFailed(Option<KeyValue>),
    /// The requested revision was compacted.
    #[error("required revision has been compacted (compacted: {0})")]
    Compacted(u64),
    /// The requested revision is in the future.
    #[error("required revision is a future revision")]
    FutureRevision,
    /// The store is unreachable or failed.
    #[error("etcd: {0}")]
    Unavailable(String),
    /// A value could not be encrypted or decrypted (`--encryption-provider-config`).
    #[error("{0}")]
    Transform(String),
}

/// Result of a store call.
pub type KvResult<T> = Result<T, KvError>;

/// A running watch: its events, and a way to ask the store for a progress
/// notification (delivered in order, after every event before it).
pub struct WatchStream {
    /// The events.
    pub events: BoxStream<'static, KvResult<WatchEvent>>,
    /// Requests a [`WatchEvent::Progress`].
    pub request_progress: Box<dyn Fn() + Send + Sync>,
}

/// What the apiserver needs from etcd.
pub trait Kv: Send + Sync + 'static {
    /// Reads one key (a linearizable read).
    fn get(&self, key: &[u8]) -> BoxFuture<'_, KvResult<(Option<KeyValue>, u64)>>;
    /// Reads keys in `[start, end)` at `revision` (0: latest), at most `limit` (0: all).
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
        limit: u64,
    ) -> BoxFuture<'_, KvResult<RangePage>>;
    /// Creates `key` if absent; returns the new revision or [`KvError::Exists`].
    fn create(&self, key: &[u8], value: Vec<u8>) -> BoxFuture<'_, KvResult<u64>>;
    /// Replaces `key` if its mod revision is `expected`; returns the new revision or
    /// [`KvError::CompareFailed`] with the current value.
    fn update(&self, key: &[u8], value: Vec<u8>, expected: u64) -> BoxFuture<'_, KvResult<u64>>;
    /// Deletes `key` if its mod revision is `expected`; returns the delete's revision.
    fn delete(&self, key: &[u8], expected: u64) -> BoxFuture<'_, KvResult<u64>>;
    /// Watches keys in `[start, end)` from `revision` (inclusive), with previous values
    /// and progress notifications.
    fn watch(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
    ) -> BoxFuture<'_, KvResult<WatchStream>>;
    /// The store's current revision.
    fn current_revision(&self) -> BoxFuture<'_, KvResult<u64>>;
    /// Compacts history before `revision`.
    fn compact(&self, revision: u64) -> BoxFuture<'_, KvResult<()>>;
}

/// The end of the range holding every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
