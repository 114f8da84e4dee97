//! `pods/eviction`: deletes a pod unless a PodDisruptionBudget forbids it, as upstream's
//! eviction REST does.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::catalog::catalog;
use crate::error::ApiError;
use crate::handlers::{Ctx, Reply, parse_json};
use crate::meta;

/// POST pods/<name>/eviction.
pub async fn evict(ctx: &Ctx<'_>, body: &Bytes) -> Result<Reply, ApiError> {
    let ev = parse_json(body)?;
    let name = ctx.info.name.clone().unwrap_or_default();
    if let Some(n) = meta::field(&ev, "name")
        && n != name
    {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".to_owned(),
        ));
    }
    let ns = ctx.info.namespace.clone().unwrap_or_default();
    let pods = catalog().get("", "v1", "pods").expect("pods");
    let pdbs = catalog()
        .get("policy", "v1", "poddisruptionbudgets")
        .expect("pdbs");
    let pod = ctx.api.registry.get(pods, &ns, &name).await?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let bypass = matches!(phase, "Succeeded" | "Failed" | "Pending")
        || meta::field(&pod, "deletionTimestamp").is_some();
    if !bypass {
        let (items, _) = ctx
            .api
            .registry
            .cache(pdbs)
            .map(|c| c.snapshot(&format!("{ns}/")))
            .unwrap_or_default();
        let labels = crate::selectors::labels_of(&pod);
        let matching: Vec<_> = items
            .iter()
            .filter(|p| {
                let sel = p.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
                !sel.is_null() && crate::selectors::LabelSelector::from_meta(&sel).matches(&labels)
            })
            .collect();
        if matching.len() > 1 {
            return Err(ApiError::Internal("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into()));
        }
        if let Some(pdb) = matching.first() {
            let pdb_name = meta::name(pdb).to_owned();
            let generation = pdb
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let observed = pdb
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let allowed = pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let cause = if observed < generation {
                format!("The disruption budget {pdb_name} is still being processed by the server.")
            } else if allowed <= 0 {
                let desired = pdb
                    .pointer("/status/desiredHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let current = pdb
                    .pointer("/status/currentHealthy")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                format!(
                    "The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"
                )
            } else {
                String::new()
            };
            if !cause.is_empty() {
                return Err(ApiError::DisruptionBudget(cause));
            }
            ctx.api
                .registry
                .guaranteed_update(pdbs, &ns, &pdb_name, |mut p| {
                    let a = p
                        .pointer("/status/disruptionsAllowed")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if a <= 0 {
                        return Err(ApiError::DisruptionBudget(format!(
                            "The disruption budget {pdb_name} needs more healthy pods"
                        )));
                    }
                    p["status"]["disruptionsAllowed"] = json!(a - 1);
                    p["status"]["disruptedPods"][name.as_str()] = json!(meta::now());
                    Ok(Some(p))
                })
                .await?;
        }
    }
    let opts = ev.get("deleteOptions").cloned().unwrap_or(json!({}));
    let body = Bytes::from(serde_json::to_vec(&opts).unwrap_or_default());
    let del_ctx = Ctx {
        api: ctx.api,
        info: ctx.info,
        res: pods,
        query: ctx.query,
        user: ctx.user,
        user_agent: ctx.user_agent,
        warnings: ctx.warnings.clone(),
        audit_annotations: ctx.audit_annotations.clone(),
    };
    crate::handlers::delete(&del_ctx, &body).await?;
    Ok(Reply {
        code: 201,
        body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        warnings: Vec::new(),
    })
}
