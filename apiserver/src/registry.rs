//! Objects in the store, as upstream's generic registry store (`genericregistry.Store`
//! over `storage/etcd3`): keys, JSON encoding, resourceVersion from the store's
//! revisions, optimistic concurrency, and one watch cache per stored resource.
//!
//! Keys are `<prefix>/<storage>/<namespace>/<name>` for namespaced resources and
//! `<prefix>/<storage>/<name>` for cluster-scoped ones, with upstream's storage names
//! (`services/specs`, `minions`, `controllers`, ...). Objects are stored as JSON at the
//! storage version without `metadata.resourceVersion`; reads set it from the key's
//! mod revision.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::cache::WatchCache;
use crate::catalog::{Resource, catalog};
use crate::error::ApiError;
use crate::meta;
use crate::storage::{KeyValue, Kv, KvError};

/// The object store.
pub struct Registry {
    /// The key-value store.
    pub kv: Arc<dyn Kv>,
    /// `--etcd-prefix`.
    pub prefix: String,
    caches: parking_lot::RwLock<HashMap<&'static str, Arc<WatchCache>>>,
    /// Keys last read through a non-primary encryption provider (see [`Self::is_stale`]).
    stale: parking_lot::Mutex<std::collections::HashSet<String>>,
}

/// Maps a store error for `res`/`name` to an API error.
pub fn kv_error(res: &Resource, name: &str, e: KvError) -> ApiError {
    match e {
        KvError::Exists => ApiError::AlreadyExists {
            resource: res.gr(),
            name: name.to_owned(),
        },
        KvError::CompareFailed(None) => ApiError::not_found(&res.gr(), name),
        KvError::CompareFailed(Some(_)) => ApiError::stale(&res.gr(), name),
        KvError::Compacted(rev) => ApiError::Gone(format!(
            "The resourceVersion for the provided list is too old. (compacted: {rev})"
        )),
        KvError::FutureRevision => ApiError::TooLargeResourceVersion {
            requested: 0,
            current: 0,
        },
        KvError::Unavailable(m) | KvError::Transform(m) => ApiError::Internal(m),
    }
}

/// Decodes a stored object and sets its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::Internal(format!(
            "unable to decode {}: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    })?;
    meta::set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

/// Encodes an object for storage: no resourceVersion, no selfLink.
pub fn encode(obj: &Value) -> Vec<u8> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&o).unwrap_or_default()
}

impl Registry {
    /// Opens the registry and starts a watch cache for every stored resource.
    pub async fn new(kv: Arc<dyn Kv>, prefix: &str) -> Registry {
        let prefix = prefix.trim_end_matches('/').to_owned();
        let mut caches = HashMap::new();
        for r in catalog().all() {
            if r.converts()
                || caches.contains_key(r.storage)
                || r.plural == "bindings"
                || r.plural == "componentstatuses"
            {
                continue;
            }
            let p = format!("{prefix}/{}/", r.storage);
            caches.insert(r.storage, WatchCache::start(kv.clone(), p).await);
        }
        Registry {
            kv,
            prefix,
            caches: parking_lot::RwLock::new(caches),
            stale: Default::default(),
        }
    }

    /// Starts the watch cache of a resource added at run time (a custom resource).
    pub async fn ensure_cache(&self, res: &'static Resource) {
        if self.caches.read().contains_key(res.storage) {
            return;
        }
        let p = format!("{}/{}/", self.prefix, res.storage);
        let cache = WatchCache::start(self.kv.clone(), p).await;
        self.caches.write().entry(res.storage).or_insert(cache);
    }

    /// Drops the watch cache of a resource no longer served.
    pub fn drop_cache(&self, res: &Resource) {
        self.caches.write().remove(res.storage);
    }

    /// Whether the object was last read through an encryption provider other than the
    /// one writes use, so that an unchanged update must still be written.
    pub fn is_stale(&self, res: &Resource, ns: &str, name: &str) -> bool {
        self.stale.lock().contains(&self.key(res, ns, name))
    }

