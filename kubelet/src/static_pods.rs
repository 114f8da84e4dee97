//! Static pods: manifests in `staticPodPath`, run by the kubelet without an
//! apiserver, as upstream's file source (`pkg/kubelet/config/file.go`) and mirror
//! client.
//!
//! [`read_dir`] turns the directory into pods with upstream's defaults: the name gets
//! `-<node>` appended, the namespace defaults to `default`, `spec.nodeName` is the
//! node, and the UID is a hash of the manifest, the node and the file, so editing a
//! file makes a new pod (the old one is killed, the new one started). The
//! annotations `kubernetes.io/config.hash`, `.source` (`file`) and `.seen` are set.
//! [`mirror_pod`] is what the kubelet posts so the API shows the pod: the same pod
//! with `kubernetes.io/config.mirror` set to the hash and the Node as its owner.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use sha2::Digest;

/// The annotation holding a static pod's hash (its UID).
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// The annotation naming the pod's source (`file`, `api`).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// The annotation holding when the kubelet first saw the pod.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// The annotation marking a mirror pod, holding the static pod's hash.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// Whether `pod` is a static pod (from a file).
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_SOURCE))
        .is_some_and(|s| s == "file")
}

/// Whether `pod` is a mirror pod.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// The pod a manifest describes, with upstream's defaults for `node`. `Err` says why
/// the file is not a pod, in upstream's log words.
pub fn from_manifest(text: &str, path: &str, node: &str, seen: &str) -> Result<Pod, String> {
    let v: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("{path}: couldn't parse as pod({e}), please check config file"))?;
    if v.get("kind").and_then(|k| k.as_str()) != Some("Pod") {
        return Err(format!(
            "{path}: couldn't parse as pod(Object 'Kind' is missing or is not Pod), please check config file"
        ));
    }
    let mut pod: Pod = serde_json::from_value(v)
        .map_err(|e| format!("{path}: couldn't parse as pod({e}), please check config file"))?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(format!(
            "{path}: invalid pod: metadata.name: Required value: name or generateName is required"
        ));
    }
    let mut h = sha2::Sha256::new();
    h.update(text.as_bytes());
    h.update(format!("host:{node}").as_bytes());
    h.update(format!("file:{path}").as_bytes());
    let digest = h.finalize();
    let uid: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    pod.metadata.name = Some(format!("{name}-{node}"));
    if pod
        .metadata
        .namespace
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(uid.clone());
    let a = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    a.insert(CONFIG_HASH.into(), uid);
    a.insert(CONFIG_SOURCE.into(), "file".into());
    a.insert(CONFIG_SEEN.into(), seen.to_owned());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_owned());
    // Static pods tolerate every NoExecute taint, as upstream's defaulting.
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations.iter().any(|t| {
        t.operator.as_deref() == Some("Exists")
            && t.effect.as_deref() == Some("NoExecute")
            && t.key.is_none()
    }) {
        tolerations.push(Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        });
    }
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy
            .get_or_insert_with(|| "File".into());
        if c.image_pull_policy.is_none() {
            c.image_pull_policy = Some(crate::images::pull_policy(c));
        }
    }
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.enable_service_links.get_or_insert(true);
    Ok(pod)
}

/// The static pods in `dir` (files whose names do not start with a dot), sorted by
/// file name. Files that are not pods are logged and skipped.
pub fn read_dir(dir: &Path, node: &str, seen: &str) -> Vec<Pod> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(r) => r.flatten().map(|e| e.path()).collect(),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %dir.display(), error = %e, "unable to read static pod path");
            }
            return Vec::new();
        }
    };
    files.sort();
    files
        .into_iter()
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            match from_manifest(&text, &p.display().to_string(), node, seen) {
                Ok(pod) => Some(pod),
                Err(e) => {
                    tracing::warn!(error = %e, "Could not process manifest file");
                    None
                }
            }
        })
        .collect()
}

/// The mirror pod of a static pod on node `node` (UID `node_uid`).
pub fn mirror_pod(pod: &Pod, node: &str, node_uid: &str) -> Pod {
    let mut m = pod.clone();
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.status = None;
    let a = m.metadata.annotations.get_or_insert_with(BTreeMap::new);
    a.insert(CONFIG_MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_owned(),
        uid: node_uid.to_owned(),
        controller: Some(true),
        ..Default::default()
    }]);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn manifests_get_upstreams_defaults() {
        let p = from_manifest(
            MANIFEST,
            "/etc/kubernetes/manifests/web.yaml",
            "node-1",
            "t",
        )
        .unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-node-1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let a = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[CONFIG_SOURCE], "file");
        assert_eq!(a[CONFIG_HASH], p.metadata.uid.clone().unwrap());
        assert_eq!(p.metadata.uid.as_ref().unwrap().len(), 32);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Always")
        );
        assert!(is_static(&p) && !is_mirror(&p));
        // The same file is the same pod; an edit or another node is another.
        let same = from_manifest(
            MANIFEST,
            "/etc/kubernetes/manifests/web.yaml",
            "node-1",
            "t2",
        )
        .unwrap();
        assert_eq!(same.metadata.uid, p.metadata.uid);
        let edited = from_manifest(
            &MANIFEST.replace("busybox", "busybox:1.36"),
            "/etc/kubernetes/manifests/web.yaml",
            "node-1",
            "t",
        )
        .unwrap();
        assert_ne!(edited.metadata.uid, p.metadata.uid);
        let m = mirror_pod(&p, "node-1", "node-uid");
        assert!(is_mirror(&m));
        assert_eq!(
            m.metadata.annotations.as_ref().unwrap()[CONFIG_MIRROR],
            p.metadata.uid.clone().unwrap()
        );
        assert_eq!(
            m.metadata.owner_references.as_ref().unwrap()[0].uid,
            "node-uid"
        );
        assert!(m.metadata.uid.is_none());
    }

    #[test]
    fn bad_files_are_refused() {
        let e = from_manifest(
            "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n",
            "/m/x.yaml",
            "n",
            "t",
        )
        .unwrap_err();
        assert!(e.contains("couldn't parse as pod"), "{e}");
        let e = from_manifest(
            "kind: Pod\nmetadata: {}\nspec: {containers: []}\n",
            "/m/y.yaml",
            "n",
            "t",
        )
        .unwrap_err();
        assert!(e.contains("name or generateName is required"), "{e}");
    }
}
