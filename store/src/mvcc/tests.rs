use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use proto::etcdserverpb::RangeRequest;
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};

use super::*;
use crate::engine::{Durability, EngineKind};

fn store() -> (tempfile::TempDir, MvccStore) {
    let dir = tempfile::tempdir().unwrap();
    let e: Arc<dyn KvEngine> =
        Arc::from(crate::engine::open(EngineKind::Redb, dir.path()).unwrap());
    (dir, MvccStore::open(e).unwrap())
}

fn put(s: &MvccStore, k: &str, v: &str) -> i64 {
    let mut w = s.write();
    w.begin_txn();
    w.put(k.as_bytes(), v.as_bytes().to_vec(), 0).unwrap();
    let rev = w.end_txn();
    w.commit(Durability::Buffered).unwrap();
    rev
}

fn del(s: &MvccStore, k: &str, end: &str) -> usize {
    let mut w = s.write();
    w.begin_txn();
    let n = w
        .delete_range(&KeyRange::from_etcd(k.as_bytes(), end.as_bytes()), false)
        .unwrap()
        .len();
    w.end_txn();
    w.commit(Durability::Buffered).unwrap();
    n
}

fn get(s: &MvccStore, k: &str, end: &str, rev: i64) -> Result<Vec<(String, String)>> {
    let r = s.range(&RangeRequest {
        key: k.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        revision: rev,
        ..Default::default()
    })?;
    Ok(r.kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key).unwrap(),
                String::from_utf8(kv.value).unwrap(),
            )
        })
        .collect())
}

#[test]
fn revisions_versions_and_history() {
    let (_d, s) = store();
    assert_eq!(
        s.current_rev(),
        1,
        "a fresh store is at revision 1, as etcd"
    );
    assert_eq!(put(&s, "a", "1"), 2);
    assert_eq!(put(&s, "a", "2"), 3);
    let r = s
        .range(&RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .unwrap();
    let kv = &r.kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(get(&s, "a", "", 2).unwrap(), vec![("a".into(), "1".into())]);
    assert_eq!(del(&s, "a", ""), 1);
    assert_eq!(s.current_rev(), 4);
    assert!(get(&s, "a", "", 0).unwrap().is_empty());
    assert_eq!(del(&s, "a", ""), 0, "deleting nothing");
    assert_eq!(
        s.current_rev(),
        4,
        "a no-op delete does not bump the revision"
    );
    put(&s, "a", "3");
    let kv = &s
        .range(&RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .unwrap()
        .kvs[0];
    assert_eq!((kv.create_revision, kv.version), (5, 1), "a new generation");
    assert!(matches!(get(&s, "a", "", 99), Err(Error::FutureRev)));
}

#[test]
fn compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e: Arc<dyn KvEngine> =
            Arc::from(crate::engine::open(EngineKind::Redb, dir.path()).unwrap());
        let s = MvccStore::open(e).unwrap();
        for i in 0..5 {
            put(&s, "k", &i.to_string());
        }
        put(&s, "gone", "x");
        del(&s, "gone", "");
        let mut w = s.write();
        w.compact(5).unwrap();
        let c = w.commit(Durability::Sync).unwrap();
        let (rev, keep) = c.compaction.unwrap();
        s.finish_compaction(rev, &keep).unwrap();
        assert!(matches!(get(&s, "k", "", 4), Err(Error::Compacted)));
        assert_eq!(get(&s, "k", "", 5).unwrap(), vec![("k".into(), "3".into())]);
        let mut w = s.write();
        assert!(matches!(w.compact(5), Err(Error::Compacted)));
        assert!(matches!(w.compact(50), Err(Error::FutureRev)));
        w.commit(Durability::Sync).unwrap();
    }
    let e: Arc<dyn KvEngine> =
        Arc::from(crate::engine::open(EngineKind::Redb, dir.path()).unwrap());
    let s = MvccStore::open(e).unwrap();
    assert_eq!(s.revs(), (8, 5));
    assert_eq!(get(&s, "k", "", 0).unwrap(), vec![("k".into(), "4".into())]);
    assert!(get(&s, "gone", "", 0).unwrap().is_empty());
}

