use std::sync::Arc;

use futures::StreamExt;

use super::*;
use crate::storage::memory::MemoryKv;

const K1: &str = "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/IDMyIGI="; // 32 bytes
const K2: &str = "AAECAwQFBgcICQoLDA0ODw=="; // 16 bytes

fn config(providers: &str) -> EncryptionConfig {
    EncryptionConfig::parse(&format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets, '*.apps']\n  providers:\n{providers}"
    ))
    .unwrap()
}

fn kv(inner: &Arc<MemoryKv>, c: EncryptionConfig) -> EncryptedKv {
    EncryptedKv::new(inner.clone() as Arc<dyn Kv>, c, "/registry")
}

const SECRET: &[u8] = b"/registry/secrets/default/s";
const PLAIN: &[u8] = br#"{"data":{"password":"hunter2"}}"#;

async fn raw(inner: &MemoryKv, key: &[u8]) -> Vec<u8> {
    inner.get(key).await.unwrap().0.unwrap().value
}

#[tokio::test]
async fn every_provider_round_trips_and_hides_the_plaintext() {
    for (name, key, prefix) in [
        ("aescbc", K1, "k8s:enc:aescbc:v1:key1:"),
        ("aesgcm", K2, "k8s:enc:aesgcm:v1:key1:"),
        ("secretbox", K1, "k8s:enc:secretbox:v1:key1:"),
    ] {
        let inner = Arc::new(MemoryKv::new());
        let e = kv(
            &inner,
            config(&format!(
                "  - {name}:\n      keys:\n      - {{name: key1, secret: '{key}'}}\n"
            )),
        );
        e.create(SECRET, PLAIN.to_vec()).await.unwrap();
        let stored = raw(&inner, SECRET).await;
        assert!(stored.starts_with(prefix.as_bytes()), "{name}");
        assert!(
            !stored.windows(7).any(|w| w == b"hunter2"),
            "{name}: plaintext stored"
        );
        assert_eq!(
            e.get(SECRET).await.unwrap().0.unwrap().value,
            PLAIN,
            "{name}"
        );
        let page = e
            .range(b"/registry/secrets/", b"/registry/secrets0", 0, 0)
            .await
            .unwrap();
        assert_eq!(page.kvs[0].value, PLAIN);
        // Other resources are left alone; groups match by wildcard.
        e.create(b"/registry/configmaps/default/c", PLAIN.to_vec())
            .await
            .unwrap();
        assert_eq!(raw(&inner, b"/registry/configmaps/default/c").await, PLAIN);
        e.create(b"/registry/deployments/default/d", PLAIN.to_vec())
            .await
            .unwrap();
        assert!(
            raw(&inner, b"/registry/deployments/default/d")
                .await
                .starts_with(prefix.as_bytes())
        );
    }
}

#[tokio::test]
async fn rotation_reads_old_keys_and_writes_the_first() {
    let inner = Arc::new(MemoryKv::new());
    let old = kv(
        &inner,
        config(&format!(
            "  - aescbc:\n      keys:\n      - {{name: key1, secret: '{K1}'}}\n"
        )),
    );
    let rev = old.create(SECRET, PLAIN.to_vec()).await.unwrap();
    let new = kv(
        &inner,
        config(&format!(
            "  - aesgcm:\n      keys:\n      - {{name: key2, secret: '{K2}'}}\n  - aescbc:\n      keys:\n      - {{name: key1, secret: '{K1}'}}\n"
        )),
    );
    let read = new.get(SECRET).await.unwrap().0.unwrap();
    assert_eq!(read.value, PLAIN);
    assert!(
        read.stale,
        "read with the second provider: a rewrite is due"
    );
    assert!(!old.get(SECRET).await.unwrap().0.unwrap().stale);
    new.update(SECRET, PLAIN.to_vec(), rev).await.unwrap();
    assert!(!new.get(SECRET).await.unwrap().0.unwrap().stale);
    assert!(
        raw(&inner, SECRET)
            .await
            .starts_with(b"k8s:enc:aesgcm:v1:key2:")
    );
    // Without the key that wrote it, the value is an error, not ciphertext.
    let err = old.get(SECRET).await.unwrap_err();
    assert!(
        err.to_string().contains("no matching prefix found"),
        "{err}"
    );
}

