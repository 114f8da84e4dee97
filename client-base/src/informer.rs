//! Shared informers, as client-go's `SharedInformerFactory`: one list+watch per
//! resource (and selector) for the whole process, an indexed in-memory store that
//! every reader shares, and event handlers called in order for every change.
//!
//! ```text
//!  apiserver ──list+watch (kube-rs watcher, backoff)──▶ Informer<K>::run
//!                                                          │ 1. store (objects, indexes)
//!                                                          │ 2. handlers, in order:
//!                                                          ▼    on_add / on_update / on_delete
//!            readers: get, list, by_index       controllers' queues, the scheduler's cache
//! ```
//!
//! - A relist (the first list, and every list after a watch that expired) is
//!   applied as one swap: objects new to the store are adds (`initial` on the first
//!   list), changed ones updates, and those missing from the list deletes, as
//!   client-go's `Replace` (its `DeletedFinalStateUnknown` is the last object seen).
//! - The store is updated before the handlers are called, so a handler reading the
//!   store sees the change it is told about.
//! - Indexes are functions from an object to its values (`namespace`,
//!   `spec.nodeName`, owner UIDs); register them before the factory starts.
//! - A handler added after the informer has synced is first told of every object
//!   in the store as an add, as client-go's `AddEventHandler`.
//!
//! Handlers run on the informer's task: they must be quick (queue a key, update a
//! cache) and never block on the API.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;

/// What a shared informer can hold.
pub trait Object:
    kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}
impl<K> Object for K where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

/// The store key of an object: `namespace/name`, or `name` when cluster-scoped,
/// as client-go's `MetaNamespaceKeyFunc`.
pub fn key<K: kube::Resource>(obj: &K) -> String {
    let m = obj.meta();
    match m.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", m.name.as_deref().unwrap_or_default()),
        _ => m.name.clone().unwrap_or_default(),
    }
}

/// Reacts to an informer's changes.
pub trait Handler<K>: Send + Sync {
    /// `obj` appeared; `initial` while the informer applies its first list.
    fn on_add(&self, _obj: &Arc<K>, _initial: bool) {}
    /// `old` became `new`.
    fn on_update(&self, _old: &Arc<K>, _new: &Arc<K>) {}
    /// `obj` (its last known state) is gone.
    fn on_delete(&self, _obj: &Arc<K>) {}
}

type AddFn<K> = Box<dyn Fn(&Arc<K>, bool) + Send + Sync>;
type UpdateFn<K> = Box<dyn Fn(&Arc<K>, &Arc<K>) + Send + Sync>;
type DeleteFn<K> = Box<dyn Fn(&Arc<K>) + Send + Sync>;

/// A [`Handler`] made of closures, as client-go's `ResourceEventHandlerFuncs`.
pub struct Funcs<K> {
    add: Option<AddFn<K>>,
    update: Option<UpdateFn<K>>,
    delete: Option<DeleteFn<K>>,
}

impl<K> Default for Funcs<K> {
    fn default() -> Self {
        Funcs {
            add: None,
            update: None,
            delete: None,
        }
    }
}

impl<K> Funcs<K> {
    /// No reactions yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Calls `f(obj, initial)` on adds.
    pub fn on_add(mut self, f: impl Fn(&Arc<K>, bool) + Send + Sync + 'static) -> Self {
        self.add = Some(Box::new(f));
        self
    }
    /// Calls `f(old, new)` on updates.
    pub fn on_update(mut self, f: impl Fn(&Arc<K>, &Arc<K>) + Send + Sync + 'static) -> Self {
        self.update = Some(Box::new(f));
        self
    }
    /// Calls `f(obj)` on deletes.
    pub fn on_delete(mut self, f: impl Fn(&Arc<K>) + Send + Sync + 'static) -> Self {
        self.delete = Some(Box::new(f));
        self
    }
}

impl<K> Handler<K> for Funcs<K> {
    fn on_add(&self, obj: &Arc<K>, initial: bool) {
        if let Some(f) = &self.add {
            f(obj, initial);
        }
    }
    fn on_update(&self, old: &Arc<K>, new: &Arc<K>) {
        if let Some(f) = &self.update {
            f(old, new);
        }
    }
    fn on_delete(&self, obj: &Arc<K>) {
        if let Some(f) = &self.delete {
            f(obj);
        }
    }
}

/// An index function: the values an object is found under.
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// A transform applied to objects before they are stored.
pub type Transform<K> = Arc<dyn Fn(&mut K) + Send + Sync>;

