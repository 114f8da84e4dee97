//! Server-side apply and update tracking on arbitrary objects: the first line is the
//! live Deployment, the rest the applied configuration. Neither may panic; an apply
//! that succeeds leaves an object whose managedFields parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

use apiserver::fieldmanager::{FieldManager, decode};
use apiserver::schema::schema;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((live, applied)) = text.split_once('\n') else {
        return;
    };
    let (Ok(mut live), Ok(mut applied)) = (
        serde_json::from_str::<Value>(live),
        serde_json::from_str::<Value>(applied),
    ) else {
        return;
    };
    // The apiserver validates field types before field management; do the same.
    let raw = serde_json::to_vec(&applied).unwrap_or_default();
    let mode = apiserver::schema::FieldValidation::Ignore;
    if schema()
        .validate_fields("apps", "v1", "Deployment", &mut applied, mode, &raw)
        .is_err()
    {
        return;
    }
    let raw = serde_json::to_vec(&live).unwrap_or_default();
    if schema()
        .validate_fields("apps", "v1", "Deployment", &mut live, mode, &raw)
        .is_err()
    {
        return;
    }
    for obj in [&mut live, &mut applied] {
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), json!("apps/v1"));
            m.insert("kind".into(), json!("Deployment"));
        }
    }
    let def = schema()
        .definition_for("apps", "v1", "Deployment")
        .expect("definition");
    let fm =
        FieldManager::new(schema(), &def, "apps/v1", "Deployment", None, true).expect("manager");
    let now = "2026-01-01T00:00:00Z";
    if let Ok(out) = fm.apply(&live, &applied, "fuzz", false, now) {
        decode(out.pointer("/metadata/managedFields")).expect("managedFields parse back");
    }
    let _ = fm.apply(&live, &applied, "fuzz", true, now);
    let mut new = applied.clone();
    fm.update(&live, &mut new, "fuzz-update", now);
});
