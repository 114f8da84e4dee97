//! JSON patch, merge patch and strategic merge patch on arbitrary documents: the
//! first line of the input is the target object, the rest the patch. None may panic,
//! and a successful JSON patch or strategic merge patch must leave an object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use apiserver::catalog::catalog;
use apiserver::schema::schema;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((doc, patch)) = text.split_once('\n') else {
        return;
    };
    let (Ok(doc), Ok(patch)) = (
        serde_json::from_str::<Value>(doc),
        serde_json::from_str::<Value>(patch),
    ) else {
        return;
    };
    let mut merged = doc.clone();
    apiserver::patch::merge(&mut merged, &patch);
    let mut jp = doc.clone();
    let _ = apiserver::patch::json_patch(&mut jp, &patch);
    for (group, plural) in [("", "pods"), ("apps", "deployments"), ("", "configmaps")] {
        let res = catalog()
            .get(group, "v1", plural)
            .expect("built-in resource");
        let mut target = doc.clone();
        if apiserver::patch::strategic(schema(), res, &mut target, &patch).is_ok()
            && doc.is_object()
        {
            assert!(
                target.is_object(),
                "strategic merge patch of an object gave {target}"
            );
        }
    }
});
