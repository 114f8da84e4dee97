//! The Node authorizer: a kubelet (`system:node:<name>` in `system:nodes`) may read
//! the secrets, configmaps, persistent volume claims and volumes of the pods bound to
//! its node, create tokens for their service accounts, and touch only its own Lease
//! and CSINode; everything else it may do is upstream's `system:node` rules. Other
//! users get no opinion.
//!
//! Upstream keeps a graph updated from informers; this reads the same edges from the
//! watch caches at decision time ([`NodeGraph`]), which is exact at the cost of a
//! scan of the node's pods.

use std::sync::Arc;

use serde_json::Value;

use super::{Attributes, Decision};
use crate::authn::UserInfo;
use crate::catalog::catalog;
use crate::registry::Registry;

/// `system:nodes`.
pub const NODES: &str = "system:nodes";

/// What the authorizer needs to know about pods and claims.
pub trait NodeGraph: Send + Sync {
    /// The pods bound to `node`.
    fn pods_on(&self, node: &str) -> Vec<Arc<Value>>;
    /// One PersistentVolume.
    fn volume(&self, name: &str) -> Option<Arc<Value>>;
    /// One VolumeAttachment.
    fn attachment(&self, name: &str) -> Option<Arc<Value>>;
}

/// The watch caches as a [`NodeGraph`].
pub struct CacheGraph {
    pods: Option<Arc<crate::cache::WatchCache>>,
    volumes: Option<Arc<crate::cache::WatchCache>>,
    volumes_prefix: String,
    attachments: Option<Arc<crate::cache::WatchCache>>,
    attachments_prefix: String,
}

impl CacheGraph {
    /// Reads from `registry`'s caches.
    pub fn new(registry: &Registry) -> CacheGraph {
        let pods = catalog().get("", "v1", "pods").expect("pods");
        let volumes = catalog().get("", "v1", "persistentvolumes").expect("pvs");
        let attachments = catalog()
            .get("storage.k8s.io", "v1", "volumeattachments")
            .expect("volumeattachments");
        CacheGraph {
            pods: registry.cache(pods),
            volumes: registry.cache(volumes),
            volumes_prefix: registry.collection(volumes, None),
            attachments: registry.cache(attachments),
            attachments_prefix: registry.collection(attachments, None),
        }
    }
}

impl NodeGraph for CacheGraph {
    fn pods_on(&self, node: &str) -> Vec<Arc<Value>> {
        self.pods
            .as_ref()
            .map(|c| c.snapshot("").0)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
            .collect()
    }
    fn volume(&self, name: &str) -> Option<Arc<Value>> {
        self.volumes
            .as_ref()?
            .get(&format!("{}{name}", self.volumes_prefix))
    }
    fn attachment(&self, name: &str) -> Option<Arc<Value>> {
        self.attachments
            .as_ref()?
            .get(&format!("{}{name}", self.attachments_prefix))
    }
}

/// The node a user is, if it is one.
pub fn node_name(user: &UserInfo) -> Option<&str> {
    if !user.in_group(NODES) {
        return None;
    }
    user.name.strip_prefix("system:node:")
}

/// The names of objects of `kind` a pod refers to, as upstream's `podutil.Visit*`.
pub fn pod_refs(pod: &Value, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            out.push(s.to_owned());
        }
    };
    const NONE: &Value = &Value::Null;
    let spec = pod.get("spec").unwrap_or(NONE);
    fn arr<'v>(v: &'v Value, k: &str) -> &'v [Value] {
        v.get(k)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    if kind == "ServiceAccount" {
        push(spec.get("serviceAccountName"));
        return out;
    }
    if kind == "Secret" {
        for s in arr(spec, "imagePullSecrets") {
            push(s.get("name"));
        }
    }
    for v in arr(spec, "volumes") {
        match kind {
            "Secret" => {
                push(v.pointer("/secret/secretName"));
                for p in [
                    "/azureFile/secretName",
                    "/cephfs/secretRef/name",
                    "/cinder/secretRef/name",
                    "/flexVolume/secretRef/name",
                    "/iscsi/secretRef/name",
                    "/rbd/secretRef/name",
                    "/scaleIO/secretRef/name",
                    "/storageos/secretRef/name",
                    "/csi/nodePublishSecretRef/name",
                ] {
                    push(v.pointer(p));
                }
            }
            "ConfigMap" => push(v.pointer("/configMap/name")),
            "PersistentVolumeClaim" => push(v.pointer("/persistentVolumeClaim/claimName")),
            _ => {}
        }
        for src in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match kind {
                "Secret" => push(src.pointer("/secret/name")),
                "ConfigMap" => push(src.pointer("/configMap/name")),
                _ => {}
            }
        }
    }
    if matches!(kind, "Secret" | "ConfigMap") {
        let (from, key) = if kind == "Secret" {
            ("secretRef", "secretKeyRef")
        } else {
            ("configMapRef", "configMapKeyRef")
        };
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            for c in arr(spec, list) {
                for e in arr(c, "envFrom") {
                    push(e.get(from).and_then(|r| r.get("name")));
                }
                for e in arr(c, "env") {
                    push(
                        e.get("valueFrom")
                            .and_then(|r| r.get(key))
                            .and_then(|r| r.get("name")),
                    );
                }
            }
        }
    }
    out
}

