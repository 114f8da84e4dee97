//! The dependency graph: every object the monitors see, linked to its owners by
//! uid, as upstream's `GraphBuilder.uidToNode`.
//!
//! Owners referenced but not (yet) seen are *virtual* nodes; each is queued for a
//! delete attempt, which asks the apiserver whether it exists. Updating the graph
//! returns the [`Work`] its change calls for; the caller queues it. Nothing here does
//! I/O.

use std::collections::{HashMap, HashSet};

/// The finalizer that makes the garbage collector orphan an owner's dependents.
pub const ORPHAN: &str = "orphan";
/// The finalizer that makes the garbage collector delete an owner's dependents first.
pub const FOREGROUND: &str = "foregroundDeletion";

/// An object's identity: what an ownerReference names, plus the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// apiVersion, as `group/version` or `v1`.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}/{}, namespace: {}, name: {}, uid: {}]",
            self.api_version, self.kind, self.namespace, self.name, self.uid
        )
    }
}

/// One ownerReference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    /// The owner's apiVersion.
    pub api_version: String,
    /// The owner's kind.
    pub kind: String,
    /// The owner's name.
    pub name: String,
    /// The owner's uid.
    pub uid: String,
    /// Whether the owner is the managing controller.
    pub controller: Option<bool>,
    /// Whether the owner's foreground deletion waits for this dependent.
    pub block_owner_deletion: Option<bool>,
}

/// What a monitor saw of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Who it is.
    pub identity: ObjectRef,
    /// Its ownerReferences.
    pub owners: Vec<OwnerRef>,
    /// Whether it has a deletionTimestamp.
    pub being_deleted: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

/// What a change calls for; queued by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Look at the node with this uid: delete it if its owners are gone, or finish
    /// its foreground deletion.
    Delete(String),
    /// Orphan the dependents of the node with this uid, then drop its finalizer.
    Orphan(String),
}

/// One object in the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// Who it is (for a virtual node, as its dependents name it).
    pub identity: ObjectRef,
    /// Its ownerReferences, as last seen.
    pub owners: Vec<OwnerRef>,
    /// uids of the nodes that name it as an owner.
    pub dependents: HashSet<String>,
    /// Has a deletionTimestamp.
    pub being_deleted: bool,
    /// Is being deleted in the foreground (deletionTimestamp and the
    /// foregroundDeletion finalizer).
    pub deleting_dependents: bool,
    /// Seen by a monitor, not just named by a dependent.
    pub observed: bool,
    /// Is being deleted with the orphan finalizer.
    pub orphaning: bool,
}

/// The graph.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

