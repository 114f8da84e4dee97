//! The collector against an in-memory cluster that deletes and patches as the
//! apiserver does (finalizers, deletionTimestamp, resourceVersion preconditions)
//! and reports each change back as a monitor would.

use std::collections::HashMap;

use super::*;

#[derive(Clone, Debug)]
struct Obj {
    r: ObjectRef,
    meta: Meta,
}

enum Change {
    Upsert(Observed),
    Deleted(String),
}

#[derive(Default)]
struct Fake {
    objects: Mutex<HashMap<String, Obj>>,
    changes: Mutex<Vec<Change>>,
    rv: Mutex<u64>,
    deletes: Mutex<Vec<(String, Propagation)>>,
}

fn observed(o: &Obj) -> Observed {
    Observed {
        identity: o.r.clone(),
        owners: o.meta.owners.clone(),
        being_deleted: o.meta.being_deleted,
        finalizers: o.meta.finalizers.clone(),
    }
}

impl Fake {
    fn next_rv(&self) -> String {
        let mut g = self.rv.lock();
        *g += 1;
        g.to_string()
    }

    fn add(&self, kind: &str, ns: &str, name: &str, owners: Vec<OwnerRef>) -> ObjectRef {
        let uid = format!("uid-{name}");
        let r = ObjectRef {
            api_version: if kind == "Pod" {
                "v1".into()
            } else {
                "apps/v1".into()
            },
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            uid: uid.clone(),
        };
        let o = Obj {
            r: r.clone(),
            meta: Meta {
                uid: uid.clone(),
                resource_version: self.next_rv(),
                owners,
                finalizers: Vec::new(),
                being_deleted: false,
            },
        };
        self.changes.lock().push(Change::Upsert(observed(&o)));
        self.objects.lock().insert(uid, o);
        r
    }

    /// What a user's DELETE does to an object.
    fn user_delete(&self, r: &ObjectRef, policy: Propagation) {
        let rv = self.objects.lock()[&r.uid].meta.resource_version.clone();
        self.apply_delete(r, policy, &rv).unwrap();
    }

    fn apply_delete(&self, r: &ObjectRef, policy: Propagation, rv: &str) -> Result<(), Error> {
        let mut objs = self.objects.lock();
        let Some(o) = objs.get_mut(&r.uid) else {
            return Err(Error::NotFound);
        };
        if !rv.is_empty() && o.meta.resource_version != rv {
            return Err(Error::Conflict("the object has been modified".into()));
        }
        let f = match policy {
            Propagation::Orphan => Some(ORPHAN),
            Propagation::Foreground => Some(FOREGROUND),
            Propagation::Background => None,
        };
        if let Some(f) = f.filter(|f| !o.meta.finalizers.iter().any(|x| x == f)) {
            o.meta.finalizers.push(f.into());
        }
        if o.meta.finalizers.is_empty() {
            objs.remove(&r.uid);
            self.changes.lock().push(Change::Deleted(r.uid.clone()));
        } else {
            o.meta.being_deleted = true;
            o.meta.resource_version = self.next_rv();
            let ob = observed(o);
            self.changes.lock().push(Change::Upsert(ob));
        }
        Ok(())
    }

    fn get_obj(&self, uid: &str) -> Option<Obj> {
        self.objects.lock().get(uid).cloned()
    }
}

impl Cluster for Fake {
    fn namespaced(&self, _api_version: &str, kind: &str) -> Result<bool, Error> {
        match kind {
            "Pod" | "ReplicaSet" | "Deployment" => Ok(true),
            "Node" => Ok(false),
            k => Err(Error::UnknownKind(k.into())),
        }
    }

    async fn get(&self, r: &ObjectRef) -> Result<Option<Meta>, Error> {
        Ok(self
            .objects
            .lock()
            .values()
            .find(|o| o.r.kind == r.kind && o.r.namespace == r.namespace && o.r.name == r.name)
            .map(|o| o.meta.clone()))
    }

    async fn delete(&self, r: &ObjectRef, policy: Propagation, rv: &str) -> Result<(), Error> {
        self.deletes.lock().push((r.name.clone(), policy));
        self.apply_delete(r, policy, rv)
    }

