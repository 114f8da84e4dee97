//! ImageLocality: favours nodes that already have the pod's container images,
//! by their size scaled by how far each image has spread across the cluster (so
//! pods do not all pile onto the few nodes holding a popular image).
//!
//! A node's images, by every name it reports, come from the cache
//! ([`NodeInfo::image_states`]), which keeps each image's node count current as
//! nodes come and go; the cluster's size is the cycle's snapshot.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::types::{ImageState, NodeInfo, PodInfo};
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, ScorePlugin, Status};

const MB: i64 = 1024 * 1024;
/// Below this (scaled) sum of image sizes a node scores 0.
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, the (scaled) size above which a node scores 100.
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// ImageLocality.
pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

/// An image name as the container runtime reports it: `:latest` added when the
/// reference has no tag (upstream's `normalizedImageName`).
pub fn normalized_image_name(name: &str) -> Cow<'_, str> {
    let colon = name.rfind(':').map_or(-1, |i| i as i64);
    let slash = name.rfind('/').map_or(-1, |i| i as i64);
    if colon <= slash {
        Cow::Owned(format!("{name}:latest"))
    } else {
        Cow::Borrowed(name)
    }
}

/// An image's size scaled by the share of nodes that have it.
fn scaled_image_score(state: &ImageState, total_nodes: usize) -> i64 {
    let spread = state.num_nodes() as f64 / total_nodes.max(1) as f64;
    (state.size as f64 * spread) as i64
}

/// The scaled sizes of the pod's images (init and regular containers) present
/// on the node.
fn sum_image_scores(node: &NodeInfo, pod: &Pod, total_nodes: usize) -> i64 {
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .filter_map(|c| {
            node.image_states
                .get(normalized_image_name(c.image.as_deref().unwrap_or_default()).as_ref())
        })
        .map(|s| scaled_image_score(s, total_nodes))
        .sum()
}

