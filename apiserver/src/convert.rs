//! Conversion between a served version and the storage version, for the resources that
//! share storage: events.k8s.io/v1 Events are stored as core/v1 Events, and
//! autoscaling/v1 HorizontalPodAutoscalers as autoscaling/v2.

use serde_json::{Map, Value, json};

use crate::catalog::Resource;

fn mv(from: &Value, to: &mut Map<String, Value>, src: &str, dst: &str) {
    if let Some(v) = from.get(src)
        && !v.is_null()
    {
        to.insert(dst.to_owned(), v.clone());
    }
}

/// A stored object as `res`'s version.
pub fn from_storage(res: &Resource, obj: &Value) -> Value {
    match (res.group, res.kind) {
        ("events.k8s.io", "Event") => {
            let mut o = Map::new();
            o.insert("kind".into(), json!("Event"));
            o.insert("apiVersion".into(), json!("events.k8s.io/v1"));
            mv(obj, &mut o, "metadata", "metadata");
            mv(obj, &mut o, "eventTime", "eventTime");
            mv(obj, &mut o, "series", "series");
            mv(obj, &mut o, "reportingComponent", "reportingController");
            mv(obj, &mut o, "reportingInstance", "reportingInstance");
            mv(obj, &mut o, "action", "action");
            mv(obj, &mut o, "reason", "reason");
            mv(obj, &mut o, "involvedObject", "regarding");
            mv(obj, &mut o, "related", "related");
            mv(obj, &mut o, "message", "note");
            mv(obj, &mut o, "type", "type");
            mv(obj, &mut o, "source", "deprecatedSource");
            mv(obj, &mut o, "firstTimestamp", "deprecatedFirstTimestamp");
            mv(obj, &mut o, "lastTimestamp", "deprecatedLastTimestamp");
            mv(obj, &mut o, "count", "deprecatedCount");
            Value::Object(o)
        }
        ("autoscaling", "HorizontalPodAutoscaler") if res.version == "v1" => {
            let mut o = obj.clone();
            o["apiVersion"] = json!("autoscaling/v1");
            let cpu = obj
                .pointer("/spec/metrics")
                .and_then(Value::as_array)
                .and_then(|ms| {
                    ms.iter().find_map(|m| {
                        (m.pointer("/resource/name") == Some(&json!("cpu")))
                            .then(|| m.pointer("/resource/target/averageUtilization").cloned())
                            .flatten()
                    })
                });
            if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("metrics");
                spec.remove("behavior");
                if let Some(c) = cpu {
                    spec.insert("targetCPUUtilizationPercentage".into(), c);
                }
            }
            let cur_cpu = obj
                .pointer("/status/currentMetrics")
                .and_then(Value::as_array)
                .and_then(|ms| {
                    ms.iter()
                        .find_map(|m| m.pointer("/resource/current/averageUtilization").cloned())
                });
            if let Some(m) = o.as_object_mut() {
                m.entry("status").or_insert(json!({}));
            }
            if let Some(st) = o.get_mut("status").and_then(Value::as_object_mut) {
                st.remove("currentMetrics");
                st.remove("conditions");
                if let Some(c) = cur_cpu {
                    st.insert("currentCPUUtilizationPercentage".into(), c);
                }
                // v1's replica counts have no omitempty: they always print.
                for k in ["currentReplicas", "desiredReplicas"] {
                    st.entry(k).or_insert(json!(0));
                }
            }
            o
        }
        _ if res.custom.is_some() => with_api_version(obj, res.group, res.version),
        _ => obj.clone(),
    }
}

/// A request object of `res`'s version as the storage version.
pub fn to_storage(res: &Resource, obj: &Value) -> Value {
    match (res.group, res.kind) {
        ("events.k8s.io", "Event") => {
            let mut o = Map::new();
            o.insert("kind".into(), json!("Event"));
            o.insert("apiVersion".into(), json!("v1"));
            mv(obj, &mut o, "metadata", "metadata");
            mv(obj, &mut o, "eventTime", "eventTime");
            mv(obj, &mut o, "series", "series");
            mv(obj, &mut o, "reportingController", "reportingComponent");
            mv(obj, &mut o, "reportingInstance", "reportingInstance");
            mv(obj, &mut o, "action", "action");
            mv(obj, &mut o, "reason", "reason");
            mv(obj, &mut o, "regarding", "involvedObject");
            mv(obj, &mut o, "related", "related");
            mv(obj, &mut o, "note", "message");
            mv(obj, &mut o, "type", "type");
            mv(obj, &mut o, "deprecatedSource", "source");
            mv(obj, &mut o, "deprecatedFirstTimestamp", "firstTimestamp");
            mv(obj, &mut o, "deprecatedLastTimestamp", "lastTimestamp");
            mv(obj, &mut o, "deprecatedCount", "count");
            if !o.contains_key("involvedObject") {
                o.insert("involvedObject".into(), json!({}));
            }
            Value::Object(o)
        }
        ("autoscaling", "HorizontalPodAutoscaler") if res.version == "v1" => {
            let mut o = obj.clone();
            o["apiVersion"] = json!("autoscaling/v2");
            if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut)
                && let Some(c) = spec.remove("targetCPUUtilizationPercentage")
            {
                spec.insert(
                        "metrics".into(),
                        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": c}}}]),
                    );
            }
            if let Some(st) = o.get_mut("status").and_then(Value::as_object_mut)
                && let Some(c) = st.remove("currentCPUUtilizationPercentage")
            {
                st.insert(
                        "currentMetrics".into(),
                        json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": c}}}]),
                    );
            }
            o
        }
        _ if res.custom.is_some() => with_api_version(obj, res.storage_gv.0, res.storage_gv.1),
        _ => obj.clone(),
    }
}

/// A custom object at another version of its CRD: conversion strategy None changes
/// only the apiVersion.
fn with_api_version(obj: &Value, group: &str, version: &str) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert(
            "apiVersion".into(),
            json!(crate::catalog::gv_string(group, version)),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::catalog;

    #[test]
    fn events_round_trip() {
        let r = catalog().get("events.k8s.io", "v1", "events").unwrap();
        let core = json!({"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "message": "hi", "reason": "R", "count": 2});
        let new = from_storage(r, &core);
        assert_eq!(new["note"], "hi");
        assert_eq!(new["regarding"]["name"], "p");
        assert_eq!(to_storage(r, &new), core);
    }
}