    async fn patch(&self, r: &ObjectRef, patch: Value) -> Result<(), Error> {
        let mut objs = self.objects.lock();
        let Some(o) = objs.get_mut(&r.uid) else {
            return Err(Error::NotFound);
        };
        let md = &patch["metadata"];
        if md["resourceVersion"].as_str() != Some(o.meta.resource_version.as_str()) {
            return Err(Error::Conflict("the object has been modified".into()));
        }
        if let Some(refs) = md["ownerReferences"].as_array() {
            o.meta.owners = refs
                .iter()
                .map(|v| OwnerRef {
                    api_version: v["apiVersion"].as_str().unwrap().into(),
                    kind: v["kind"].as_str().unwrap().into(),
                    name: v["name"].as_str().unwrap().into(),
                    uid: v["uid"].as_str().unwrap().into(),
                    controller: v["controller"].as_bool(),
                    block_owner_deletion: v["blockOwnerDeletion"].as_bool(),
                })
                .collect();
        }
        if let Some(f) = md["finalizers"].as_array() {
            o.meta.finalizers = f.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        }
        if o.meta.being_deleted && o.meta.finalizers.is_empty() {
            let uid = r.uid.clone();
            objs.remove(&uid);
            self.changes.lock().push(Change::Deleted(uid));
        } else {
            o.meta.resource_version = self.next_rv();
            let ob = observed(o);
            self.changes.lock().push(Change::Upsert(ob));
        }
        Ok(())
    }
}

fn owner(r: &ObjectRef, block: bool) -> OwnerRef {
    OwnerRef {
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        name: r.name.clone(),
        uid: r.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(block),
    }
}

/// Feeds the cluster's changes to the collector and runs its queues until both
/// are quiet, as the monitors and workers would.
/// Feeds the cluster's pending changes to the graph, as the monitors would.
fn feed(gc: &GarbageCollector<Fake>) {
    let changes: Vec<Change> = std::mem::take(&mut *gc.cluster.changes.lock());
    for c in changes {
        match c {
            Change::Upsert(o) => gc.observe(o),
            Change::Deleted(uid) => gc.observe_deleted(&uid),
        }
    }
}

/// A reference to a ReplicaSet that does not exist.
fn absent_rs(ns: &str, name: &str, uid: &str) -> ObjectRef {
    ObjectRef {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
    }
}

async fn settle(gc: &GarbageCollector<Fake>) {
    for _ in 0..1000 {
        feed(gc);
        if let Some(uid) = gc.delete_queue.try_get() {
            // As the worker does: an invalid reference is reported and forgotten.
            match gc.attempt_to_delete(&uid).await {
                Ok(()) | Err(Error::NamespacedOwnerOfClusterScoped(_)) => {}
                Err(e) => panic!("attempt to delete {uid}: {e}"),
            }
            gc.delete_queue.done(&uid);
            continue;
        }
        if let Some(uid) = gc.orphan_queue.try_get() {
            gc.attempt_to_orphan(&uid).await.unwrap();
            gc.orphan_queue.done(&uid);
            continue;
        }
        if gc.cluster.changes.lock().is_empty() {
            return;
        }
    }
    panic!("the collector did not settle");
}

/// A deployment owning a replicaset owning two pods.
fn tree(fake: &Fake, block: bool) -> (ObjectRef, ObjectRef, ObjectRef, ObjectRef) {
    let d = fake.add("Deployment", "ns", "web", vec![]);
    let rs = fake.add("ReplicaSet", "ns", "web-1", vec![owner(&d, block)]);
    let p1 = fake.add("Pod", "ns", "web-1-a", vec![owner(&rs, block)]);
    let p2 = fake.add("Pod", "ns", "web-1-b", vec![owner(&rs, block)]);
    (d, rs, p1, p2)
}

#[tokio::test]
async fn background_deletion_collects_the_whole_tree() {
    let gc = GarbageCollector::new(Fake::default(), None);
    let (d, rs, p1, p2) = tree(&gc.cluster, false);
    settle(&gc).await;
    assert!(
        gc.cluster.deletes.lock().is_empty(),
        "owners present: nothing to do"
    );
    gc.cluster.user_delete(&d, Propagation::Background);
    settle(&gc).await;
    for r in [&d, &rs, &p1, &p2] {
        assert!(gc.cluster.get_obj(&r.uid).is_none(), "{} remains", r.name);
    }
    assert_eq!(gc.graph_len(), 0);
}