/// The Node authorizer.
pub struct NodeAuthorizer {
    graph: Box<dyn NodeGraph>,
    rules: Vec<Value>,
}

impl NodeAuthorizer {
    /// Authorizes kubelets from `graph`, with upstream's `system:node` rules for the
    /// rest.
    pub fn new(graph: Box<dyn NodeGraph>) -> NodeAuthorizer {
        NodeAuthorizer {
            graph,
            rules: crate::rbac::bootstrap::node_rules(),
        }
    }

    fn related(&self, node: &str, a: &Attributes, kind: &str) -> bool {
        let pods = self.graph.pods_on(node);
        let in_ns = |p: &&Arc<Value>| crate::meta::namespace(p) == a.namespace;
        match kind {
            // Upstream's graph links a volume to the claim its `claimRef` names (not
            // the claim's `volumeName`), and the claim to the pods that use it.
            "VolumeAttachment" => self.graph.attachment(&a.name).is_some_and(|va| {
                va.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
            }),
            "PersistentVolume" => {
                let Some(pv) = self.graph.volume(&a.name) else {
                    return false;
                };
                let at = |p: &str| pv.pointer(p).and_then(Value::as_str).unwrap_or("");
                let (ns, claim) = (at("/spec/claimRef/namespace"), at("/spec/claimRef/name"));
                !claim.is_empty()
                    && pods.iter().any(|p| {
                        crate::meta::namespace(p) == ns
                            && pod_refs(p, "PersistentVolumeClaim")
                                .iter()
                                .any(|c| c == claim)
                    })
            }
            _ => pods
                .iter()
                .filter(in_ns)
                .any(|p| pod_refs(p, kind).contains(&a.name)),
        }
    }

    /// Decides a request.
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        let Some(node) = node_name(user) else {
            return Decision::NoOpinion(String::new());
        };
        if node.is_empty() {
            return Decision::NoOpinion(format!("unknown node for user {:?}", user.name));
        }
        if a.resource_request {
            let kind = match (a.group.as_str(), a.resource.as_str()) {
                ("", "secrets") => Some("Secret"),
                ("", "configmaps") => Some("ConfigMap"),
                ("", "persistentvolumeclaims") => Some("PersistentVolumeClaim"),
                ("", "persistentvolumes") => Some("PersistentVolume"),
                ("storage.k8s.io", "volumeattachments") => Some("VolumeAttachment"),
                _ => None,
            };
            if let Some(kind) = kind {
                if a.verb != "get" || a.name.is_empty() || !a.subresource.is_empty() {
                    return Decision::NoOpinion(
                        "can only get individual resources of this type".to_owned(),
                    );
                }
                return self.graph_decision(node, a, kind);
            }
            if a.group.is_empty() && a.resource == "serviceaccounts" {
                if a.subresource != "token" || a.verb != "create" || a.name.is_empty() {
                    return Decision::NoOpinion(
                        "can only create tokens for individual service accounts".to_owned(),
                    );
                }
                return self.graph_decision(node, a, "ServiceAccount");
            }
            if a.group == "coordination.k8s.io" && a.resource == "leases" {
                let verbs = ["get", "create", "update", "patch", "delete"];
                if !verbs.contains(&a.verb.as_str())
                    || a.namespace != "kube-node-lease"
                    || !a.subresource.is_empty()
                    || (a.verb != "create" && a.name != node)
                {
                    return Decision::NoOpinion(
                        "can only access node lease with the same name as the requesting node"
                            .to_owned(),
                    );
                }
                return Decision::Allow(String::new());
            }
            if a.group == "storage.k8s.io" && a.resource == "csinodes" {
                if !["get", "create", "update", "patch", "delete"].contains(&a.verb.as_str()) {
                    return Decision::NoOpinion(
                        "can only get, create, update, patch, or delete a CSINode".to_owned(),
                    );
                }
                if !a.subresource.is_empty() {
                    return Decision::NoOpinion("cannot authorize CSINode subresources".to_owned());
                }
                if a.verb != "create" && a.name != node {
                    return Decision::NoOpinion(
                        "can only access CSINode with the same name as the requesting node"
                            .to_owned(),
                    );
                }
                return Decision::Allow(String::new());
            }
        }
        if self.rules.iter().any(|r| crate::rbac::rule_allows(r, a)) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        }
    }

    fn graph_decision(&self, node: &str, a: &Attributes, kind: &str) -> Decision {
        if self.related(node, a, kind) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }
}
