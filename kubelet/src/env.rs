//! Container environments and downward API values, as upstream's
//! `makeEnvironmentVariables` and `fieldpath`/`resource` helpers: `env` in order
//! with `$(VAR)` expansion over what came before, `envFrom` first, and
//! `valueFrom` field, resource, ConfigMap and Secret references.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVarSource, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};

use crate::kuberuntime::expand;

/// Why an environment or a downward API file could not be made, in upstream's
/// words (the container waits with `CreateContainerConfigError`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A referenced ConfigMap does not exist.
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    /// A referenced Secret does not exist.
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    /// A referenced key is missing.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// The key.
        key: String,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
    },
    /// A field path the downward API does not support.
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    /// A resource the downward API does not support.
    #[error("unsupported container resource : {0}")]
    Resource(String),
    /// The API could not be read.
    #[error("{0}")]
    Api(String),
}

/// Where ConfigMaps and Secrets come from (the apiserver; maps in tests).
#[async_trait::async_trait]
pub trait Objects: Send + Sync {
    /// A ConfigMap, or `None` when it does not exist.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, Error>;
    /// A Secret, or `None` when it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error>;
}

/// [`Objects`] read from the apiserver.
pub struct ApiObjects(pub kube::Client);

#[async_trait::async_trait]
impl Objects for ApiObjects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, Error> {
        kube::Api::<ConfigMap>::namespaced(self.0.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| Error::Api(client_base::errors::message(&e)))
    }
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        kube::Api::<Secret>::namespaced(self.0.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| Error::Api(client_base::errors::message(&e)))
    }
}

/// The node-side values the downward API reads.
#[derive(Clone, Debug, Default)]
pub struct NodeValues {
    /// The node's IPs.
    pub host_ips: Vec<String>,
    /// The pod's IPs.
    pub pod_ips: Vec<String>,
    /// The node's allocatable cpu in millicores (the default cpu limit).
    pub allocatable_milli_cpu: i64,
    /// The node's allocatable memory in bytes (the default memory limit).
    pub allocatable_memory: i64,
    /// The node's allocatable ephemeral storage in bytes.
    pub allocatable_ephemeral: i64,
}

fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `fieldRef`'s value (upstream's `podFieldSelectorRuntimeValue` and
/// `ExtractFieldPathAsString`).
pub fn field_value(
    pod: &Pod,
    sel: &ObjectFieldSelector,
    node: &NodeValues,
) -> Result<String, Error> {
    let path = sel.field_path.as_str();
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let v = match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => node.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => node.host_ips.join(","),
        "status.podIP" => node.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => node.pod_ips.join(","),
        p => {
            let key = |prefix: &str| {
                p.strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix("']"))
                    .map(str::to_owned)
            };
            if let Some(k) = key("metadata.labels['") {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = key("metadata.annotations['") {
                m.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(Error::FieldPath(p.to_owned()));
            }
        }
    };
    Ok(v)
}

/// A `resourceFieldRef`'s value for `container` (upstream's
/// `ExtractContainerResourceValue`): the limit or request over the divisor,
/// rounded up; an unset limit reads as the node's allocatable amount.
pub fn resource_value(
    c: &Container,
    sel: &ResourceFieldSelector,
    node: &NodeValues,
) -> Result<String, Error> {
    let nano = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.and_then(|q| component_base::quantity::parse(&q.0))
    };
    let r = c.resources.as_ref();
    let (kind, res) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| Error::Resource(sel.resource.clone()))?;
    let map = match kind {
        "limits" => r.and_then(|r| r.limits.as_ref()),
        "requests" => r.and_then(|r| r.requests.as_ref()),
        _ => return Err(Error::Resource(sel.resource.clone())),
    };
    let fallback = match res {
        "cpu" => i128::from(node.allocatable_milli_cpu) * 1_000_000,
        "memory" => i128::from(node.allocatable_memory) * 1_000_000_000,
        "ephemeral-storage" => i128::from(node.allocatable_ephemeral) * 1_000_000_000,
        _ if res.starts_with("hugepages-") => 0,
        _ => return Err(Error::Resource(sel.resource.clone())),
    };
    let value =
        nano(map.and_then(|m| m.get(res))).unwrap_or(if kind == "limits" { fallback } else { 0 });
    let divisor = nano(sel.divisor.as_ref())
        .filter(|d| *d > 0)
        .unwrap_or(1_000_000_000);
    Ok(((value + divisor - 1) / divisor).to_string())
}