impl Graph {
    /// The node with `uid`.
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The dependents of `uid` whose reference to it blocks its foreground deletion.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        let Some(n) = self.nodes.get(uid) else {
            return Vec::new();
        };
        n.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
            .collect()
    }

    /// The dependents of `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.nodes
            .get(uid)
            .map(|n| {
                n.dependents
                    .iter()
                    .filter_map(|d| self.nodes.get(d))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records an added or updated object.
    pub fn upsert(&mut self, o: Observed) -> Vec<Work> {
        let uid = o.identity.uid.clone();
        let mut work = Vec::new();
        let deleting_dependents = o.being_deleted && o.finalizers.iter().any(|f| f == FOREGROUND);
        let orphaning = o.being_deleted && o.finalizers.iter().any(|f| f == ORPHAN);
        // A virtual node becoming observed: dependents whose reference does not name
        // the real object are checked (upstream's `partitionDependents`).
        if let Some(n) = self.nodes.get(&uid).filter(|n| !n.observed) {
            for d in n.dependents.iter().filter_map(|d| self.nodes.get(d)) {
                let valid = d
                    .owners
                    .iter()
                    .filter(|r| r.uid == uid)
                    .all(|r| names(&o.identity, r, &d.identity.namespace));
                if !valid {
                    work.push(Work::Delete(d.identity.uid.clone()));
                }
            }
        }
        let (old_owners, was_deleting, was_orphaning) = match self.nodes.get_mut(&uid) {
            Some(n) => {
                let was_orphaning = n.orphaning;
                let prev = (
                    std::mem::take(&mut n.owners),
                    n.deleting_dependents,
                    was_orphaning,
                );
                n.identity = o.identity.clone();
                n.observed = true;
                prev
            }
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity: o.identity.clone(),
                        owners: Vec::new(),
                        dependents: HashSet::new(),
                        being_deleted: false,
                        deleting_dependents: false,
                        observed: true,
                        orphaning: false,
                    },
                );
                (Vec::new(), false, false)
            }
        };
        // Owner references added, removed, or no longer blocking.
        for added in o
            .owners
            .iter()
            .filter(|r| !old_owners.iter().any(|x| x.uid == r.uid))
        {
            self.link(&uid, &o.identity.namespace, added, &mut work);
        }
        for removed in old_owners
            .iter()
            .filter(|r| !o.owners.iter().any(|x| x.uid == r.uid))
        {
            if let Some(owner) = self.nodes.get_mut(&removed.uid) {
                owner.dependents.remove(&uid);
                if owner.deleting_dependents {
                    work.push(Work::Delete(removed.uid.clone()));
                }
                // A virtual owner nothing names any more is dropped.
                if !owner.observed && owner.dependents.is_empty() {
                    self.nodes.remove(&removed.uid);
                }
            }
        }
        for (old, new) in old_owners
            .iter()
            .filter_map(|r| o.owners.iter().find(|x| x.uid == r.uid).map(|n| (r, n)))
        {
            let unblocked =
                old.block_owner_deletion == Some(true) && new.block_owner_deletion != Some(true);
            if unblocked
                && self
                    .nodes
                    .get(&old.uid)
                    .is_some_and(|o| o.deleting_dependents)
            {
                work.push(Work::Delete(old.uid.clone()));
            }
        }
        let Some(n) = self.nodes.get_mut(&uid) else {
            return work;
        };
        n.owners = o.owners;
        n.being_deleted = o.being_deleted;
        n.deleting_dependents = deleting_dependents;
        n.orphaning = orphaning;
        // Transitions: an owner starting to orphan its dependents, or to delete them
        // in the foreground.
        if orphaning && !was_orphaning {
            work.push(Work::Orphan(uid.clone()));
        }
        if deleting_dependents && !was_deleting {
            let deps: Vec<String> = n.dependents.iter().cloned().collect();
            work.extend(deps.into_iter().map(Work::Delete));
            work.push(Work::Delete(uid));
        }
        work
    }

    fn link(&mut self, uid: &str, namespace: &str, owner: &OwnerRef, work: &mut Vec<Work>) {
        match self.nodes.get_mut(&owner.uid) {
            Some(n) => {
                n.dependents.insert(uid.to_owned());
                // A dependent of an owner that is gone (a virtual node) is checked, and
                // so is one whose reference names the owner by other coordinates
                // (another namespace, kind or name): looked up by its own
                // reference, that owner is absent.
                if !n.observed || !names(&n.identity, owner, namespace) {
                    work.push(Work::Delete(uid.to_owned()));
                }
            }
            None => {
                // A virtual node, in the dependent's namespace: checked against the
                // apiserver by a delete attempt.
                self.nodes.insert(
                    owner.uid.clone(),
                    Node {
                        identity: ObjectRef {
                            api_version: owner.api_version.clone(),
                            kind: owner.kind.clone(),
                            namespace: namespace.to_owned(),
                            name: owner.name.clone(),
                            uid: owner.uid.clone(),
                        },
                        owners: Vec::new(),
                        dependents: [uid.to_owned()].into(),
                        being_deleted: false,
                        deleting_dependents: false,
                        observed: false,
                        orphaning: false,
                    },
                );
                work.push(Work::Delete(owner.uid.clone()));
            }
        }
    }

    /// A lookup found the object behind `uid` absent (upstream's virtual delete
    /// event). A virtual node is removed as by [`Graph::remove`]. A node a monitor has
    /// seen is kept, since its monitor is the authority on its deletion and the
    /// lookup may have used a dependent's wrong coordinates; its dependents are
    /// checked again, each by its own ownerReference.
    pub fn remove_virtual(&mut self, uid: &str) -> Vec<Work> {
        match self.nodes.get(uid) {
            Some(n) if n.observed => n.dependents.iter().cloned().map(Work::Delete).collect(),
            Some(_) => self.remove(uid),
            None => Vec::new(),
        }
    }

    /// Records that the object with `uid` is gone: observed deleted, or found absent
    /// (a virtual delete). Its dependents are checked, and owners waiting for it
    /// continue.
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(n) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work: Vec<Work> = n.dependents.iter().cloned().map(Work::Delete).collect();
        for o in &n.owners {
            if let Some(owner) = self.nodes.get_mut(&o.uid) {
                owner.dependents.remove(uid);
                if owner.deleting_dependents {
                    work.push(Work::Delete(o.uid.clone()));
                }
                // A virtual owner with no dependents left is dropped.
                if !owner.observed && owner.dependents.is_empty() {
                    self.nodes.remove(&o.uid);
                }
            }
        }
        work
    }
}

fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Whether `reference`, held by a dependent in `dependent_ns`, names the object
/// `owner`: same group (any version), kind and name, and a namespaced owner in the
/// dependent's own namespace.
fn names(owner: &ObjectRef, reference: &OwnerRef, dependent_ns: &str) -> bool {
    group(&owner.api_version) == group(&reference.api_version)
        && owner.kind == reference.kind
        && owner.name == reference.name
        && (owner.namespace.is_empty() || owner.namespace == dependent_ns)
}
