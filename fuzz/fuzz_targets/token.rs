//! Bearer tokens: arbitrary bytes as a token (JWS splitting, the service account
//! authenticator, the static token file's CSV), and arbitrary claims signed with a
//! real key and verified (claim handling past the signature). Nothing may panic, and
//! a token signed by the key verifies only as the account its claims name.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

use apiserver::authn::{TokenAuthenticator, TokenFile, bearer_token};
use apiserver::serviceaccount::{Authenticator, Key, Lookup, Signer, jwt};

struct One;
impl Lookup for One {
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        (kind == "ServiceAccount" && namespace == "dev" && name == "sa")
            .then(|| Arc::new(json!({"metadata": {"name": "sa", "namespace": "dev", "uid": "u1"}})))
    }
}

const ISS: &str = "https://kubernetes.default.svc.cluster.local";

fn key() -> &'static Key {
    static K: OnceLock<Key> = OnceLock::new();
    K.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("keelson-fuzz-{}.key", std::process::id()));
        std::fs::write(&path, jwt::generate_pem().expect("key")).expect("write key");
        Key::load_private(&path).expect("load key")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let authn = Authenticator::new(
        vec![key().verifying_key()],
        vec![ISS.into()],
        vec![ISS.into()],
        Box::new(One),
    );
    match mode % 3 {
        0 => {
            let _ = jwt::split(text);
            let _ = authn.authenticate_token(text);
            if let Ok(v) = http::HeaderValue::from_str(text) {
                let mut h = http::HeaderMap::new();
                h.insert(http::header::AUTHORIZATION, v.clone());
                let _ = bearer_token(&h);
                let mut h = http::HeaderMap::new();
                h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
                let _ = bearer_token(&h);
            }
        }
        1 => {
            let Ok(claims) = serde_json::from_str::<Value>(text) else {
                return;
            };
            let token = key().sign(&claims);
            if let Ok(Some(u)) = authn.verify(&token, &[]) {
                assert_eq!(u.name, "system:serviceaccount:dev:sa");
                assert_eq!(u.uid, "u1");
            }
            let _ = Signer::new(key().clone(), ISS);
        }
        _ => {
            if let Ok(f) = TokenFile::parse(text, "fuzz.csv") {
                for line in text.lines() {
                    let _ = f.authenticate(line.split(',').next().unwrap_or(""));
                }
            }
        }
    }
});