/// Drops `metadata.managedFields`, which no controller reads and which can be most
/// of an object's size (upstream's components install the same transform).
pub fn strip_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// The index of objects by namespace.
pub const NAMESPACE: &str = "namespace";
/// The index of objects by owner reference UID.
pub const OWNER_UID: &str = "ownerUID";

struct Store<K> {
    objects: HashMap<String, Arc<K>>,
    /// index name → value → keys.
    indices: HashMap<&'static str, HashMap<String, HashSet<String>>>,
}

/// One resource's list+watch, store and handlers.
pub struct Informer<K: Object> {
    api: Api<K>,
    config: watcher::Config,
    store: RwLock<Store<K>>,
    indexers: RwLock<Vec<(&'static str, IndexFn<K>)>>,
    handlers: RwLock<Vec<Arc<dyn Handler<K>>>>,
    /// Applied to every object before it is stored (client-go's `SetTransform`).
    transform: RwLock<Option<Transform<K>>>,
    /// Serialises handler calls with [`Informer::add_handler`]'s replay.
    dispatch: Mutex<()>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K: Object> Informer<K> {
    fn new(api: Api<K>, config: watcher::Config) -> Self {
        let namespace: IndexFn<K> =
            Arc::new(|o: &K| o.meta().namespace.clone().into_iter().collect());
        let owners: IndexFn<K> = Arc::new(|o: &K| {
            o.meta()
                .owner_references
                .iter()
                .flatten()
                .map(|r| r.uid.clone())
                .collect()
        });
        Informer {
            api,
            config,
            store: RwLock::new(Store {
                objects: HashMap::new(),
                indices: HashMap::new(),
            }),
            indexers: RwLock::new(vec![(NAMESPACE, namespace), (OWNER_UID, owners)]),
            handlers: RwLock::new(Vec::new()),
            transform: RwLock::new(None),
            dispatch: Mutex::new(()),
            synced: tokio::sync::watch::channel(false).0,
        }
    }

    /// Adds an index; call before the factory starts (objects already stored are
    /// indexed too).
    pub fn add_index(
        &self,
        name: &'static str,
        f: impl Fn(&K) -> Vec<String> + Send + Sync + 'static,
    ) {
        let f: IndexFn<K> = Arc::new(f);
        let mut store = self.store.write();
        let mut index: HashMap<String, HashSet<String>> = HashMap::new();
        for (k, o) in &store.objects {
            for v in f(o) {
                index.entry(v).or_default().insert(k.clone());
            }
        }
        store.indices.insert(name, index);
        self.indexers.write().push((name, f));
    }

    /// Transforms every object before it is stored and handed to handlers (set it
    /// before the factory starts), e.g. [`strip_managed_fields`].
    pub fn set_transform(&self, f: impl Fn(&mut K) + Send + Sync + 'static) {
        *self.transform.write() = Some(Arc::new(f));
    }

    /// Adds a handler. Once synced, it is first told of every stored object.
    pub fn add_handler(&self, h: impl Handler<K> + 'static) {
        let h: Arc<dyn Handler<K>> = Arc::new(h);
        let _serial = self.dispatch.lock();
        if *self.synced.borrow() {
            for o in self.list() {
                h.on_add(&o, true);
            }
        }
        self.handlers.write().push(h);
    }

    /// The object stored under `key` (`namespace/name` or `name`).
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.store.read().objects.get(key).cloned()
    }

    /// Every stored object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.store.read().objects.values().cloned().collect()
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        self.store.read().objects.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects found under `value` in index `name` (none for an unknown index).
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let store = self.store.read();
        let Some(keys) = store.indices.get(name).and_then(|i| i.get(value)) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| store.objects.get(k).cloned())
            .collect()
    }

    /// Whether the first list has been applied.
    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list has been applied.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn index_values(&self, obj: &K) -> Vec<(&'static str, Vec<String>)> {
        self.indexers
            .read()
            .iter()
            .map(|(n, f)| (*n, f(obj)))
            .collect()
    }

    /// Stores `obj` under `key`, returning what it replaced.
    fn put(&self, key: &str, obj: Arc<K>) -> Option<Arc<K>> {
        let new_values = self.index_values(&obj);
        let mut store = self.store.write();
        let old = store.objects.insert(key.to_owned(), obj);
        let old_values = old.as_ref().map(|o| self.index_values(o));
        Self::unindex(&mut store, key, old_values);
        for (name, values) in new_values {
            let index = store.indices.entry(name).or_default();
            for v in values {
                index.entry(v).or_default().insert(key.to_owned());
            }
        }
        old
    }

    fn take(&self, key: &str) -> Option<Arc<K>> {
        let mut store = self.store.write();
        let old = store.objects.remove(key)?;
        let values = self.index_values(&old);
        Self::unindex(&mut store, key, Some(values));
        Some(old)
    }

    fn unindex(store: &mut Store<K>, key: &str, values: Option<Vec<(&'static str, Vec<String>)>>) {
        for (name, values) in values.into_iter().flatten() {
            if let Some(index) = store.indices.get_mut(name) {
                for v in values {
                    if let Some(keys) = index.get_mut(&v) {
                        keys.remove(key);
                        if keys.is_empty() {
                            index.remove(&v);
                        }
                    }
                }
            }
        }
    }

    fn handlers(&self) -> Vec<Arc<dyn Handler<K>>> {
        self.handlers.read().clone()
    }

    /// Applies one upsert and tells the handlers.
    fn apply(&self, mut obj: K, initial: bool) {
        if let Some(t) = self.transform.read().as_ref() {
            t(&mut obj);
        }
        let k = key(&obj);
        let obj = Arc::new(obj);
        let _serial = self.dispatch.lock();
        match self.put(&k, obj.clone()) {
            Some(old) => self.handlers().iter().for_each(|h| h.on_update(&old, &obj)),
            None => self.handlers().iter().for_each(|h| h.on_add(&obj, initial)),
        }
    }

    fn delete(&self, obj: &K) {
        let k = key(obj);
        let _serial = self.dispatch.lock();
        if let Some(old) = self.take(&k) {
            self.handlers().iter().for_each(|h| h.on_delete(&old));
        }
    }

    /// Applies a complete list: adds, updates, and deletes for what it lacks.
    fn replace(&self, listed: Vec<K>) {
        let initial = !self.has_synced();
        let mut seen = HashSet::with_capacity(listed.len());
        for obj in listed {
            seen.insert(key(&obj));
            // An unchanged object (same resourceVersion) is not an update.
            let k = key(&obj);
            let same = self.get(&k).is_some_and(|o| {
                o.meta().resource_version.is_some()
                    && o.meta().resource_version == obj.meta().resource_version
            });
            if !same {
                self.apply(obj, initial);
            }
        }
        let gone: Vec<Arc<K>> = {
            let store = self.store.read();
            store
                .objects
                .iter()
                .filter(|(k, _)| !seen.contains(*k))
                .map(|(_, o)| o.clone())
                .collect()
        };
        for o in gone {
            self.delete(&o);
        }
        self.synced.send_replace(true);
    }

    /// Lists and watches until the process ends, relisting after failures with
    /// kube-rs's default backoff.
    async fn run(self: Arc<Self>) {
        let mut events = watcher(self.api.clone(), self.config.clone())
            .default_backoff()
            .boxed();
        let mut listing: Option<Vec<K>> = None;
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Init) => listing = Some(Vec::new()),
                Ok(watcher::Event::InitApply(o)) => listing.get_or_insert_with(Vec::new).push(o),
                Ok(watcher::Event::InitDone) => self.replace(listing.take().unwrap_or_default()),
                Ok(watcher::Event::Apply(o)) => self.apply(o, false),
                Ok(watcher::Event::Delete(o)) => self.delete(&o),
                Err(e) => tracing::info!(
                    resource = %K::plural(&()),
                    error = %e,
                    "informer list/watch failed; retrying"
                ),
            }
        }
    }
}

