//! One conformance suite for every [`KvEngine`]: each test runs against each engine.

use super::*;

fn engines() -> Vec<(tempfile::TempDir, Box<dyn KvEngine>)> {
    [EngineKind::Redb, EngineKind::Sled]
        .into_iter()
        .map(|k| {
            let dir = tempfile::tempdir().expect("tempdir");
            let e = open(k, dir.path()).expect("open");
            (dir, e)
        })
        .collect()
}

fn collect(
    e: &dyn KvEngine,
    t: Table,
    start: &[u8],
    end: Option<&[u8]>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    e.scan(t, start, end, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        true
    })
    .expect("scan");
    out
}

#[test]
fn put_get_delete() {
    for (_d, e) in engines() {
        let mut b = WriteBatch::new();
        b.put(Table::Kv, b"a".to_vec(), b"1".to_vec());
        b.put(Table::Meta, b"a".to_vec(), b"meta".to_vec());
        e.write(&b, Durability::Sync).unwrap();
        assert_eq!(
            e.get(Table::Kv, b"a").unwrap(),
            Some(b"1".to_vec()),
            "{}",
            e.name()
        );
        assert_eq!(
            e.get(Table::Meta, b"a").unwrap(),
            Some(b"meta".to_vec()),
            "{}",
            e.name()
        );
        assert_eq!(
            e.get(Table::Lease, b"a").unwrap(),
            None,
            "tables are separate: {}",
            e.name()
        );
        let mut b = WriteBatch::new();
        b.delete(Table::Kv, b"a".to_vec());
        e.write(&b, Durability::Buffered).unwrap();
        assert_eq!(e.get(Table::Kv, b"a").unwrap(), None, "{}", e.name());
    }
}

#[test]
fn scan_is_ordered_and_bounded() {
    for (_d, e) in engines() {
        let mut b = WriteBatch::new();
        for k in [b"c".as_slice(), b"a", b"b", b"d", b"\xff"] {
            b.put(Table::Kv, k.to_vec(), k.to_vec());
        }
        e.write(&b, Durability::Sync).unwrap();
        let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(collect(&*e, Table::Kv, b"b", Some(b"d"))),
            vec![b"b".to_vec(), b"c".to_vec()],
            "{}",
            e.name()
        );
        assert_eq!(
            keys(collect(&*e, Table::Kv, b"c", None)).len(),
            3,
            "{}",
            e.name()
        );
        assert!(
            collect(&*e, Table::Kv, b"d", Some(b"a")).is_empty(),
            "inverted: {}",
            e.name()
        );
        let mut n = 0;
        e.scan(Table::Kv, b"", None, &mut |_, _| {
            n += 1;
            n < 2
        })
        .unwrap();
        assert_eq!(n, 2, "visitor stops the scan: {}", e.name());
    }
}

#[test]
fn delete_range_is_half_open() {
    for (_d, e) in engines() {
        let mut b = WriteBatch::new();
        for k in [b"a".as_slice(), b"b", b"c", b"d"] {
            b.put(Table::RaftLog, k.to_vec(), b"x".to_vec());
        }
        e.write(&b, Durability::Sync).unwrap();
        let mut b = WriteBatch::new();
        b.delete_range(Table::RaftLog, b"b".to_vec(), b"d".to_vec());
        e.write(&b, Durability::Sync).unwrap();
        let left: Vec<_> = collect(&*e, Table::RaftLog, b"", None)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(left, vec![b"a".to_vec(), b"d".to_vec()], "{}", e.name());
    }
}

#[test]
fn batch_applies_in_order() {
    for (_d, e) in engines() {
        let mut b = WriteBatch::new();
        b.put(Table::Kv, b"k".to_vec(), b"1".to_vec());
        b.delete(Table::Kv, b"k".to_vec());
        b.put(Table::Kv, b"k".to_vec(), b"2".to_vec());
        e.write(&b, Durability::Sync).unwrap();
        assert_eq!(
            e.get(Table::Kv, b"k").unwrap(),
            Some(b"2".to_vec()),
            "{}",
            e.name()
        );
    }
}

#[test]
fn reopen_keeps_synced_and_earlier_buffered_writes() {
    for kind in [EngineKind::Redb, EngineKind::Sled] {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = open(kind, dir.path()).unwrap();
            let mut b = WriteBatch::new();
            b.put(Table::Kv, b"buffered".to_vec(), b"1".to_vec());
            e.write(&b, Durability::Buffered).unwrap();
            let mut b = WriteBatch::new();
            b.put(Table::Kv, b"synced".to_vec(), b"2".to_vec());
            e.write(&b, Durability::Sync).unwrap();
        }
        assert_eq!(detect(dir.path()), Some(kind));
        let e = open(kind, dir.path()).unwrap();
        assert_eq!(
            e.get(Table::Kv, b"buffered").unwrap(),
            Some(b"1".to_vec()),
            "{kind:?}"
        );
        assert_eq!(
            e.get(Table::Kv, b"synced").unwrap(),
            Some(b"2".to_vec()),
            "{kind:?}"
        );
    }
}

#[test]
fn compact_keeps_data_and_sizes_are_reported() {
    for (_d, e) in engines() {
        let mut b = WriteBatch::new();
        for i in 0..2000u32 {
            b.put(Table::Kv, i.to_be_bytes().to_vec(), vec![7u8; 256]);
        }
        e.write(&b, Durability::Sync).unwrap();
        let mut b = WriteBatch::new();
        b.delete_range(
            Table::Kv,
            0u32.to_be_bytes().to_vec(),
            1990u32.to_be_bytes().to_vec(),
        );
        e.write(&b, Durability::Sync).unwrap();
        e.compact().unwrap();
        assert_eq!(collect(&*e, Table::Kv, b"", None).len(), 10, "{}", e.name());
        assert!(e.size_on_disk().unwrap() > 0, "{}", e.name());
        assert!(e.size_in_use().unwrap() > 0, "{}", e.name());
    }
}
