//! ServiceAccount: every pod runs as a service account that exists, and gets its
//! API credentials as a projected volume, as upstream's plugin.
//!
//! On pod create (mutating):
//! - an empty `serviceAccountName` becomes `default`;
//! - the account must exist (the watch cache, then a live read; `default` is read up
//!   to ten times, since the serviceaccount controller creates it just after the
//!   namespace);
//! - unless the pod or the account turn `automountServiceAccountToken` off, every
//!   container and init container mounts a `kube-api-access-<suffix>` projected
//!   volume at `/var/run/secrets/kubernetes.io/serviceaccount`: a bound token
//!   (`expirationSeconds: 3607`), `ca.crt` from the `kube-root-ca.crt` ConfigMap, and
//!   the namespace. A container that already mounts something there is left alone;
//! - a pod without `imagePullSecrets` takes the account's.
//!
//! Mirror pods (the kubelet's copies of static pods) are never changed, and may
//! reference neither service accounts, secrets nor token projections. An account
//! annotated `kubernetes.io/enforce-mountable-secrets: "true"` limits the pod to the
//! secrets it lists.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::pods::{cached, forbidden};
use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::catalog::catalog;
use crate::error::ApiError;

/// The account pods run as when they name none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where containers find the token, CA and namespace.
pub const DEFAULT_API_TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The projected volume's name prefix.
pub const SERVICE_ACCOUNT_VOLUME_NAME: &str = "kube-api-access";
/// The annotation that marks static pods' mirrors.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The annotation that limits pods to the account's secrets.
pub const ENFORCE_MOUNTABLE_SECRETS: &str = "kubernetes.io/enforce-mountable-secrets";
/// The token lifetime the projected volume asks for: upstream's
/// `WarnOnlyBoundTokenExpirationSeconds` (an hour and seven seconds, which marks
/// tokens the server may extend).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// The ServiceAccount plugin.
pub struct ServiceAccount;

fn is_pod_create(req: &AdmissionRequest) -> Option<&Value> {
    (req.operation == Operation::Create && req.is("", "Pod"))
        .then_some(req.object.as_ref())
        .flatten()
}

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_POD_ANNOTATION))
        .is_some()
}

/// The account, from the watch cache or else the store; `default` is retried, since
/// it is created just after its namespace.
async fn lookup(api: &Api, ns: &str, name: &str) -> Result<Value, String> {
    if let Some(sa) = cached(api, "", "v1", "serviceaccounts", ns, name) {
        return Ok((*sa).clone());
    }
    let res = catalog()
        .get("", "v1", "serviceaccounts")
        .expect("serviceaccounts");
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        10
    } else {
        1
    };
    for i in 0..attempts {
        if i > 0 {
            let jitter: u64 = rand::random_range(0..100);
            tokio::time::sleep(std::time::Duration::from_millis(100 + jitter)).await;
        }
        match api.registry.get(res, ns, name).await {
            Ok(sa) => return Ok(sa),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("serviceaccount {name:?} not found"))
}

/// Whether the token volume is mounted: the pod's choice, else the account's, else
/// yes.
fn automount(sa: &Value, pod: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true)
}

/// The projected volume source upstream adds.
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{
                "path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
            }]}},
        ],
    })
}

/// Mounts the token volume into every container that has nothing at the mount
/// path, adding the volume when one needs it (`suffix` names a new volume).
pub fn mount_token(pod: &mut Value, suffix: &str) {
    let existing = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(&format!("{SERVICE_ACCOUNT_VOLUME_NAME}-")))
        .map(str::to_owned);
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{SERVICE_ACCOUNT_VOLUME_NAME}-{suffix}"));
    let mount = json!({"name": name, "readOnly": true, "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers {
            let mounts = c
                .as_object_mut()
                .map(|o| o.entry("volumeMounts").or_insert_with(|| json!([])));
            let Some(Value::Array(mounts)) = mounts else {
                continue;
            };
            if mounts.iter().any(|m| {
                m.get("mountPath").and_then(Value::as_str) == Some(DEFAULT_API_TOKEN_MOUNT_PATH)
            }) {
                continue;
            }
            mounts.push(mount.clone());
            needed = true;
        }
    }
    if needed && existing.is_none() {
        let spec = &mut pod["spec"];
        if !spec["volumes"].is_array() {
            spec["volumes"] = json!([]);
        }
        if let Some(v) = spec["volumes"].as_array_mut() {
            v.push(json!({"name": name, "projected": token_volume_source()}));
        }
    }
}