/// The sum clamped to `[MIN_THRESHOLD, MAX_CONTAINER_THRESHOLD × containers]`
/// and scaled to `[0, 100]`.
fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * containers as i64;
    let sum = if sum < MIN_THRESHOLD {
        MIN_THRESHOLD
    } else {
        sum.min(max_threshold)
    };
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let containers = pod.pod.spec.as_ref().map_or(0, |s| {
            s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
        });
        let sum = sum_image_scores(node, &pod.pod, state.snapshot.len());
        (calculate_priority(sum, containers), Status::success())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Container, ContainerImage, Node, NodeStatus, PodSpec};

    use super::*;
    use crate::cache::Cache;

    fn pod(containers: &[&str], init: &[&str]) -> PodInfo {
        let c = |i: &&str| Container {
            name: "c".into(),
            image: Some((*i).to_owned()),
            ..Default::default()
        };
        PodInfo::new(Arc::new(Pod {
            spec: Some(PodSpec {
                containers: containers.iter().map(c).collect(),
                init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    fn node(name: &str, images: &[(&[&str], i64)]) -> Arc<Node> {
        Arc::new(Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                images: Some(
                    images
                        .iter()
                        .map(|(names, mb)| ContainerImage {
                            names: Some(names.iter().map(|n| (*n).to_owned()).collect()),
                            size_bytes: Some(mb * MB),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// The scores of `pod` on `nodes`, with the node infos built by the cache.
    fn scores(pod: &PodInfo, nodes: &[Arc<Node>]) -> Vec<i64> {
        let mut cache = Cache::new();
        for n in nodes {
            cache.set_node(n.clone());
        }
        let (snapshot, _) = cache.snapshot();
        let mut state = CycleState::default();
        state.snapshot = Arc::new(snapshot.clone());
        nodes
            .iter()
            .map(|n| {
                let ni = snapshot
                    .iter()
                    .find(|i| i.name() == n.metadata.name.as_deref().unwrap())
                    .unwrap();
                ImageLocality.score(&state, pod, ni).0
            })
            .collect()
    }

    fn node_40_300_2000(name: &str) -> Arc<Node> {
        node(
            name,
            &[
                (&["gcr.io/40:latest", "gcr.io/40:v1", "gcr.io/40:v1"], 40),
                (&["gcr.io/300:latest", "gcr.io/300:v1"], 300),
                (&["gcr.io/2000:latest"], 2000),
            ],
        )
    }
    fn node_250_10(name: &str) -> Arc<Node> {
        node(
            name,
            &[
                (&["gcr.io/250:latest"], 250),
                (&["gcr.io/10:latest", "gcr.io/10:v1"], 10),
            ],
        )
    }
    fn node_600_40_900(name: &str) -> Arc<Node> {
        node(
            name,
            &[
                (&["gcr.io/600:latest"], 600),
                (&["gcr.io/40:latest"], 40),
                (&["gcr.io/900:latest"], 900),
            ],
        )
    }
    fn node_300_600_900(name: &str) -> Arc<Node> {
        node(
            name,
            &[
                (&["gcr.io/300:latest"], 300),
                (&["gcr.io/600:latest"], 600),
                (&["gcr.io/900:latest"], 900),
            ],
        )
    }
    fn node_4000_30(name: &str) -> Arc<Node> {
        node(
            name,
            &[(&["gcr.io/4000:latest"], 4000), (&["gcr.io/30:latest"], 30)],
        )
    }
    fn node_20_30_40(name: &str) -> Arc<Node> {
        node(
            name,
            &[
                (&["gcr.io/20:latest"], 20),
                (&["gcr.io/30:latest"], 30),
                (&["gcr.io/40:latest"], 40),
            ],
        )
    }

    /// Upstream's `TestImageLocalityPriority` table (image_locality_test.go).
    #[test]
    fn image_locality_priority_as_upstream() {
        let min_max = pod(&["gcr.io/10", "gcr.io/4000"], &[]);
        type Case = (&'static str, PodInfo, Vec<Arc<Node>>, Vec<i64>);
        let cases: Vec<Case> = vec![
            (
                "two images spread on two nodes, prefer the larger image one",
                pod(&["gcr.io/40", "gcr.io/250"], &[]),
                vec![node_40_300_2000("node1"), node_250_10("node2")],
                vec![0, 5],
            ),
            (
                "two images on one node, prefer this node",
                pod(&["gcr.io/40", "gcr.io/300"], &[]),
                vec![node_40_300_2000("node1"), node_250_10("node2")],
                vec![7, 0],
            ),
            (
                "if exceed limit, use limit",
                min_max.clone(),
                vec![node_4000_30("node1"), node_250_10("node2")],
                vec![100, 0],
            ),
            (
                "if exceed limit, use limit (with node which has no images present)",
                min_max,
                vec![
                    node_4000_30("node1"),
                    node_250_10("node2"),
                    node("node3", &[]),
                ],
                vec![66, 0, 0],
            ),
            (
                "pod with multiple large images, node2 is preferred",
                pod(&["gcr.io/300", "gcr.io/600", "gcr.io/900"], &[]),
                vec![
                    node_600_40_900("node1"),
                    node_300_600_900("node2"),
                    node("node3", &[]),
                ],
                vec![32, 36, 0],
            ),
            (
                "pod with multiple small images",
                pod(&["gcr.io/30", "gcr.io/40"], &[]),
                vec![node_20_30_40("node1"), node_4000_30("node2")],
                vec![1, 0],
            ),
            (
                "include InitContainers: two images spread on two nodes, prefer the larger image one",
                pod(&["gcr.io/30"], &["gcr.io/300"]),
                vec![node_40_300_2000("node1"), node_20_30_40("node2")],
                vec![6, 0],
            ),
        ];
        for (name, p, nodes, want) in cases {
            assert_eq!(scores(&p, &nodes), want, "{name}");
        }
    }

    /// Upstream's `TestNormalizedImageName`.
    #[test]
    fn normalized_image_name_as_upstream() {
        assert_eq!(normalized_image_name("root"), "root:latest");
        assert_eq!(
            normalized_image_name("gcr.io:5000/root"),
            "gcr.io:5000/root:latest"
        );
        assert_eq!(normalized_image_name("root:tag"), "root:tag");
        let digest = "root@sha256:4813494d137e1631bba301d5acab6e7bb7aa74ce1185d456565ef51d737677b2";
        assert_eq!(normalized_image_name(digest), digest);
    }

    #[test]
    fn image_spread_follows_nodes_coming_and_going() {
        let mut cache = Cache::new();
        cache.set_node(node_40_300_2000("a"));
        let (before, _) = cache.snapshot();
        cache.set_node(node_600_40_900("b"));
        let (after, _) = cache.snapshot();
        let count = |s: &[Arc<NodeInfo>], n: &str, img: &str| {
            s.iter().find(|i| i.name() == n).unwrap().image_states[img].num_nodes()
        };
        // Node a's info was not copied, yet sees b's copy of gcr.io/40.
        let a = |s: &[Arc<NodeInfo>]| s.iter().find(|i| i.name() == "a").unwrap().clone();
        assert!(Arc::ptr_eq(&a(&before), &a(&after)));
        assert_eq!(count(&after, "a", "gcr.io/40:latest"), 2);
        assert_eq!(count(&after, "b", "gcr.io/40:latest"), 2);
        assert_eq!(count(&after, "a", "gcr.io/300:latest"), 1);
        // b drops the image in an update, then leaves.
        cache.set_node(node("b", &[(&["gcr.io/600:latest"], 600)]));
        let (s, _) = cache.snapshot();
        assert_eq!(count(&s, "a", "gcr.io/40:latest"), 1);
        assert!(
            !s.iter()
                .find(|i| i.name() == "b")
                .unwrap()
                .image_states
                .contains_key("gcr.io/40:latest")
        );
        cache.set_node(node_600_40_900("b"));
        cache.remove_node("b");
        let (s, _) = cache.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!(count(&s, "a", "gcr.io/40:latest"), 1);
    }
}
