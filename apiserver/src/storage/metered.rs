//! `etcd_request_duration_seconds{operation,type}`: a [`Kv`] decorator that times every
//! store call, as upstream's etcd3 metrics do.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus::{HistogramOpts, HistogramVec, Registry};

use super::{KeyValue, Kv, KvResult, RangePage, WatchStream};

fn histogram() -> &'static HistogramVec {
    static H: OnceLock<HistogramVec> = OnceLock::new();
    H.get_or_init(|| {
        HistogramVec::new(
            HistogramOpts::new(
                "etcd_request_duration_seconds",
                "Etcd request latency in seconds for each operation and object type.",
            )
            .buckets(vec![
                0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0,
                6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
            ]),
            &["operation", "type"],
        )
        .expect("metric")
    })
}

/// Registers the histogram with `registry`.
pub fn register(registry: &Registry) {
    let _ = registry.register(Box::new(histogram().clone()));
}

/// The object type of a key: `/registry/pods/ns/x` is `pods`.
fn type_of(prefix_len: usize, key: &[u8]) -> String {
    let rest = String::from_utf8_lossy(key.get(prefix_len..).unwrap_or_default()).into_owned();
    let rest = rest.trim_start_matches('/');
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["services", sub, ..] => format!("services/{sub}"),
        [first, ..] => (*first).to_owned(),
        _ => String::new(),
    }
}

/// A timed [`Kv`].
pub struct MeteredKv {
    inner: Arc<dyn Kv>,
    prefix_len: usize,
}

impl MeteredKv {
    /// Wraps `inner`; keys start with `prefix`.
    pub fn new(inner: Arc<dyn Kv>, prefix: &str) -> Self {
        Self {
            inner,
            prefix_len: prefix.trim_end_matches('/').len(),
        }
    }
    fn timed<'a, T: Send + 'a>(
        &self,
        op: &'static str,
        key: &[u8],
        f: BoxFuture<'a, T>,
    ) -> BoxFuture<'a, T> {
        let ty = type_of(self.prefix_len, key);
        async move {
            let t = Instant::now();
            let r = f.await;
            histogram()
                .with_label_values(&[op, &ty])
                .observe(t.elapsed().as_secs_f64());
            r
        }
        .boxed()
    }
}

impl Kv for MeteredKv {
    fn get(&self, key: &[u8]) -> BoxFuture<'_, KvResult<(Option<KeyValue>, u64)>> {
        self.timed("get", key, self.inner.get(key))
    }
    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
        limit: u64,
    ) -> BoxFuture<'_, KvResult<RangePage>> {
        self.timed("list", start, self.inner.range(start, end, revision, limit))
    }
    fn create(&self, key: &[u8], value: Vec<u8>) -> BoxFuture<'_, KvResult<u64>> {
        self.timed("create", key, self.inner.create(key, value))
    }
    fn update(&self, key: &[u8], value: Vec<u8>, expected: u64) -> BoxFuture<'_, KvResult<u64>> {
        self.timed("update", key, self.inner.update(key, value, expected))
    }
    fn delete(&self, key: &[u8], expected: u64) -> BoxFuture<'_, KvResult<u64>> {
        self.timed("delete", key, self.inner.delete(key, expected))
    }
    fn watch(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
    ) -> BoxFuture<'_, KvResult<WatchStream>> {
        self.inner.watch(start, end, revision)
    }
    fn current_revision(&self) -> BoxFuture<'_, KvResult<u64>> {
        self.timed("getRevision", b"", self.inner.current_revision())
    }
    fn compact(&self, revision: u64) -> BoxFuture<'_, KvResult<()>> {
        self.timed("compact", b"", self.inner.compact(revision))
    }
}