/// The secrets the mountable-secrets check looks at, with where (for the error
/// text), in upstream's order: secret volumes, then containers' env and envFrom.
fn secret_references(pod: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    for v in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = v.pointer("/secret/secretName") {
            out.push((
                s(name),
                format!("volume with secret.secretName={:?}", s(name)),
            ));
        }
    }
    for (list, what) in [
        ("initContainers", "init container"),
        ("containers", "container"),
    ] {
        for c in pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                if let Some(name) = e.pointer("/valueFrom/secretKeyRef/name") {
                    out.push((
                        s(name),
                        format!(
                            "{what} {cname} with envVar {} referencing secret.secretName={:?}",
                            e.get("name").and_then(Value::as_str).unwrap_or(""),
                            s(name)
                        ),
                    ));
                }
            }
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = e.pointer("/secretRef/name") {
                    out.push((
                        s(name),
                        format!(
                            "{what} {cname} with envFrom referencing secret.secretName={:?}",
                            s(name)
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// The enforce-mountable-secrets check: every secret the pod names must be one of
/// the account's.
fn limit_secret_references(sa: &Value, pod: &Value) -> Result<(), String> {
    let names = |field: &str| -> Vec<String> {
        sa.get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let sa_name = crate::meta::name(sa);
    let mountable = names("secrets");
    for (secret, what) in secret_references(pod) {
        if !mountable.contains(&secret) {
            return Err(format!(
                "{what} is not allowed because service account {sa_name} does not reference that secret"
            ));
        }
    }
    let pull = names("imagePullSecrets");
    for (i, r) in pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("");
        if !pull.iter().any(|p| p == name) {
            return Err(format!(
                "imagePullSecrets[{i}].name={name:?} is not allowed because service account {sa_name} does not reference that imagePullSecret"
            ));
        }
    }
    Ok(())
}

/// The rules for mirror pods.
fn check_mirror(pod: &Value) -> Result<(), &'static str> {
    if pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        return Err("a mirror pod may not reference service accounts");
    }
    // Upstream's `VisitPodSecretNames`: pull secrets, every volume type's secret
    // references, projections, env and envFrom of every container.
    if !crate::authz::node::pod_refs(pod, "Secret").is_empty() {
        return Err("a mirror pod may not reference secrets");
    }
    let projects_token = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/projected/sources").and_then(Value::as_array))
        .flatten()
        .any(|s| s.get("serviceAccountToken").is_some());
    if projects_token {
        return Err("a mirror pod may not use ServiceAccountToken volume projections");
    }
    Ok(())
}

impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn admit<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            let Some(pod) = is_pod_create(req) else {
                return Ok(req.object.clone());
            };
            if is_mirror(pod) {
                return Ok(req.object.clone());
            }
            let mut pod = pod.clone();
            // The deprecated `serviceAccount` stands in for an empty
            // `serviceAccountName`, and mirrors it afterwards, as upstream's v1 API.
            let named = ["/spec/serviceAccountName", "/spec/serviceAccount"]
                .iter()
                .find_map(|p| {
                    pod.pointer(p)
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                })
                .map(str::to_owned);
            let sa_name = named.unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_owned());
            pod["spec"]["serviceAccountName"] = json!(sa_name);
            pod["spec"]["serviceAccount"] = json!(sa_name);
            let sa = lookup(api, &req.namespace, &sa_name).await.map_err(|e| {
                forbidden(
                    req,
                    &format!(
                        "error looking up service account {}/{sa_name}: {e}",
                        req.namespace
                    ),
                )
            })?;
            if automount(&sa, &pod) {
                mount_token(&mut pod, &crate::meta::name_suffix());
            }
            let pod_pull = pod
                .pointer("/spec/imagePullSecrets")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !pod_pull
                && let Some(pull) = sa.get("imagePullSecrets").and_then(Value::as_array)
                && !pull.is_empty()
            {
                let refs: Vec<Value> = pull
                    .iter()
                    .map(|r| json!({"name": r.get("name").cloned().unwrap_or(json!(""))}))
                    .collect();
                pod["spec"]["imagePullSecrets"] = Value::Array(refs);
            }
            Ok(Some(pod))
        })
    }

    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let Some(pod) = is_pod_create(req) else {
                return Ok(());
            };
            if is_mirror(pod) {
                return check_mirror(pod).map_err(|why| forbidden(req, why));
            }
            let sa_name = pod
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if sa_name.is_empty() {
                return Err(forbidden(
                    req,
                    &format!(
                        "no service account specified for pod {}/{}",
                        req.namespace,
                        crate::meta::name(pod)
                    ),
                ));
            }
            let sa = lookup(api, &req.namespace, sa_name).await.map_err(|e| {
                forbidden(
                    req,
                    &format!(
                        "error looking up service account {}/{sa_name}: {e}",
                        req.namespace
                    ),
                )
            })?;
            let enforce = sa
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(ENFORCE_MOUNTABLE_SECRETS))
                .and_then(Value::as_str)
                .is_some_and(|v| matches!(v, "true" | "1" | "t" | "T" | "TRUE" | "True"));
            if enforce {
                limit_secret_references(&sa, pod).map_err(|why| forbidden(req, &why))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [
                {"name": "a", "image": "i"},
                {"name": "b", "image": "i", "volumeMounts": [{"name": "mine", "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}]},
            ],
        }})
    }

    #[test]
    fn the_token_volume_is_mounted_where_nothing_else_is() {
        let mut p = pod();
        mount_token(&mut p, "abcde");
        let vols = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0]["name"], "kube-api-access-abcde");
        assert_eq!(vols[0]["projected"], token_volume_source());
        assert_eq!(
            vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        let mounts = |list: &str, i: usize| p["spec"][list][i]["volumeMounts"].clone();
        assert_eq!(
            mounts("initContainers", 0)[0]["name"],
            "kube-api-access-abcde"
        );
        assert_eq!(mounts("containers", 0)[0]["readOnly"], true);
        // b keeps its own mount and gets no second one.
        assert_eq!(mounts("containers", 1).as_array().unwrap().len(), 1);
        assert_eq!(mounts("containers", 1)[0]["name"], "mine");
        // Mounting twice reuses the volume.
        mount_token(&mut p, "zzzzz");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn no_volume_when_no_container_needs_it() {
        let mut p = json!({"spec": {"containers": [
            {"name": "b", "volumeMounts": [{"name": "x", "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}]}
        ]}});
        mount_token(&mut p, "abcde");
        assert!(p["spec"].get("volumes").is_none());
    }

    #[test]
    fn automount_is_the_pods_choice_then_the_accounts() {
        let sa_off = json!({"automountServiceAccountToken": false});
        let pod_on = json!({"spec": {"automountServiceAccountToken": true}});
        assert!(automount(&json!({}), &json!({"spec": {}})));
        assert!(!automount(&sa_off, &json!({"spec": {}})));
        assert!(automount(&sa_off, &pod_on));
    }

    #[test]
    fn mountable_secrets_are_enforced_in_upstreams_words() {
        let sa = json!({"metadata": {"name": "robot"}, "secrets": [{"name": "ok"}], "imagePullSecrets": [{"name": "pull"}]});
        let with = |spec: Value| json!({"spec": spec});
        assert!(
            limit_secret_references(
                &sa,
                &with(json!({"volumes": [{"name": "v", "secret": {"secretName": "ok"}}]}))
            )
            .is_ok()
        );
        assert_eq!(
            limit_secret_references(
                &sa,
                &with(json!({"volumes": [{"name": "v", "secret": {"secretName": "no"}}]}))
            )
            .unwrap_err(),
            "volume with secret.secretName=\"no\" is not allowed because service account robot does not reference that secret"
        );
        assert_eq!(
            limit_secret_references(&sa, &with(json!({"containers": [{"name": "c", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "no", "key": "k"}}}]}]}))).unwrap_err(),
            "container c with envVar E referencing secret.secretName=\"no\" is not allowed because service account robot does not reference that secret"
        );
        assert_eq!(
            limit_secret_references(
                &sa,
                &with(json!({"imagePullSecrets": [{"name": "pull"}, {"name": "other"}]}))
            )
            .unwrap_err(),
            "imagePullSecrets[1].name=\"other\" is not allowed because service account robot does not reference that imagePullSecret"
        );
    }

    #[test]
    fn mirror_pods_reference_nothing() {
        let mirror = |spec: Value| json!({"metadata": {"annotations": {MIRROR_POD_ANNOTATION: "x"}}, "spec": spec});
        assert!(is_mirror(&mirror(json!({}))));
        assert!(check_mirror(&mirror(json!({"containers": []}))).is_ok());
        assert_eq!(
            check_mirror(&mirror(json!({"serviceAccountName": "default"}))).unwrap_err(),
            "a mirror pod may not reference service accounts"
        );
        assert_eq!(
            check_mirror(&mirror(
                json!({"volumes": [{"name": "v", "secret": {"secretName": "s"}}]})
            ))
            .unwrap_err(),
            "a mirror pod may not reference secrets"
        );
        assert_eq!(
            check_mirror(&mirror(
                json!({"volumes": [{"name": "v", "projected": token_volume_source()}]})
            ))
            .unwrap_err(),
            "a mirror pod may not use ServiceAccountToken volume projections"
        );
        // Every kind of reference counts, as upstream's VisitPodSecretNames.
        assert_eq!(
            check_mirror(&mirror(
                json!({"volumes": [{"name": "v", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "s"}}}]})
            ))
            .unwrap_err(),
            "a mirror pod may not reference secrets"
        );
    }
}
