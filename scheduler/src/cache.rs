//! The scheduler's cache, as upstream's `backend/cache`: every node with the pods
//! bound or assumed to it and their summed requests.
//!
//! - Informer events keep it current: nodes, and pods with a `spec.nodeName`.
//! - A pod is *assumed* on the node the scheduling cycle picked, before its
//!   binding is written, so the next cycle already counts it; the watch later
//!   *confirms* it (the bound pod replaces the assumed copy), and a failed binding
//!   *forgets* it.
//! - [`Cache::snapshot`] hands each cycle the node list. NodeInfos are shared
//!   (`Arc`) and copied on write, so a snapshot costs one pointer per node and
//!   only the nodes that changed since are ever copied.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::types::{ImageState, NodeInfo, PodAffinityTerms, PodInfo, pod_key};

/// Cache failures (each one a bug upstream logs and skips).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The pod is already assumed or bound.
    #[error("pod {0} is in the cache, so can't be assumed")]
    AlreadyAssumed(String),
    /// A forget for a pod that is not assumed.
    #[error("pod {0} wasn't assumed so cannot be forgotten")]
    NotAssumed(String),
}

struct PodState {
    node: String,
    assumed: bool,
}

/// Nodes and what is placed on them.
#[derive(Default)]
pub struct Cache {
    list: Vec<Arc<NodeInfo>>,
    /// `list[i]`'s node name (known before the node object, from its pods).
    names: Vec<String>,
    index: HashMap<String, usize>,
    pods: HashMap<String, PodState>,
    generation: u64,
    /// image name → the nodes that have it.
    images: HashMap<String, ImageEntry>,
    /// Parsed inter-pod affinity shared by pods with the same terms (the replicas
    /// of a workload), so plugins can work per distinct term set.
    affinity: HashMap<String, Weak<PodAffinityTerms>>,
    /// When to drop the dead entries of `affinity`.
    affinity_sweep_at: usize,
    /// The last snapshot handed out (nodes with a node object), kept and patched
    /// in place: [`Cache::snapshot_shared`] replaces only the entries of nodes
    /// changed since (`dirty`), and rebuilds it when nodes came or went.
    snap: Arc<Vec<Arc<NodeInfo>>>,
    snap_pos: HashMap<String, usize>,
    dirty: HashSet<String>,
    structural: bool,
}

/// An image's spread: the nodes that have it, and their count, shared with the
/// NodeInfos' image states (so a node joining or leaving updates every node's
/// view without copying them).
struct ImageEntry {
    size: i64,
    nodes: HashSet<String>,
    count: Arc<AtomicUsize>,
}