#[tokio::test]
async fn foreground_deletion_deletes_dependents_first_then_drops_the_finalizer() {
    let gc = GarbageCollector::new(Fake::default(), None);
    let (d, rs, p1, p2) = tree(&gc.cluster, true);
    settle(&gc).await;
    gc.cluster.user_delete(&d, Propagation::Foreground);
    settle(&gc).await;
    for r in [&d, &rs, &p1, &p2] {
        assert!(gc.cluster.get_obj(&r.uid).is_none(), "{} remains", r.name);
    }
    // The replicaset has dependents of its own, so it too went in the foreground.
    let deletes = gc.cluster.deletes.lock().clone();
    assert!(
        deletes.contains(&("web-1".into(), Propagation::Foreground)),
        "{deletes:?}"
    );
}

#[tokio::test]
async fn foreground_owner_waits_while_a_blocking_dependent_remains() {
    let gc = GarbageCollector::new(Fake::default(), None);
    let d = gc.cluster.add("Deployment", "ns", "d", vec![]);
    let p = gc.cluster.add("Pod", "ns", "p", vec![owner(&d, true)]);
    settle(&gc).await;
    // The pod has a finalizer of its own: it lingers, and so must its owner.
    gc.cluster
        .objects
        .lock()
        .get_mut(&p.uid)
        .unwrap()
        .meta
        .finalizers = vec!["example.com/hold".into()];
    gc.cluster.user_delete(&d, Propagation::Foreground);
    settle(&gc).await;
    let owner = gc
        .cluster
        .get_obj(&d.uid)
        .expect("owner waits for its dependent");
    assert_eq!(owner.meta.finalizers, [FOREGROUND]);
    assert!(gc.cluster.get_obj(&p.uid).unwrap().meta.being_deleted);
    // Once the pod's own finalizer goes, the pod and then the owner go.
    let rv = gc.cluster.get_obj(&p.uid).unwrap().meta.resource_version;
    gc.cluster
        .patch(
            &p,
            json!({"metadata": {"finalizers": [], "resourceVersion": rv}}),
        )
        .await
        .unwrap();
    settle(&gc).await;
    assert!(gc.cluster.get_obj(&p.uid).is_none());
    assert!(gc.cluster.get_obj(&d.uid).is_none());
}

#[tokio::test]
async fn orphan_deletion_strips_owner_references_and_keeps_dependents() {
    let gc = GarbageCollector::new(Fake::default(), None);
    let (d, rs, p1, p2) = tree(&gc.cluster, true);
    settle(&gc).await;
    gc.cluster.user_delete(&rs, Propagation::Orphan);
    settle(&gc).await;
    assert!(
        gc.cluster.get_obj(&rs.uid).is_none(),
        "the owner is deleted"
    );
    for p in [&p1, &p2] {
        let o = gc.cluster.get_obj(&p.uid).expect("pods are kept");
        assert!(o.meta.owners.is_empty(), "{:?}", o.meta.owners);
    }
    assert!(gc.cluster.get_obj(&d.uid).is_some());
}

#[tokio::test]
async fn dependents_of_absent_owners_are_collected_but_solid_owners_keep_them() {
    let gc = GarbageCollector::new(Fake::default(), None);
    let gone = absent_rs("ns", "gone", "uid-gone");
    let orphan = gc
        .cluster
        .add("Pod", "ns", "orphan", vec![owner(&gone, false)]);
    let alive = gc.cluster.add("ReplicaSet", "ns", "alive", vec![]);
    let shared = gc.cluster.add(
        "Pod",
        "ns",
        "shared",
        vec![owner(&gone, false), owner(&alive, false)],
    );
    // An owner of the same name but another uid does not count.
    let _namesake = gc.cluster.add("ReplicaSet", "ns", "renamed", vec![]);
    let stale = ObjectRef {
        name: "renamed".into(),
        uid: "uid-old".into(),
        ..gone.clone()
    };
    let stale_dep = gc
        .cluster
        .add("Pod", "ns", "stale", vec![owner(&stale, false)]);
    settle(&gc).await;
    assert!(gc.cluster.get_obj(&orphan.uid).is_none());
    assert!(gc.cluster.get_obj(&stale_dep.uid).is_none());
    let kept = gc
        .cluster
        .get_obj(&shared.uid)
        .expect("a solid owner keeps it");
    assert_eq!(kept.meta.owners, vec![owner(&alive, false)]);
}

