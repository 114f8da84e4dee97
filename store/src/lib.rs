//! keelson-store: a Raft-replicated key-value store that speaks the etcd v3 API.
#![allow(dead_code)]
pub mod crc32c;
pub mod engine;
pub mod mvcc;
