//! kube-rs (the Rust client most controllers use) against a fresh kube-apiserver:
//! typed CRUD, a watcher feeding a reflector, bookmarks, and recovery from
//! 410 Gone after an apiserver restart.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config};

use e2e::ApiServer;

async fn client(s: &ApiServer) -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::read_from(s.kubeconfig()).expect("read kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(cfg).expect("kube client")
}

fn cm(name: &str, v: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "data": {"k": v},
    }))
    .expect("configmap")
}

/// Polls `f` until it holds, for up to 60 s (the reflector's backoff after a
/// restart grows to several seconds).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_crud_watch_bookmarks_and_410() {
    let mut s = ApiServer::start();
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");

    // Typed CRUD with optimistic concurrency.
    let created = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let mut stale = created.clone();
    let mut fresh = cms.get("a").await.unwrap();
    fresh.data = Some([("k".to_owned(), "2".to_owned())].into());
    cms.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    stale.data = Some([("k".to_owned(), "3".to_owned())].into());
    let err = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409, "{s:?}");
            assert_eq!(s.reason, "Conflict");
        }
        e => panic!("want a 409: {e}"),
    }
    let list = cms.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(list.items.len(), 1);

    // A bookmark arrives before a short watch's timeout.
    let rv = list.metadata.resource_version.clone().unwrap();
    let mut w = cms
        .watch(&WatchParams::default().timeout(4), &rv)
        .await
        .unwrap()
        .boxed();
    let mut saw_bookmark = false;
    while let Some(ev) = w.try_next().await.unwrap() {
        if let WatchEvent::Bookmark(b) = ev {
            assert!(!b.metadata.resource_version.is_empty());
            saw_bookmark = true;
        }
    }
    assert!(saw_bookmark, "no BOOKMARK before the watch timed out");

    // A reflector follows creates and deletes.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let errs = errors.clone();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default()))
        .default_backoff()
        .for_each(move |ev| {
            if let Err(e) = ev {
                eprintln!("reflector: {e:?}");
                errs.lock().unwrap().push(e.to_string());
            }
            futures::future::ready(())
        });
    let task = tokio::spawn(stream);
    reader.wait_until_ready().await.unwrap();
    cms.create(&PostParams::default(), &cm("b", "1"))
        .await
        .unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    eventually("reflector sees b and not a", || {
        let names: Vec<String> = reader
            .state()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        names == ["b"]
    })
    .await;

    // Writes to another resource move the store's revision past the configmaps'.
    // After a restart the new watch cache starts at that revision, so the reflector's
    // resume point is too old: it gets 410 and relists, as against upstream.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    tokio::task::block_in_place(|| s.restart());
    cms.create(&PostParams::default(), &cm("c", "1"))
        .await
        .unwrap();
    eventually("reflector recovers and sees c", || {
        let mut names: Vec<String> = reader
            .state()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        names.sort();
        names == ["b", "c"]
    })
    .await;
    let seen = errors.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|e| e.contains("410") || e.contains("too old")),
        "the reflector should have hit 410 Gone: {seen:?}"
    );
    // So is a plain watch from before the restart.
    let mut w = cms
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match w.try_next().await {
        Ok(Some(WatchEvent::Error(e))) => {
            assert_eq!(e.code, 410, "{e:?}");
            assert!(e.message.contains("too old resource version"), "{e:?}");
        }
        other => panic!("want a 410 watch error: {other:?}"),
    }

    task.abort();
}

/// The metadata-only reads (`as=PartialObjectMetadata[List]`) that kube-rs'
/// `metadata_watcher` and client-go's metadata informers (the garbage collector's)
/// use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_metadata_reads_and_watch() {
    let s = ApiServer::start();
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(&PostParams::default(), &cm("m1", "1"))
        .await
        .unwrap();
    let one = cms.get_metadata("m1").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("m1"));
    assert_eq!(one.types.as_ref().unwrap().kind, "PartialObjectMetadata");
    assert_eq!(one.types.as_ref().unwrap().api_version, "meta.k8s.io/v1");
    let list = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());

    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        // kube 5: an Api over PartialObjectMeta makes metadata-only requests.
        watcher(
            Api::<kube::core::PartialObjectMeta<ConfigMap>>::namespaced(c.clone(), "default"),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    let task = tokio::spawn(stream);
    reader.wait_until_ready().await.unwrap();
    cms.create(&PostParams::default(), &cm("m2", "1"))
        .await
        .unwrap();
    cms.delete("m1", &DeleteParams::default()).await.unwrap();
    eventually("metadata reflector sees m2 and not m1", || {
        let names: Vec<String> = reader
            .state()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        names == ["m2"]
    })
    .await;
    task.abort();

    // A list asked for as a single PartialObjectMetadata is 406, in upstream's words.
    let req = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header(
            "accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())
        .unwrap();
    match c.request_text(req).await {
        Err(kube::Error::Api(st)) => {
            assert_eq!(st.code, 406, "{st:?}");
            assert_eq!(
                st.message,
                "you requested PartialObjectMetadata, but the requested object is a list (*v1.ConfigMapList)"
            );
        }
        other => panic!("want a 406: {other:?}"),
    }
}

/// kube-rs' `Patch::Apply`: the field manager is recorded, another manager's
/// conflicting apply is a 409 whose causes name the field, `force` takes it over,
/// and a field its applier stops sending is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_server_side_apply() {
    use kube::api::{Patch, PatchParams};
    let s = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&s).await, "default");
    let cfg = |data: serde_json::Value| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    let a = PatchParams::apply("controller-a");
    let got = cms
        .patch(
            "ssa",
            &a,
            &Patch::Apply(cfg(serde_json::json!({"k": "1", "j": "2"}))),
        )
        .await
        .unwrap();
    let mf = got.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(mf.len(), 1, "{mf:?}");
    assert_eq!(mf[0].manager.as_deref(), Some("controller-a"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    assert_eq!(
        serde_json::to_string(&mf[0].fields_v1.as_ref().unwrap().0).unwrap(),
        r#"{"f:data":{"f:j":{},"f:k":{}}}"#
    );

    let b = PatchParams::apply("controller-b");
    let err = cms
        .patch("ssa", &b, &Patch::Apply(cfg(serde_json::json!({"k": "9"}))))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(st) => {
            assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"), "{st:?}");
            assert_eq!(
                st.message,
                r#"Apply failed with 1 conflict: conflict with "controller-a": .data.k"#
            );
            let causes = st.details.map(|d| d.causes).unwrap_or_default();
            assert_eq!(causes.len(), 1);
            assert_eq!(causes[0].reason, "FieldManagerConflict");
            assert_eq!(causes[0].field, ".data.k");
            assert_eq!(causes[0].message, r#"conflict with "controller-a""#);
        }
        e => panic!("want a 409: {e}"),
    }
    let forced = cms
        .patch(
            "ssa",
            &b.clone().force(),
            &Patch::Apply(cfg(serde_json::json!({"k": "9"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"], "9");
    // a no longer sends j: it goes (a owned it alone).
    let after = cms
        .patch("ssa", &a, &Patch::Apply(cfg(serde_json::json!({}))))
        .await
        .unwrap();
    assert_eq!(
        after.data.unwrap_or_default(),
        [("k".to_owned(), "9".to_owned())].into()
    );
}