/// Starts one informer's task.
type Starter = Box<dyn FnOnce() -> tokio::task::JoinHandle<()> + Send>;

type Erased = (
    Arc<dyn Any + Send + Sync>,
    tokio::sync::watch::Receiver<bool>,
);

/// Starts and holds the process's informers; dropping it stops them.
pub struct SharedInformerFactory {
    client: kube::Client,
    /// Each informer, type-erased, with its synced flag.
    informers: Mutex<HashMap<(TypeId, String), Erased>>,
    starters: Mutex<Vec<Starter>>,
    running: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    strip_managed_fields: bool,
}

impl SharedInformerFactory {
    /// Informers that list and watch through `client`.
    pub fn new(client: kube::Client) -> Self {
        SharedInformerFactory {
            client,
            informers: Mutex::new(HashMap::new()),
            starters: Mutex::new(Vec::new()),
            running: Mutex::new(Vec::new()),
            strip_managed_fields: false,
        }
    }

    /// Informers that drop every object's `managedFields` (upstream's
    /// kube-controller-manager installs this transform on its factory).
    pub fn without_managed_fields(mut self) -> Self {
        self.strip_managed_fields = true;
        self
    }

    /// The client the informers use.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The informer of every `K` in the cluster, created on first use.
    pub fn informer<K: Object>(&self) -> Arc<Informer<K>> {
        self.informer_with(watcher::Config::default())
    }