async fn value_from(
    pod: &Pod,
    c: &Container,
    from: &EnvVarSource,
    objects: &dyn Objects,
    node: &NodeValues,
) -> Result<Option<String>, Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(f) = &from.field_ref {
        return field_value(pod, f, node).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        return resource_value(c, r, node).map(Some);
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional.unwrap_or(false);
        let Some(cm) = objects.config_map(ns, &r.name).await? else {
            return if optional {
                Ok(None)
            } else {
                Err(Error::ConfigMapNotFound(r.name.clone()))
            };
        };
        let v = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key).cloned())
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(&r.key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            });
        return match v {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(Error::KeyNotFound {
                kind: "ConfigMap",
                key: r.key.clone(),
                namespace: ns.to_owned(),
                name: r.name.clone(),
            }),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional.unwrap_or(false);
        let Some(s) = objects.secret(ns, &r.name).await? else {
            return if optional {
                Ok(None)
            } else {
                Err(Error::SecretNotFound(r.name.clone()))
            };
        };
        return match s.data.as_ref().and_then(|d| d.get(&r.key)) {
            Some(b) => Ok(Some(String::from_utf8_lossy(&b.0).into_owned())),
            None if optional => Ok(None),
            None => Err(Error::KeyNotFound {
                kind: "Secret",
                key: r.key.clone(),
                namespace: ns.to_owned(),
                name: r.name.clone(),
            }),
        };
    }
    Ok(None)
}

/// The container's environment, in upstream's order: `envFrom` sources, then `env`
/// entries (each expanded over the variables before it); later names win.
pub async fn container_env(
    pod: &Pod,
    c: &Container,
    objects: &dyn Objects,
    node: &NodeValues,
) -> Result<Vec<(String, String)>, Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut order: Vec<String> = Vec::new();
    let mut vals: HashMap<String, String> = HashMap::new();
    let set =
        |k: String, v: String, order: &mut Vec<String>, vals: &mut HashMap<String, String>| {
            if !vals.contains_key(&k) {
                order.push(k.clone());
            }
            vals.insert(k, v);
        };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match objects.config_map(ns, &r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(format!("{prefix}{k}"), v, &mut order, &mut vals);
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(Error::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match objects.secret(ns, &r.name).await? {
                Some(s) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        set(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                            &mut order,
                            &mut vals,
                        );
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(Error::SecretNotFound(r.name.clone())),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let v = match (&e.value, &e.value_from) {
            (Some(v), _) => expand(v, &vals),
            (None, Some(from)) => match value_from(pod, c, from, objects, node).await? {
                Some(v) => v,
                None => continue,
            },
            (None, None) => String::new(),
        };
        set(e.name.clone(), v, &mut order, &mut vals);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vals.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(BTreeMap<String, ConfigMap>);

    #[async_trait::async_trait]
    impl Objects for Fake {
        async fn config_map(&self, _: &str, name: &str) -> Result<Option<ConfigMap>, Error> {
            Ok(self.0.get(name).cloned())
        }
        async fn secret(&self, _: &str, _: &str) -> Result<Option<Secret>, Error> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn env_in_upstream_order_with_expansion() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "c",
                "resources": {"limits": {"memory": "64Mi"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "A", "value": "a"},
                    {"name": "B", "value": "$(A)-b-$$(A)-$(MISSING)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                    {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}
                ]}]}
        }))
        .unwrap();
        let cm: ConfigMap = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "cm"}, "data": {"k": "v"}}),
        )
        .unwrap();
        let objects = Fake(BTreeMap::from([("cm".to_owned(), cm)]));
        let node = NodeValues {
            allocatable_milli_cpu: 2000,
            ..Default::default()
        };
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let env = container_env(&pod, c, &objects, &node).await.unwrap();
        let got: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            got,
            [
                "CM_k=v",
                "A=a",
                "B=a-b-$(A)-$(MISSING)",
                "POD=p",
                "APP=web",
                "MEM=64",
                "CPU=2",
                "K=v"
            ]
        );
        let mut bad = c.clone();
        bad.env =
            Some(vec![serde_json::from_value(serde_json::json!(
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "missing"}}}
        )).unwrap()]);
        bad.env_from = None;
        assert_eq!(
            container_env(&pod, &bad, &objects, &node)
                .await
                .unwrap_err()
                .to_string(),
            "couldn't find key missing in ConfigMap ns/cm"
        );
    }
}
