//! Field management scenarios, checked against upstream's semantics: the
//! `fieldsV1` an update or apply leaves, conflicts, force, shared ownership, field
//! and list-item removal, the update-manager cap and the client-side-apply upgrade.

use serde_json::{Value, json};

use super::*;
use crate::schema::schema;

const T0: &str = "2026-11-23T10:00:00Z";
const T1: &str = "2026-11-23T10:00:01Z";

fn fm(group: &str, version: &str, kind: &str, has_status: bool) -> FieldManager<'static> {
    let def = schema().definition_for(group, version, kind).unwrap();
    let av = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    FieldManager::new(schema(), &def, &av, kind, None, has_status).unwrap()
}

fn cm() -> FieldManager<'static> {
    fm("", "v1", "ConfigMap", false)
}

fn deploy() -> FieldManager<'static> {
    fm("apps", "v1", "Deployment", true)
}

/// The entries as (manager, operation, fieldsV1 text).
fn entries(obj: &Value) -> Vec<(String, String, String)> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_owned(),
                        e["operation"].as_str().unwrap().to_owned(),
                        Set::from_fields_v1(&e["fieldsV1"]).unwrap().to_fields_v1(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fields_of(obj: &Value, manager: &str) -> String {
    entries(obj)
        .into_iter()
        .find(|e| e.0 == manager)
        .map(|e| e.2)
        .unwrap_or_default()
}

fn configmap(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": data})
}

fn apply(
    f: &FieldManager<'_>,
    live: &Value,
    cfg: &Value,
    who: &str,
    force: bool,
) -> Result<Value, Error> {
    f.apply(live, cfg, who, force, T1)
}

fn conflict_text(r: Result<Value, Error>) -> String {
    match r {
        Err(e @ Error::Conflicts(_)) => e.to_string(),
        other => panic!("expected conflicts, got {other:?}"),
    }
}

#[test]
fn create_records_an_update_entry_like_upstream() {
    let f = cm();
    let mut obj = configmap(json!({"a": "1", "b": "2"}));
    obj["metadata"]["labels"] = json!({"app": "x"});
    f.update(
        &f.empty_object("c", "default"),
        &mut obj,
        "kubectl-create",
        T0,
    );
    let mf = &obj["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "kubectl-create");
    assert_eq!(mf["operation"], "Update");
    assert_eq!(mf["apiVersion"], "v1");
    assert_eq!(mf["time"], T0);
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert_eq!(
        fields_of(&obj, "kubectl-create"),
        r#"{"f:data":{".":{},"f:a":{},"f:b":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}}}"#
    );
}

#[test]
fn deployment_create_keys_containers_and_ports_with_defaulted_protocol() {
    let f = deploy();
    let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}},
        "status": {"replicas": 5}});
    f.update(&f.empty_object("d", ""), &mut obj, "kubectl-create", T0);
    let text = fields_of(&obj, "kubectl-create");
    assert!(
        text.starts_with(r#"{"f:spec":{"f:replicas":{},"f:selector":{},"f:template":"#),
        "{text}"
    );
    // (Upstream's baseline, the Go zero value, has `containers: null`, so it prints
    // no "." here; see the module doc.)
    assert!(text.contains(r#""f:containers":{".":{},"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}"#), "{text}");
    // Status is reset on the main resource: nobody owns it from here.
    assert!(!text.contains("f:status"), "{text}");
}

#[test]
fn an_update_that_changes_nothing_keeps_the_entries_and_their_times() {
    let f = cm();
    let mut live = configmap(json!({"a": "1"}));
    f.update(&f.empty_object("c", "default"), &mut live, "creator", T0);
    let mut same = configmap(json!({"a": "1"}));
    f.update(&live, &mut same, "someone-else", T1);
    assert_eq!(
        same["metadata"]["managedFields"],
        live["metadata"]["managedFields"]
    );
}

#[test]
fn an_update_takes_changed_fields_from_other_managers() {
    let f = cm();
    let live = apply(
        &f,
        &f.empty_object("c", "default"),
        &configmap(json!({"a": "1", "b": "2"})),
        "applier",
        false,
    )
    .unwrap();
    let mut edited = live.clone();
    edited["data"]["a"] = json!("changed");
    f.update(&live, &mut edited, "kubectl-edit", T1);
    assert_eq!(fields_of(&edited, "applier"), r#"{"f:data":{"f:b":{}}}"#);
    assert_eq!(
        fields_of(&edited, "kubectl-edit"),
        r#"{"f:data":{"f:a":{}}}"#
    );
    // Re-applying the old value now conflicts with the editor.
    let err = conflict_text(apply(
        &f,
        &edited,
        &configmap(json!({"a": "1", "b": "2"})),
        "applier",
        false,
    ));
    assert_eq!(
        err,
        r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.a"#
    );
}

#[test]
fn apply_conflicts_force_and_shared_ownership() {
    let f = cm();
    let live = apply(
        &f,
        &f.empty_object("c", "default"),
        &configmap(json!({"a": "1", "b": "2"})),
        "one",
        false,
    )
    .unwrap();
    assert_eq!(entries(&live)[0].1, "Apply");
    assert_eq!(fields_of(&live, "one"), r#"{"f:data":{"f:a":{},"f:b":{}}}"#);

    // Same value: no conflict, both own it.
    let shared = apply(&f, &live, &configmap(json!({"a": "1"})), "two", false).unwrap();
    assert_eq!(fields_of(&shared, "two"), r#"{"f:data":{"f:a":{}}}"#);
    assert_eq!(
        fields_of(&shared, "one"),
        r#"{"f:data":{"f:a":{},"f:b":{}}}"#
    );

    // A different value conflicts.
    let err = conflict_text(apply(
        &f,
        &shared,
        &configmap(json!({"a": "9", "b": "9"})),
        "three",
        false,
    ));
    assert_eq!(
        err,
        "Apply failed with 3 conflicts: conflicts with \"one\":\n- .data.a\n- .data.b\nconflicts with \"two\":\n- .data.a"
    );

    // Force takes the fields over.
    let forced = apply(&f, &shared, &configmap(json!({"a": "9"})), "three", true).unwrap();
    assert_eq!(forced["data"], json!({"a": "9", "b": "2"}));
    assert_eq!(fields_of(&forced, "three"), r#"{"f:data":{"f:a":{}}}"#);
    assert_eq!(fields_of(&forced, "one"), r#"{"f:data":{"f:b":{}}}"#);
    assert!(
        entries(&forced).iter().all(|e| e.0 != "two"),
        "two owned nothing else"
    );
}

#[test]
fn fields_an_applier_stops_sending_are_removed_unless_someone_else_owns_them() {
    let f = cm();
    let live = apply(
        &f,
        &f.empty_object("c", "default"),
        &configmap(json!({"a": "1", "b": "2", "c": "3"})),
        "one",
        false,
    )
    .unwrap();
    let live = apply(&f, &live, &configmap(json!({"b": "2"})), "two", false).unwrap();
    let after = apply(&f, &live, &configmap(json!({"a": "1"})), "one", false).unwrap();
    // c was only one's: gone. b is also two's: kept.
    assert_eq!(after["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(fields_of(&after, "one"), r#"{"f:data":{"f:a":{}}}"#);
}

#[test]
fn associative_list_items_merge_by_key_and_are_pruned_by_their_applier() {
    let f = deploy();
    let d = |containers: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"template": {"spec": {"containers": containers}}}})
    };
    let live = apply(
        &f,
        &f.empty_object("d", ""),
        &d(json!([{"name": "a", "image": "a:1"}])),
        "one",
        false,
    )
    .unwrap();
    let live = apply(
        &f,
        &live,
        &d(json!([{"name": "b", "image": "b:1"}])),
        "two",
        false,
    )
    .unwrap();
    let names = |o: &Value| -> Vec<String> {
        o["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&live), ["a", "b"]);
    // One changes its image without touching b's container.
    let live = apply(
        &f,
        &live,
        &d(json!([{"name": "a", "image": "a:2"}])),
        "one",
        false,
    )
    .unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "a:2"
    );
    assert_eq!(names(&live), ["a", "b"]);
    // Two stops sending its container: it goes.
    let live = apply(&f, &live, &d(json!([])), "two", false).unwrap();
    assert_eq!(names(&live), ["a"]);
    // Two claiming a's image with another value conflicts, naming the item by key.
    let err = conflict_text(apply(
        &f,
        &live,
        &d(json!([{"name": "a", "image": "x"}])),
        "two",
        false,
    ));
    assert_eq!(
        err,
        r#"Apply failed with 1 conflict: conflict with "one": .spec.template.spec.containers[name="a"].image"#
    );
}

#[test]
fn an_apply_that_changes_nothing_returns_the_live_object() {
    let f = cm();
    let live = apply(
        &f,
        &f.empty_object("c", "default"),
        &configmap(json!({"a": "1"})),
        "one",
        false,
    )
    .unwrap();
    let again = f
        .apply(
            &live,
            &configmap(json!({"a": "1"})),
            "one",
            false,
            "2030-01-01T00:00:00Z",
        )
        .unwrap();
    assert_eq!(again, live, "no change, no new time");
}

#[test]
fn apply_checks_the_type_and_refuses_managed_fields() {
    let f = cm();
    let live = f.empty_object("c", "default");
    let mut wrong = configmap(json!({}));
    wrong["kind"] = json!("Secret");
    assert_eq!(
        apply(&f, &live, &wrong, "m", false)
            .unwrap_err()
            .to_string(),
        "invalid object type: /v1, Kind=Secret"
    );
    let mut with_mf = configmap(json!({}));
    with_mf["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        apply(&f, &live, &with_mf, "m", false)
            .unwrap_err()
            .to_string(),
        "metadata.managedFields must be nil"
    );
    let bad_key = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
    let f = deploy();
    let err = apply(&f, &f.empty_object("d", ""), &bad_key, "m", false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"associative list with keys has an element that omits key field "name""#),
        "{err}"
    );
}

#[test]
fn managed_fields_reset_and_client_supplied_entries() {
    let f = cm();
    let live = apply(
        &f,
        &f.empty_object("c", "default"),
        &configmap(json!({"a": "1"})),
        "one",
        false,
    )
    .unwrap();
    // A client that does not know managedFields (sends none) keeps the live entries.
    let mut plain = configmap(json!({"a": "1", "b": "2"}));
    f.update(&live, &mut plain, "writer", T1);
    assert_eq!(entries(&plain).len(), 2);
    // `[{}]` resets them: only this write's own fields remain.
    let mut reset = configmap(json!({"a": "1", "b": "3"}));
    reset["metadata"]["managedFields"] = json!([{}]);
    f.update(&plain, &mut reset, "writer", T1);
    assert_eq!(entries(&reset).len(), 1);
    assert_eq!(fields_of(&reset, "writer"), r#"{"f:data":{"f:b":{}}}"#);
}

#[test]
fn update_managers_are_capped_at_ten() {
    let f = cm();
    let mut live = configmap(json!({}));
    f.update(
        &f.empty_object("c", "default"),
        &mut live,
        "m0",
        "2026-01-01T00:00:00Z",
    );
    for i in 1..=12 {
        let mut next = live.clone();
        next["data"][format!("k{i}")] = json!("v");
        f.update(
            &live,
            &mut next,
            &format!("m{i}"),
            &format!("2026-01-01T00:00:{i:02}Z"),
        );
        live = next;
    }
    let e = entries(&live);
    assert_eq!(e.len(), 10, "{e:?}");
    let ancient = fields_of(&live, "ancient-changes");
    assert_eq!(
        ancient,
        r#"{"f:data":{".":{},"f:k1":{},"f:k2":{},"f:k3":{}}}"#
    );
}

#[test]
fn kubectl_upgrades_from_client_side_apply_without_conflicts() {
    let f = cm();
    let cfg = configmap(json!({"a": "1"}));
    // What client-side apply leaves: the annotation, owned by its update manager.
    let mut csa = cfg.clone();
    // b is the csa manager's too, but not in the annotation.
    csa["data"]["b"] = json!("2");
    csa["metadata"]["annotations"] = json!({LAST_APPLIED: serde_json::to_string(&cfg).unwrap()});
    f.update(
        &f.empty_object("c", "default"),
        &mut csa,
        "kubectl-client-side-apply",
        T0,
    );
    // Another manager would conflict...
    assert!(matches!(
        apply(&f, &csa, &configmap(json!({"a": "2"})), "other", false),
        Err(Error::Conflicts(_))
    ));
    // ...but `kubectl apply --server-side` takes over what the annotation says
    // kubectl applied (even with a new value), and the annotation follows.
    let ssa = apply(
        &f,
        &csa,
        &configmap(json!({"a": "5", "c": "3"})),
        "kubectl",
        false,
    )
    .unwrap();
    assert_eq!(
        fields_of(&ssa, "kubectl"),
        r#"{"f:data":{"f:a":{},"f:c":{}}}"#
    );
    let text = ssa["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .unwrap();
    let last: Value = serde_json::from_str(text).unwrap();
    assert_eq!(last["data"], json!({"a": "5", "c": "3"}));
    // A field outside the annotation is still a conflict.
    let err = conflict_text(apply(
        &f,
        &csa,
        &configmap(json!({"a": "1", "b": "9"})),
        "kubectl",
        false,
    ));
    assert_eq!(
        err,
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.b"#
    );
}

#[test]
fn status_subresource_writes_own_status_only() {
    let def = schema().definition_for("apps", "v1", "Deployment").unwrap();
    let f = FieldManager::new(
        schema(),
        &def,
        "apps/v1",
        "Deployment",
        Some("status"),
        true,
    )
    .unwrap();
    let live = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1}});
    let mut new = live.clone();
    new["status"] = json!({"replicas": 1});
    new["spec"]["replicas"] = json!(7);
    f.update(&live, &mut new, "controller", T0);
    let mf = &new["metadata"]["managedFields"][0];
    assert_eq!(mf["subresource"], "status");
    assert_eq!(
        fields_of(&new, "controller"),
        r#"{"f:status":{".":{},"f:replicas":{}}}"#
    );
}

#[test]
fn manager_defaults_to_the_user_agent_prefix() {
    assert_eq!(
        manager_or_user_agent(None, "kubectl/v1.32.0 (linux/amd64)"),
        "kubectl"
    );
    assert_eq!(
        manager_or_user_agent(Some("mine"), "kubectl/v1.32.0"),
        "mine"
    );
    assert_eq!(manager_or_user_agent(Some(""), "curl/8"), "curl");
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn pod_fm() -> FieldManager<'static> {
        fm("", "v1", "Pod", true)
    }

    /// Pod-shaped applied configurations: containers keyed by name (with env keyed by
    /// name and ports keyed by port and protocol), labels, a set of finalizers.
    fn config() -> impl Strategy<Value = Value> {
        // Collections are never empty: Go's omitempty drops empty ones before they are
        // stored upstream, so an empty list nobody owns never lingers there.
        let env = proptest::sample::subsequence(vec!["A", "B", "C"], 1..=3)
            .prop_shuffle()
            .prop_flat_map(|names| {
                let n = names.len();
                (Just(names), proptest::collection::vec("[0-2]", n))
            });
        let container = (
            proptest::sample::select(vec!["img:1", "img:2"]),
            proptest::option::of(env),
            proptest::option::of(proptest::sample::subsequence(vec![80, 443], 1..=2)),
        );
        (
            proptest::sample::subsequence(vec!["a", "b", "c"], 1..=3).prop_shuffle(),
            proptest::collection::vec(container, 3),
            proptest::option::of(proptest::collection::btree_map("[k-m]", "[0-2]", 1..3)),
            proptest::option::of(proptest::sample::subsequence(vec!["f1", "f2"], 1..=2)),
        )
            .prop_map(|(names, cs, labels, finalizers)| {
                let containers: Vec<Value> = names
                    .iter()
                    .zip(cs)
                    .map(|(n, (image, env, ports))| {
                        let mut c = json!({"name": n, "image": image});
                        if let Some((names, values)) = env {
                            c["env"] = names
                                .iter()
                                .zip(values)
                                .map(|(n, v)| json!({"name": n, "value": v}))
                                .collect();
                        }
                        if let Some(p) = ports {
                            c["ports"] = p.iter().map(|p| json!({"containerPort": p})).collect();
                        }
                        c
                    })
                    .collect();
                let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                    "spec": {"containers": containers}});
                if let Some(l) = labels {
                    p["metadata"]["labels"] = json!(l);
                }
                if let Some(f) = finalizers {
                    p["metadata"]["finalizers"] = json!(f);
                }
                p
            })
    }

    fn without_managed_fields(v: &Value) -> Value {
        let mut v = v.clone();
        v["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A sole applier's object depends only on its last configuration: what it
        /// stopped sending is pruned, and re-applying is a no-op.
        #[test]
        fn a_sole_applier_gets_exactly_its_last_configuration(c1 in config(), c2 in config()) {
            let f = pod_fm();
            let base = f.empty_object("p", "default");
            let first = f.apply(&base, &c1, "a", false, T0).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let second = f.apply(&first, &c2, "a", false, T1).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let direct = f.apply(&base, &c2, "a", false, T1).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(without_managed_fields(&second), without_managed_fields(&direct));
            // The entries match but for their time: an apply that changes nothing
            // keeps the entry's time, as upstream's managedFieldsUpdater.
            let untimed = |v: &Value| {
                let mut v = v["metadata"]["managedFields"].clone();
                for e in v.as_array_mut().into_iter().flatten() {
                    e.as_object_mut().unwrap().remove("time");
                }
                v
            };
            prop_assert_eq!(untimed(&second), untimed(&direct));
            let want_time = if without_managed_fields(&first) == without_managed_fields(&second) { T0 } else { T1 };
            prop_assert_eq!(&second["metadata"]["managedFields"][0]["time"], want_time);
            let again = f.apply(&second, &c2, "a", false, "2030-01-01T00:00:00Z").map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, second);
        }

        /// A forced applier's values win on every field it sends, and it then owns
        /// exactly what it sent; the other applier keeps the rest.
        #[test]
        fn a_forced_apply_wins_its_fields(c1 in config(), c2 in config()) {
            let f = pod_fm();
            let typed = Typed::new(schema());
            let root = typed.root("io.k8s.api.core.v1.Pod").unwrap();
            let base = f.empty_object("p", "default");
            let first = f.apply(&base, &c1, "a", false, T0).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let second = f.apply(&first, &c2, "b", true, T1).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Merging c2 into the result changes nothing: every value c2 sets is there.
            let remerged = typed.merge(&second, &c2, root).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&remerged, &second);
            let managers = decode(second.pointer("/metadata/managedFields")).unwrap();
            let b = managers.iter().find(|(id, _)| id.manager == "b").map(|(_, m)| m.set.clone()).unwrap_or_default();
            let want = typed.to_field_set(&c2, root).unwrap().difference(&strip_set());
            prop_assert_eq!(b.to_fields_v1(), want.to_fields_v1());
            if let Some((_, a)) = managers.iter().find(|(id, _)| id.manager == "a") {
                let changed = typed.compare(&first, &second, root).map_err(TestCaseError::fail)?;
                prop_assert!(a.set.intersection(&changed.modified).is_empty(), "a kept a field b changed");
            }
        }
    }
}

#[test]
fn an_applier_that_stops_sending_one_sibling_keeps_the_other() {
    // A custom resource's schema (inline, no $ref below the root).
    let schema_node = crate::crd::full_schema_for_tests(&json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "size": {"type": "integer"}, "color": {"type": "string"}}}}}));
    let node: &'static Value = Box::leak(Box::new(schema_node));
    let f = FieldManager::with_root(
        schema(),
        typed::TypeRef::Node(node),
        "example.com/v1",
        "Widget",
        None,
        false,
    );
    let cfg = |spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec});
    let live = f
        .apply(
            &f.empty_object("w", ""),
            &cfg(json!({"size": 3, "color": "red"})),
            "kubectl",
            false,
            T0,
        )
        .unwrap();
    let out = f
        .apply(&live, &cfg(json!({"size": 5})), "kubectl", true, T1)
        .unwrap();
    assert_eq!(out["spec"], json!({"size": 5}));
}