    /// The key of one object.
    pub fn key(&self, res: &Resource, ns: &str, name: &str) -> String {
        if res.namespaced {
            format!("{}/{}/{}/{}", self.prefix, res.storage, ns, name)
        } else {
            format!("{}/{}/{}", self.prefix, res.storage, name)
        }
    }

    /// The key prefix of a collection: every namespace, or one.
    pub fn collection(&self, res: &Resource, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if res.namespaced => format!("{}/{}/{}/", self.prefix, res.storage, ns),
            _ => format!("{}/{}/", self.prefix, res.storage),
        }
    }

    /// The watch cache of the resource's storage.
    pub fn cache(&self, res: &Resource) -> Option<Arc<WatchCache>> {
        self.caches.read().get(res.storage).cloned()
    }

    /// Reads one object from the store (a consistent read).
    pub async fn get(&self, res: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        let key = self.key(res, ns, name);
        match self.kv.get(key.as_bytes()).await {
            Ok((Some(kv), _)) => {
                if kv.stale {
                    self.stale.lock().insert(key);
                }
                decode(&kv)
            }
            Ok((None, _)) => Err(ApiError::not_found(&res.gr(), name)),
            Err(e) => Err(kv_error(res, name, e)),
        }
    }

    /// Stores a new object; returns it with its resourceVersion.
    pub async fn create(&self, res: &Resource, obj: &Value) -> Result<Value, ApiError> {
        let name = meta::name(obj);
        let key = self.key(res, meta::namespace(obj), name);
        let rev = self
            .kv
            .create(key.as_bytes(), encode(obj))
            .await
            .map_err(|e| kv_error(res, name, e))?;
        let mut out = obj.clone();
        meta::set_rv(&mut out, rev);
        Ok(out)
    }

    /// Replaces an object whose stored resourceVersion is `expected`.
    pub async fn update(
        &self,
        res: &Resource,
        obj: &Value,
        expected: u64,
    ) -> Result<Value, ApiError> {
        let name = meta::name(obj);
        let key = self.key(res, meta::namespace(obj), name);
        let rev = self
            .kv
            .update(key.as_bytes(), encode(obj), expected)
            .await
            .map_err(|e| kv_error(res, name, e))?;
        self.stale.lock().remove(&key);
        let mut out = obj.clone();
        meta::set_rv(&mut out, rev);
        Ok(out)
    }

    /// Removes an object whose stored resourceVersion is `expected`.
    pub async fn delete(
        &self,
        res: &Resource,
        obj: &Value,
        expected: u64,
    ) -> Result<u64, ApiError> {
        let name = meta::name(obj);
        let key = self.key(res, meta::namespace(obj), name);
        self.kv
            .delete(key.as_bytes(), expected)
            .await
            .map_err(|e| kv_error(res, name, e))
    }

    /// Reads and rewrites an object until the write lands without a conflict, as
    /// upstream's `GuaranteedUpdate`. `f` gets the current object and returns the new
    /// one, or `None` to leave it unchanged. A caller-set precondition (the
    /// resourceVersion `f` leaves on the object) is honoured: a mismatch is a
    /// Conflict, not a retry.
    pub async fn guaranteed_update<F>(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
        mut f: F,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(Value) -> Result<Option<Value>, ApiError>,
    {
        for _ in 0..16 {
            let cur = self.get(res, ns, name).await?;
            let cur_rv = meta::rv(&cur).unwrap_or(0);
            let Some(new) = f(cur.clone())? else {
                return Ok(cur);
            };
            if let Some(want) = meta::rv(&new)
                && want != cur_rv
            {
                return Err(ApiError::stale(&res.gr(), name));
            }
            match self.update(res, &new, cur_rv).await {
                Err(ApiError::Conflict { .. }) => {}
                other => return other,
            }
        }
        Err(ApiError::stale(&res.gr(), name))
    }
}
