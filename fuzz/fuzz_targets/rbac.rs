//! The RBAC rule matcher and the escalation check: an arbitrary PolicyRule, a newline,
//! arbitrary request attributes. Matching, breakdown and covering never panic; every
//! rule covers itself; a rule that allows the request still allows it after being
//! broken down into the rules it covers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

use apiserver::authz::Attributes;
use apiserver::rbac::{compact, covers, rule_allows, uncovered};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rule, attrs) = text.split_once('\n').unwrap_or((text, "{}"));
    let (Ok(rule), Ok(a)) = (
        serde_json::from_str::<Value>(rule),
        serde_json::from_str::<Value>(attrs),
    ) else {
        return;
    };
    let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let attrs = Attributes {
        verb: s("verb"),
        resource_request: a.get("path").is_none(),
        group: s("group"),
        version: s("version"),
        resource: s("resource"),
        subresource: s("subresource"),
        namespace: s("namespace"),
        name: s("name"),
        path: s("path"),
    };
    let allowed = rule_allows(&rule, &attrs);
    let _ = compact(&rule);
    assert!(covers(&[rule.clone()], &[rule.clone()]), "a rule must cover itself: {rule}");
    let missing = uncovered(&[json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})], &[rule.clone()]);
    let _ = missing;
    let named_rule = rule
        .get("resourceNames")
        .and_then(Value::as_array)
        .is_some_and(|n| !n.is_empty());
    if allowed
        && attrs.resource_request
        && !attrs.verb.is_empty()
        && !attrs.resource.is_empty()
        && (!attrs.name.is_empty() || !named_rule)
    {
        // The same request, as a single rule, is covered by the allowing rule.
        let mut want = json!({"apiGroups": [attrs.group], "verbs": [attrs.verb]});
        want["resources"] = if attrs.subresource.is_empty() {
            json!([attrs.resource])
        } else {
            json!([format!("{}/{}", attrs.resource, attrs.subresource)])
        };
        if !attrs.name.is_empty() {
            want["resourceNames"] = json!([attrs.name]);
        }
        assert!(covers(&[rule.clone()], &[want.clone()]), "{rule} allows {attrs:?} but does not cover {want}");
    }
});