#[tokio::test]
async fn a_cluster_scoped_object_with_a_namespaced_owner_is_an_error_not_a_deletion() {
    let gc = GarbageCollector::new(Fake::default(), None);
    let rs = gc.cluster.add("ReplicaSet", "ns", "rs", vec![]);
    let node = gc.cluster.add("Node", "", "n1", vec![owner(&rs, false)]);
    settle(&gc).await;
    // Its reference cannot name a namespaced owner: refused, never retried.
    match gc.attempt_to_delete(&node.uid).await {
        Err(Error::NamespacedOwnerOfClusterScoped(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(gc.cluster.get_obj(&node.uid).is_some());
}

#[tokio::test]
async fn a_lookup_miss_never_unlinks_an_observed_owner() {
    // A lookup that misses (wrong coordinates, or a deletion the monitor has not yet
    // reported) keeps the owner the monitor saw, with its dependents: its later
    // deletion still reaches them.
    let gc = GarbageCollector::new(Fake::default(), None);
    let rs = gc.cluster.add("ReplicaSet", "ns", "rs", vec![]);
    let good = gc.cluster.add("Pod", "ns", "good", vec![owner(&rs, false)]);
    settle(&gc).await;
    let work = gc.graph.lock().remove_virtual(&rs.uid);
    assert_eq!(work, vec![Work::Delete(good.uid.clone())]);
    assert!(
        gc.graph.lock().node(&rs.uid).is_some(),
        "the observed owner stays"
    );
    assert_eq!(gc.graph.lock().dependents(&rs.uid).len(), 1);
    gc.enqueue(work);
    settle(&gc).await;
    assert!(
        gc.cluster.get_obj(&good.uid).is_some(),
        "its owner exists: kept"
    );
    gc.cluster.user_delete(&rs, Propagation::Background);
    settle(&gc).await;
    assert!(gc.cluster.get_obj(&good.uid).is_none());
}

#[tokio::test]
async fn a_conflicting_delete_is_retried_without_the_resource_version() {
    let gc = GarbageCollector::new(Fake::default(), None);
    let gone = absent_rs("ns", "gone", "uid-gone");
    let p = gc
        .cluster
        .add("Pod", "ns", "busy", vec![owner(&gone, false)]);
    feed(gc.as_ref());
    // A status write moves the pod's resourceVersion after the collector read it.
    let node = gc.graph.lock().node(&p.uid).cloned().unwrap();
    let stale_rv = gc.cluster.get_obj(&p.uid).unwrap().meta.resource_version;
    gc.cluster
        .objects
        .lock()
        .get_mut(&p.uid)
        .unwrap()
        .meta
        .resource_version = "999".into();
    gc.delete(&node, Propagation::Background, &stale_rv)
        .await
        .unwrap();
    assert!(gc.cluster.get_obj(&p.uid).is_none());
}

#[tokio::test]
async fn a_reference_naming_the_owner_by_other_coordinates_is_dangling() {
    // The owner exists in namespace "a"; a dependent in "b" references its uid.
    // Looked up by the dependent's own reference (in "b") the owner is absent, so the
    // dependent is collected, whichever of the two the monitors see first.
    for owner_first in [true, false] {
        let gc = GarbageCollector::new(Fake::default(), None);
        let rs_ref = absent_rs("a", "rs", "uid-rs");
        let (rs, pod) = if owner_first {
            let rs = gc.cluster.add("ReplicaSet", "a", "rs", vec![]);
            settle(&gc).await;
            let pod = gc
                .cluster
                .add("Pod", "b", "cross", vec![owner(&rs_ref, false)]);
            (rs, pod)
        } else {
            let pod = gc
                .cluster
                .add("Pod", "b", "cross", vec![owner(&rs_ref, false)]);
            let rs = gc.cluster.add("ReplicaSet", "a", "rs", vec![]);
            (rs, pod)
        };
        settle(&gc).await;
        assert!(
            gc.cluster.get_obj(&pod.uid).is_none(),
            "owner_first={owner_first}"
        );
        assert!(
            gc.cluster.get_obj(&rs.uid).is_some(),
            "the owner itself stays"
        );
        // A dependent in the owner's own namespace is kept.
        let good = gc
            .cluster
            .add("Pod", "a", "same", vec![owner(&rs_ref, false)]);
        settle(&gc).await;
        assert!(
            gc.cluster.get_obj(&good.uid).is_some(),
            "owner_first={owner_first}"
        );
    }
}