#[test]
fn sort_limit_and_filters_follow_etcd() {
    let (_d, s) = store();
    put(&s, "b", "1"); // rev 2
    put(&s, "a", "3"); // rev 3
    put(&s, "c", "2"); // rev 4
    put(&s, "b", "9"); // rev 5
    let q = |f: &dyn Fn(&mut RangeRequest)| {
        let mut r = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"\0".to_vec(),
            ..Default::default()
        };
        f(&mut r);
        let resp = s.range(&r).unwrap();
        (
            resp.kvs
                .iter()
                .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
                .collect::<Vec<_>>(),
            resp.count,
            resp.more,
        )
    };
    assert_eq!(
        q(&|_| {}),
        (vec!["a".into(), "b".into(), "c".into()], 3, false)
    );
    assert_eq!(q(&|r| r.limit = 2), (vec!["a".into(), "b".into()], 3, true));
    assert_eq!(
        q(&|r| {
            r.sort_order = SortOrder::Descend as i32;
            r.limit = 1
        }),
        (vec!["c".into()], 3, true)
    );
    assert_eq!(
        q(&|r| r.sort_target = SortTarget::Mod as i32),
        (vec!["a".into(), "c".into(), "b".into()], 3, false),
        "a non-key target with no order sorts ascending"
    );
    assert_eq!(
        q(&|r| r.sort_target = SortTarget::Value as i32).0,
        vec!["c", "a", "b"]
    );
    assert_eq!(q(&|r| r.min_mod_revision = 4).0, vec!["b", "c"]);
    assert_eq!(q(&|r| r.max_create_revision = 3).0, vec!["a", "b"]);
    assert_eq!(
        q(&|r| {
            r.min_create_revision = 3;
            r.limit = 1
        }),
        (vec!["a".into()], 3, true),
        "count is before filtering, as etcd"
    );
    let r = s
        .range(&RangeRequest {
            key: b"a".to_vec(),
            range_end: b"\0".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((r.count, r.kvs.len()), (3, 0));
    let r = s
        .range(&RangeRequest {
            key: b"b".to_vec(),
            keys_only: true,
            ..Default::default()
        })
        .unwrap();
    assert!(r.kvs[0].value.is_empty());
    assert!(
        get(&s, "c", "a", 0).unwrap().is_empty(),
        "an inverted range matches nothing"
    );
}

#[test]
fn txn_sees_its_own_writes_and_is_one_revision() {
    let (_d, s) = store();
    let mut w = s.write();
    w.begin_txn();
    w.put(b"x", b"1".to_vec(), 0).unwrap();
    w.put(b"y", b"2".to_vec(), 0).unwrap();
    let seen = w
        .range(&RangeRequest {
            key: b"x".to_vec(),
            range_end: b"z".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(seen.kvs.len(), 2);
    assert_eq!(w.end_txn(), 2);
    let c = w.commit(Durability::Buffered).unwrap();
    assert_eq!(c.changes.len(), 2);
    assert!(c.changes.iter().all(|(r, _)| *r == 2));
    let ev = s.events_between(2, 2, &|_| true).unwrap();
    assert_eq!(ev.len(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Del(u8, u8),
    Compact(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..6, 0u8..7).prop_map(|(k, e)| Op::Del(k, e)),
        1 => any::<u8>().prop_map(Op::Compact),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Every read at every uncompacted revision matches a naive model that keeps the
    /// whole history, before and after a restart.
    #[test]
    fn matches_a_naive_history(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let e: Arc<dyn KvEngine> = Arc::from(crate::engine::open(EngineKind::Redb, dir.path()).unwrap());
            MvccStore::open(e).unwrap()
        };
        let s = open();
        // history[rev] = the whole map after that revision.
        let mut history: Vec<BTreeMap<u8, u8>> = vec![BTreeMap::new(), BTreeMap::new()];
        let mut compacted = 0i64;
        for op in &ops {
            let mut cur = history.last().unwrap().clone();
            match *op {
                Op::Put(k, v) => {
                    put(&s, &format!("k{k}"), &v.to_string());
                    cur.insert(k, v);
                    history.push(cur);
                }
                Op::Del(k, e) => {
                    let (lo, hi) = if e > k { (k, e) } else { (k, k + 1) };
                    let n = del(&s, &format!("k{lo}"), &format!("k{hi}"));
                    let doomed: Vec<u8> = cur.range(lo..hi).map(|(k, _)| *k).collect();
                    prop_assert_eq!(n, doomed.len());
                    if !doomed.is_empty() {
                        for k in doomed { cur.remove(&k); }
                        history.push(cur);
                    }
                }
                Op::Compact(r) => {
                    let cur_rev = (history.len() - 1) as i64;
                    let rev = i64::from(r) % (cur_rev + 1);
                    let mut w = s.write();
                    let res = w.compact(rev);
                    let c = w.commit(Durability::Buffered).unwrap();
                    if rev <= compacted { prop_assert!(res.is_err()); } else {
                        prop_assert!(res.is_ok());
                        compacted = rev;
                        let (rv, keep) = c.compaction.unwrap();
                        s.finish_compaction(rv, &keep).unwrap();
                    }
                }
            }
        }
        let check = |s: &MvccStore| -> std::result::Result<(), TestCaseError> {
            prop_assert_eq!(s.current_rev(), (history.len() - 1) as i64);
            for rev in 1..history.len() as i64 {
                let got = get(s, "k", "l", rev);
                if rev < compacted {
                    prop_assert!(matches!(got, Err(Error::Compacted)));
                    continue;
                }
                let want: Vec<(String, String)> = history[rev as usize]
                    .iter().map(|(k, v)| (format!("k{k}"), v.to_string())).collect();
                prop_assert_eq!(got.unwrap(), want, "at revision {}", rev);
            }
            Ok(())
        };
        check(&s)?;
        drop(s);
        check(&open())?;
    }
}
