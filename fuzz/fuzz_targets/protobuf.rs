//! Kubernetes protobuf request bodies (`k8s\0` + runtime.Unknown): decoding arbitrary
//! bytes may fail but never panic, overflow the stack or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

use apiserver::schema::schema;

fuzz_target!(|data: &[u8]| {
    let mut body = b"k8s\0".to_vec();
    body.extend_from_slice(data);
    let _ = apiserver::protobuf::envelope(&body);
    let _ = apiserver::protobuf::decode_body(&body, &|g, v, k| schema().definition_for(g, v, k));
});
