//! Requests that upstream proxies to a node's kubelet (logs, exec, attach,
//! port-forward, proxy). Until kubelets exist these resolve the pod and node and then
//! fail with upstream's wording for a node without a reachable kubelet.

use serde_json::Value;

use crate::catalog::catalog;
use crate::error::ApiError;
use crate::handlers::Ctx;

/// The error for a kubelet-bound request.
pub async fn no_kubelet(ctx: &Ctx<'_>) -> ApiError {
    let name = ctx.info.name.clone().unwrap_or_default();
    let ns = ctx.info.namespace.clone().unwrap_or_default();
    let node_name = if ctx.res.kind == "Pod" {
        let pods = catalog().get("", "v1", "pods").expect("pods");
        let pod = match ctx.api.registry.get(pods, &ns, &name).await {
            Ok(p) => p,
            Err(e) => return e,
        };
        match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => return ApiError::BadRequest(format!("pod {name} does not have a host assigned")),
        }
    } else if ctx.res.kind == "Node" {
        name.clone()
    } else {
        return ApiError::ServiceUnavailable("no endpoints available for service".into());
    };
    let nodes = catalog().get("", "v1", "nodes").expect("nodes");
    let node = match ctx.api.registry.get(nodes, "", &node_name).await {
        Ok(n) => n,
        Err(e) => return e,
    };
    let known: Vec<String> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| {
                    format!(
                        "{{{} {}}}",
                        x["type"].as_str().unwrap_or(""),
                        x["address"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ApiError::Internal(format!(
        "no preferred addresses found; known addresses: [{}]",
        known.join(" ")
    ))
}