fn node_images(node: &Node) -> Option<&Vec<k8s_openapi::api::core::v1::ContainerImage>> {
    node.status.as_ref().and_then(|s| s.images.as_ref())
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.list.push(Arc::new(NodeInfo::default()));
                self.names.push(name.to_owned());
                self.index.insert(name.to_owned(), self.list.len() - 1);
                self.list.len() - 1
            }
        };
        self.generation += 1;
        let gen_ = self.generation;
        if !self.dirty.contains(name) {
            self.dirty.insert(name.to_owned());
        }
        let ni = Arc::make_mut(&mut self.list[i]);
        ni.generation = gen_;
        ni
    }

    /// Adds or replaces a node object.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let old = self
            .index
            .get(&name)
            .and_then(|i| self.list[*i].node.clone());
        // Node updates mostly leave the images alone: then nothing is recounted.
        let images = match &old {
            Some(o) if node_images(o) == node_images(&node) => None,
            _ => {
                if let Some(o) = &old {
                    self.drop_images(&name, o);
                }
                Some(Arc::new(self.take_images(&name, &node)))
            }
        };
        if old.is_none() {
            self.structural = true;
        }
        let ni = self.slot(&name);
        ni.set_node(node);
        if let Some(images) = images {
            ni.image_states = images;
        }
    }

    /// Removes a node (its pods stay counted until they are deleted).
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.get(name).copied() else {
            return;
        };
        self.structural = true;
        if let Some(old) = self.list[i].node.clone() {
            self.drop_images(name, &old);
        }
        if self.list[i].pods.is_empty() {
            self.list.swap_remove(i);
            self.names.swap_remove(i);
            self.index.remove(name);
            if i < self.list.len() {
                self.index.insert(self.names[i].clone(), i);
            }
            self.generation += 1;
        } else {
            let ni = Arc::make_mut(&mut self.list[i]);
            ni.node = None;
            ni.image_states = Arc::default();
        }
    }

    /// Counts `node`'s images for `name`; its image states, sharing the counts.
    fn take_images(&mut self, name: &str, node: &Node) -> HashMap<String, ImageState> {
        let mut out = HashMap::new();
        for img in node_images(node).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                let e = self.images.entry(n.clone()).or_insert_with(|| ImageEntry {
                    size: img.size_bytes.unwrap_or(0),
                    nodes: HashSet::new(),
                    count: Arc::default(),
                });
                e.nodes.insert(name.to_owned());
                e.count.store(e.nodes.len(), Ordering::Relaxed);
                out.entry(n.clone()).or_insert_with(|| ImageState {
                    size: e.size,
                    nodes: e.count.clone(),
                });
            }
        }
        out
    }

    /// Uncounts `node`'s images for `name`.
    fn drop_images(&mut self, name: &str, node: &Node) {
        for img in node_images(node).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                let Some(e) = self.images.get_mut(n) else {
                    continue;
                };
                e.nodes.remove(name);
                e.count.store(e.nodes.len(), Ordering::Relaxed);
                if e.nodes.is_empty() {
                    self.images.remove(n);
                }
            }
        }
    }

    fn place(&mut self, pod: Arc<Pod>, node: &str) {
        let mut pi = PodInfo::new(pod);
        self.share_affinity(&mut pi);
        self.slot(node).add_pod(pi);
    }

    /// Replaces the pod's parsed affinity with an identical one already held by
    /// another pod, if any.
    fn share_affinity(&mut self, pi: &mut PodInfo) {
        let Some(terms) = pi.affinity.as_ref() else {
            return;
        };
        let Some(a) = pi.pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
            return;
        };
        let mut key = format!(
            "{}\n{}\n{}",
            pi.pod.metadata.namespace.as_deref().unwrap_or_default(),
            serde_json::to_string(&a.pod_affinity).unwrap_or_default(),
            serde_json::to_string(&a.pod_anti_affinity).unwrap_or_default()
        );
        // matchLabelKeys / mismatchLabelKeys make the terms depend on the pod's labels.
        if key.contains("atchLabelKeys") {
            key.push('\n');
            key.push_str(&serde_json::to_string(&pi.pod.metadata.labels).unwrap_or_default());
        }
        if let Some(shared) = self.affinity.get(&key).and_then(Weak::upgrade) {
            pi.affinity = Some(shared);
            return;
        }
        self.affinity.insert(key, Arc::downgrade(terms));
        if self.affinity.len() >= self.affinity_sweep_at {
            self.affinity.retain(|_, w| w.strong_count() > 0);
            self.affinity_sweep_at = (self.affinity.len() * 2).max(1024);
        }
    }

    fn unplace(&mut self, key: &str, node: &str) {
        if self.index.contains_key(node) {
            self.slot(node).remove_pod(key);
        }
    }

    /// A bound pod seen by the watch: confirms an assumed pod, or adds it.
    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        let Some(node) = node_name(&pod).map(str::to_owned) else {
            return;
        };
        let key = pod_key(&pod);
        if let Some(old) = self.pods.remove(&key) {
            self.unplace(&key, &old.node);
        }
        self.place(pod, &node);
        self.pods.insert(
            key,
            PodState {
                node,
                assumed: false,
            },
        );
    }

    /// A pod deleted (or ended, or unbound).
    pub fn remove_pod(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        if let Some(old) = self.pods.remove(&key) {
            self.unplace(&key, &old.node);
        }
    }

    /// Assumes `pod` (with its `spec.nodeName` set) on its node.
    pub fn assume(&mut self, pod: Arc<Pod>) -> Result<(), Error> {
        let key = pod_key(&pod);
        if self.pods.contains_key(&key) {
            return Err(Error::AlreadyAssumed(key));
        }
        let node = node_name(&pod).unwrap_or_default().to_owned();
        self.place(pod, &node);
        self.pods.insert(
            key,
            PodState {
                node,
                assumed: true,
            },
        );
        Ok(())
    }

    /// Forgets an assumed pod whose binding failed.
    pub fn forget(&mut self, pod: &Pod) -> Result<(), Error> {
        let key = pod_key(pod);
        match self.pods.get(&key) {
            Some(s) if s.assumed => {
                let node = s.node.clone();
                self.pods.remove(&key);
                self.unplace(&key, &node);
                Ok(())
            }
            _ => Err(Error::NotAssumed(key)),
        }
    }

    /// Whether the pod is assumed (and not yet confirmed).
    pub fn is_assumed(&self, pod: &Pod) -> bool {
        self.pods.get(&pod_key(pod)).is_some_and(|s| s.assumed)
    }

    /// Whether the pod is in the cache at all.
    pub fn contains(&self, pod: &Pod) -> bool {
        self.pods.contains_key(&pod_key(pod))
    }

    /// The nodes for one cycle (those with a node object), and the cache's
    /// generation when taken.
    pub fn snapshot(&self) -> (Vec<Arc<NodeInfo>>, u64) {
        (
            self.list
                .iter()
                .filter(|n| n.node.is_some())
                .cloned()
                .collect(),
            self.generation,
        )
    }

    /// The nodes for one cycle (those with a node object), shared: only the entries
    /// of nodes changed since the last call are replaced, in place when no earlier
    /// snapshot is still held. Callers should drop it before the next call.
    pub fn snapshot_shared(&mut self) -> Arc<Vec<Arc<NodeInfo>>> {
        if self.structural {
            let mut pos = HashMap::with_capacity(self.list.len());
            let mut v = Vec::with_capacity(self.list.len());
            for (i, n) in self.list.iter().enumerate() {
                if n.node.is_some() {
                    pos.insert(self.names[i].clone(), v.len());
                    v.push(n.clone());
                }
            }
            self.snap = Arc::new(v);
            self.snap_pos = pos;
            self.structural = false;
            self.dirty.clear();
        } else if !self.dirty.is_empty() {
            let v = Arc::make_mut(&mut self.snap);
            for name in self.dirty.drain() {
                if let (Some(&p), Some(&j)) = (self.snap_pos.get(&name), self.index.get(&name)) {
                    v[p] = self.list[j].clone();
                }
            }
        }
        self.snap.clone()
    }

    /// How many node objects are cached.
    pub fn node_count(&self) -> usize {
        self.list.iter().filter(|n| n.node.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn pod(name: &str, node: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn assume_confirm_forget() {
        let mut c = Cache::new();
        c.set_node(node("a"));
        c.set_node(node("b"));
        let (before, _) = c.snapshot();
        c.assume(pod("p", "a")).unwrap();
        assert!(c.is_assumed(&pod("p", "a")));
        assert_eq!(
            c.assume(pod("p", "a")),
            Err(Error::AlreadyAssumed("default/p".into()))
        );
        let (after, _) = c.snapshot();
        let a = |s: &[Arc<NodeInfo>]| s.iter().find(|n| n.name() == "a").unwrap().pods.len();
        assert_eq!(
            (a(&before), a(&after)),
            (0, 1),
            "snapshots are copies on write"
        );
        // The watch confirms it.
        c.add_pod(pod("p", "a"));
        assert!(!c.is_assumed(&pod("p", "a")));
        assert_eq!(
            c.forget(&pod("p", "a")),
            Err(Error::NotAssumed("default/p".into()))
        );
        c.assume(pod("q", "b")).unwrap();
        c.forget(&pod("q", "b")).unwrap();
        let (s, _) = c.snapshot();
        assert_eq!(s.iter().map(|n| n.pods.len()).sum::<usize>(), 1);
        c.remove_pod(&pod("p", "a"));
        c.remove_node("a");
        assert_eq!(c.node_count(), 1);
    }

    #[test]
    fn replicas_share_their_parsed_affinity() {
        use k8s_openapi::api::core::v1::{Affinity, PodAffinityTerm, PodAntiAffinity};
        let with_anti = |name: &str, ns: &str| {
            let mut p = (*pod(name, "a")).clone();
            p.metadata.namespace = Some(ns.into());
            p.spec.as_mut().unwrap().affinity = Some(Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![
                        PodAffinityTerm {
                            topology_key: "kubernetes.io/hostname".into(),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            });
            Arc::new(p)
        };
        let mut c = Cache::new();
        c.set_node(node("a"));
        c.add_pod(with_anti("p1", "default"));
        c.add_pod(with_anti("p2", "default"));
        c.add_pod(with_anti("p3", "other"));
        let (s, _) = c.snapshot();
        let terms: Vec<_> = s[0]
            .pods
            .iter()
            .map(|p| p.affinity.clone().unwrap())
            .collect();
        assert!(Arc::ptr_eq(&terms[0], &terms[1]));
        // The terms' default namespace is the pod's own: not shared across them.
        assert!(!Arc::ptr_eq(&terms[0], &terms[2]));
        assert_eq!(s[0].pods_with_required_anti_affinity, 3);
    }

    #[test]
    fn shared_snapshots_follow_changes_and_keep_old_views() {
        let mut c = Cache::new();
        c.set_node(node("a"));
        c.set_node(node("b"));
        let first = c.snapshot_shared();
        assert_eq!(first.len(), 2);
        c.assume(pod("p", "a")).unwrap();
        let second = c.snapshot_shared();
        let pods = |s: &[Arc<NodeInfo>], n: &str| {
            s.iter().find(|x| x.name() == n).map_or(0, |x| x.pods.len())
        };
        assert_eq!(
            (pods(&first, "a"), pods(&second, "a")),
            (0, 1),
            "the old view is kept"
        );
        drop(first);
        c.add_pod(pod("q", "b"));
        let third = c.snapshot_shared();
        assert_eq!((pods(&third, "a"), pods(&third, "b")), (1, 1));
        drop((second, third));
        c.set_node(node("c"));
        c.remove_node("b");
        let fourth = c.snapshot_shared();
        let mut names: Vec<&str> = fourth.iter().map(|n| n.name()).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "c"], "b keeps a pod but has no node object");
        // Agrees with the full copy.
        assert_eq!(c.snapshot().0.len(), fourth.len());
    }
}
