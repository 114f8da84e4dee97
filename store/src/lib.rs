//! keelson-store: a Raft-replicated key-value store that speaks the etcd v3 API.
//!
//! ```text
//!  etcdctl / apiserver ──gRPC──▶ server::{kv,watch,lease,cluster,maintenance}
//!                                   │ writes: Core::propose ─▶ node (Raft thread)
//!                                   │ reads:  Core::linearizable (ReadIndex) ─▶ mvcc
//!  peers ◀──gRPC Peer.Send── transport ◀── node ──▶ statemachine::apply ──▶ mvcc + lease
//!                                                          │                  │
//!                                                   watch::WatchHub     engine (redb|sled)
//! ```
//!
//! - [`engine`]: the storage trait and its redb and sled implementations, with one
//!   conformance suite. redb is the default: it commits atomically and fsyncs per
//!   durable commit, while sled 0.34 is durable only after an explicit flush, has had
//!   no release since 2021, and reports space and memory blow-ups. BENCHMARKS.md has
//!   the measured comparison.
//! - [`mvcc`]: etcd's revision model: global revision, per-key create/mod revision and
//!   version, tombstones, reads at past revisions, compaction.
//! - [`statemachine`]: what applying a committed entry does, with etcd's validation.
//! - [`node`]: the raft-rs `RawNode` driven in the Ready order, with fsync before
//!   acknowledging; [`raftlog`]: its persisted log; [`transport`]: messages to peers.
//! - [`server`]: the etcd v3 gRPC services and the peer service; [`serve`]: listeners.
//! - [`snapshot`]: the snapshot format shared by Raft catch-up, `etcdctl snapshot save`
//!   and `keelson-store snapshot restore`.
//!
//! # Limitations (known, recorded rather than hidden)
//!
//! - The Auth service (users, roles, `etcdctl auth`) and the v3lock/v3election services
//!   are not served; `MemberUpdate` and `Downgrade` answer Unimplemented.
//! - Snapshots are built in memory and sent as one Raft message; a very large store
//!   needs chunked snapshot streaming.
//! - A watcher whose client reads slowly buffers events without bound (etcd moves such
//!   watchers to a victim set).
//! - Snapshot files are not bbolt files: `etcdctl snapshot status` cannot read them;
//!   `keelson-store snapshot restore` restores them.

pub mod app;
pub mod config;
pub mod crc32c;
pub mod engine;
pub mod error;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod node;
pub mod raftlog;
pub mod restore;
pub mod serve;
pub mod server;
pub mod slog_bridge;
pub mod snapshot;
pub mod statemachine;
pub mod transport;
pub mod watch;
