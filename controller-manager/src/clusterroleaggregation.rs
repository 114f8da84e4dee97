//! The clusterrole-aggregation controller: a ClusterRole with an `aggregationRule`
//! holds the union of the rules of every other ClusterRole its selectors match, as
//! upstream's `ClusterRoleAggregationController` (how `admin`, `edit` and `view` get
//! their rules, and how CRD authors extend them with
//! `rbac.authorization.k8s.io/aggregate-to-*` labels).
//!
//! One watch on ClusterRoles keeps a map of them; after every change each aggregated
//! role is recomputed ([`aggregate`], pure) and written with a merge patch when its
//! rules differ. Sources are taken in name order and equal rules are kept once, so the
//! result is stable.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};

pub use client_base::selectors::matches;

/// The rules `target` should hold given every ClusterRole (sorted by name), or `None`
/// when it is not aggregated.
pub fn aggregate(
    target: &ClusterRole,
    all: &BTreeMap<String, ClusterRole>,
) -> Option<Vec<PolicyRule>> {
    let selectors = target
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .clone()
        .unwrap_or_default();
    let name = target.metadata.name.as_deref().unwrap_or("");
    let mut rules: Vec<PolicyRule> = Vec::new();
    for (other_name, other) in all {
        if other_name == name {
            continue;
        }
        let labels = other.metadata.labels.clone().unwrap_or_default();
        if !selectors.iter().any(|s| matches(s, &labels)) {
            continue;
        }
        for r in other.rules.iter().flatten() {
            if !rules.contains(r) {
                rules.push(r.clone());
            }
        }
    }
    Some(rules)
}

async fn sync_all(api: &Api<ClusterRole>, all: &BTreeMap<String, ClusterRole>) {
    for (name, role) in all {
        let Some(want) = aggregate(role, all) else {
            continue;
        };
        if role.rules.clone().unwrap_or_default() == want {
            continue;
        }
        let patch = serde_json::json!({"rules": want});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::debug!(clusterrole = name, rules = want.len(), "aggregated"),
            Err(e) => tracing::warn!(clusterrole = name, error = %e, "aggregating"),
        }
    }
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client) {
    let api: Api<ClusterRole> = Api::all(client);
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut all: BTreeMap<String, ClusterRole> = BTreeMap::new();
    let mut listing: BTreeMap<String, ClusterRole> = BTreeMap::new();
    let mut synced = false;
    while let Some(ev) = events.next().await {
        let name = |r: &ClusterRole| r.metadata.name.clone().unwrap_or_default();
        match ev {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(r)) => {
                listing.insert(name(&r), r);
            }
            Ok(watcher::Event::InitDone) => {
                all = std::mem::take(&mut listing);
                synced = true;
                sync_all(&api, &all).await;
            }
            Ok(watcher::Event::Apply(r)) => {
                all.insert(name(&r), r);
                if synced {
                    sync_all(&api, &all).await;
                }
            }
            Ok(watcher::Event::Delete(r)) => {
                all.remove(&name(&r));
                if synced {
                    sync_all(&api, &all).await;
                }
            }
            Err(e) => tracing::info!(error = %e, "clusterrole watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, LabelSelectorRequirement, ObjectMeta,
    };

    use super::*;

    fn role(name: &str, labels: &[(&str, &str)], verbs: &[&str]) -> ClusterRole {
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".into()]),
                verbs: verbs.iter().map(|v| (*v).into()).collect(),
                ..Default::default()
            }]),
            aggregation_rule: None,
        }
    }

    #[test]
    fn aggregated_roles_hold_the_union_once_in_name_order() {
        let mut view = role("view", &[], &[]);
        view.rules = None;
        view.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([("agg".to_owned(), "view".to_owned())].into()),
                ..Default::default()
            }]),
        });
        let mut all = BTreeMap::new();
        for r in [
            role("b", &[("agg", "view")], &["list"]),
            role("a", &[("agg", "view")], &["get"]),
            role("dup", &[("agg", "view")], &["get"]),
            role("other", &[("agg", "edit")], &["delete"]),
        ] {
            all.insert(r.metadata.name.clone().unwrap(), r);
        }
        all.insert("view".into(), view.clone());
        let rules = aggregate(&view, &all).unwrap();
        let verbs: Vec<_> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["get", "list"]);
        assert!(aggregate(&all["a"], &all).is_none());
    }

    #[test]
    fn selector_expressions() {
        let labels: BTreeMap<String, String> = [("a".to_owned(), "1".to_owned())].into();
        let expr = |op: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| (*v).into()).collect()),
            }]),
            ..Default::default()
        };
        assert!(matches(&expr("In", &["1", "2"]), &labels));
        assert!(!matches(&expr("NotIn", &["1"]), &labels));
        assert!(matches(&expr("Exists", &[]), &labels));
        assert!(!matches(&expr("DoesNotExist", &[]), &labels));
        assert!(matches(&LabelSelector::default(), &labels));
    }
}