    /// The informer of the `K`s `config` selects (label and field selectors); one
    /// per distinct selection.
    pub fn informer_with<K: Object>(&self, config: watcher::Config) -> Arc<Informer<K>> {
        let id = (
            TypeId::of::<K>(),
            format!("{:?}|{:?}", config.label_selector, config.field_selector),
        );
        let mut informers = self.informers.lock();
        if let Some((i, _)) = informers.get(&id) {
            return i.clone().downcast::<Informer<K>>().expect("keyed by type");
        }
        let informer = Arc::new(Informer::new(Api::<K>::all(self.client.clone()), config));
        if self.strip_managed_fields {
            informer.set_transform(strip_managed_fields::<K>);
        }
        informers.insert(id, (informer.clone(), informer.synced.subscribe()));
        let i = informer.clone();
        self.starters
            .lock()
            .push(Box::new(move || tokio::spawn(i.run())));
        informer
    }

    /// Starts every informer created so far that is not running yet.
    pub fn start(&self) {
        let starters: Vec<_> = self.starters.lock().drain(..).collect();
        let mut running = self.running.lock();
        for s in starters {
            running.push(s());
        }
    }

    /// Waits until every informer created so far has applied its first list.
    pub async fn wait_for_cache_sync(&self) {
        let all: Vec<_> = self
            .informers
            .lock()
            .values()
            .map(|(_, synced)| synced.clone())
            .collect();
        for mut synced in all {
            let _ = synced.wait_for(|s| *s).await;
        }
    }
}

impl Drop for SharedInformerFactory {
    fn drop(&mut self) {
        for h in self.running.lock().drain(..) {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Pod, PodSpec};

    use super::*;

    fn informer() -> Informer<Pod> {
        // A client that is never called: these tests drive the store directly.
        let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
                "offline",
            ))
        });
        Informer::new(
            Api::all(kube::Client::new(svc, "default")),
            watcher::Config::default(),
        )
    }

    fn pod(name: &str, node: &str, rv: &str) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn relists_are_diffed_into_adds_updates_and_deletes_with_indexes() {
        let inf = informer();
        inf.add_index("nodeName", |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .into_iter()
                .collect()
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let (a, u, d) = (log.clone(), log.clone(), log.clone());
        inf.add_handler(
            Funcs::new()
                .on_add(move |p: &Arc<Pod>, initial| {
                    a.lock().push(format!("add {} {initial}", key(&**p)))
                })
                .on_update(move |_, p: &Arc<Pod>| u.lock().push(format!("update {}", key(&**p))))
                .on_delete(move |p: &Arc<Pod>| d.lock().push(format!("delete {}", key(&**p)))),
        );
        inf.replace(vec![pod("a", "n1", "1"), pod("b", "n1", "1")]);
        assert!(inf.has_synced());
        inf.wait_synced().await;
        assert_eq!(inf.by_index("nodeName", "n1").len(), 2);
        assert_eq!(inf.by_index(NAMESPACE, "ns").len(), 2);
        inf.apply(pod("a", "n2", "2"), false);
        assert_eq!(
            inf.by_index("nodeName", "n1").len(),
            1,
            "reindexed on update"
        );
        // A relist after a lost watch: b unchanged, a changed, c new, and nothing
        // else: what vanished is a delete.
        inf.replace(vec![pod("a", "n2", "3"), pod("c", "n3", "1")]);
        let mut got = log.lock().clone();
        got.sort();
        assert_eq!(
            got,
            [
                "add ns/a true",
                "add ns/b true",
                "add ns/c false",
                "delete ns/b",
                "update ns/a",
                "update ns/a"
            ]
        );
        assert!(inf.by_index("nodeName", "n1").is_empty());
        assert_eq!(inf.get("ns/c").unwrap().metadata.name.as_deref(), Some("c"));
        // A transform applies to what is stored from then on.
        inf.set_transform(strip_managed_fields::<Pod>);
        let mut p = pod("m", "n1", "9");
        p.metadata.managed_fields = Some(vec![Default::default()]);
        inf.apply(p, false);
        assert!(inf.get("ns/m").unwrap().metadata.managed_fields.is_none());
        inf.delete(&pod("m", "n1", "9"));
        log.lock()
            .retain(|l| !l.ends_with("ns/m") && !l.contains("ns/m "));
        // A late handler hears of every stored object first.
        let late = Arc::new(Mutex::new(0));
        let l = late.clone();
        inf.add_handler(Funcs::new().on_add(move |_: &Arc<Pod>, _| *l.lock() += 1));
        assert_eq!(*late.lock(), 2);
    }
}