#[tokio::test]
async fn identity_first_reads_both_and_gcm_binds_the_key() {
    let inner = Arc::new(MemoryKv::new());
    let enc = kv(
        &inner,
        config(&format!(
            "  - aesgcm:\n      keys:\n      - {{name: k, secret: '{K2}'}}\n"
        )),
    );
    enc.create(SECRET, PLAIN.to_vec()).await.unwrap();
    inner
        .create(b"/registry/secrets/default/plain", PLAIN.to_vec())
        .await
        .unwrap();
    let id = kv(
        &inner,
        config(&format!(
            "  - identity: {{}}\n  - aesgcm:\n      keys:\n      - {{name: k, secret: '{K2}'}}\n"
        )),
    );
    assert_eq!(id.get(SECRET).await.unwrap().0.unwrap().value, PLAIN);
    assert_eq!(
        id.get(b"/registry/secrets/default/plain")
            .await
            .unwrap()
            .0
            .unwrap()
            .value,
        PLAIN
    );
    // A ciphertext copied under another key fails authentication.
    let stolen = raw(&inner, SECRET).await;
    inner
        .create(b"/registry/secrets/default/copy", stolen)
        .await
        .unwrap();
    let err = enc
        .get(b"/registry/secrets/default/copy")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("message authentication failed"),
        "{err}"
    );
}

#[tokio::test]
async fn watches_see_plaintext() {
    let inner = Arc::new(MemoryKv::new());
    let e = kv(
        &inner,
        config(&format!(
            "  - secretbox:\n      keys:\n      - {{name: k, secret: '{K1}'}}\n"
        )),
    );
    let rev = inner.current_revision().await.unwrap();
    let mut w = e
        .watch(b"/registry/secrets/", b"/registry/secrets0", rev + 1)
        .await
        .unwrap();
    e.create(SECRET, PLAIN.to_vec()).await.unwrap();
    match w.events.next().await.unwrap().unwrap() {
        WatchEvent::Put { kv, .. } => assert_eq!(kv.value, PLAIN),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn custom_resources_are_named_by_plural_and_group() {
    let c = EncryptionConfig::parse(&format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [widgets.example.com, '*.stable.example.org']\n  providers:\n  - aescbc:\n      keys:\n      - {{name: key1, secret: '{K1}'}}\n"
    ))
    .unwrap();
    let inner = Arc::new(MemoryKv::new());
    let e = kv(&inner, c);
    for (key, sealed) in [
        (&b"/registry/example.com/widgets/default/w"[..], true),
        (b"/registry/stable.example.org/crontabs/default/c", true),
        (b"/registry/example.com/gadgets/default/g", false),
        (b"/registry/secrets/default/s", false),
    ] {
        e.create(key, PLAIN.to_vec()).await.unwrap();
        assert_eq!(
            raw(&inner, key)
                .await
                .starts_with(b"k8s:enc:aescbc:v1:key1:"),
            sealed,
            "{}",
            String::from_utf8_lossy(key)
        );
        assert_eq!(e.get(key).await.unwrap().0.unwrap().value, PLAIN);
    }
}

#[test]
fn bad_configurations_are_refused_in_upstreams_words() {
    let err = |p: &str| {
        EncryptionConfig::parse(&format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{p}"
    ))
    .err()
    .unwrap()
    .to_string()
    };
    assert_eq!(
        err("  - aescbc:\n      keys:\n      - {name: k, secret: 'YWJj'}\n"),
        "error while parsing file: resources[0].providers[0].aescbc.keys[0].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 3, expected one of [16 24 32]"
    );
    assert!(
        err("  - aescbc:\n      keys: []\n")
            .contains("keys (list of at least one key) is required")
    );
    assert!(
        err(&format!(
            "  - secretbox:\n      keys:\n      - {{name: k, secret: '{K2}'}}\n"
        ))
        .contains("expected one of [32]")
    );
    assert!(err("  - kms: {name: x}\n").contains("KMS"));
    assert!(EncryptionConfig::parse("kind: Nope\n").is_err());
}
