//! The snapshot format: the state-machine tables as one byte stream.
//!
//! Used for Raft snapshots sent to lagging or new members, for the Maintenance
//! `Snapshot` RPC (`etcdctl snapshot save`), and by `keelson-store snapshot restore`.
//!
//! Layout: the 16-byte magic, then records `table:u8, key_len:u32be, key, val_len:u32be,
//! val`, then a `0` table byte, zero padding to a multiple of 512 bytes, then the
//! SHA-256 of everything before it. etcd appends a SHA-256 to its snapshots the same way
//! and etcdctl 3.4 checks that a saved file is `512*n + 32` bytes long.

use sha2::{Digest, Sha256};

use crate::engine::{self, Durability, KvEngine, Table, WriteBatch};

/// The format's magic bytes.
pub const MAGIC: &[u8; 16] = b"KEELSON-SNAP-V1\n";

/// Snapshot errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a snapshot of ours.
    #[error("not a keelson-store snapshot (bad magic)")]
    BadMagic,
    /// The checksum does not match: the file is truncated or corrupt.
    #[error("snapshot checksum mismatch: the file is truncated or corrupt")]
    Checksum,
    /// A record runs past the end.
    #[error("snapshot record at byte {0} is truncated")]
    Truncated(usize),
    /// An unknown table tag.
    #[error("snapshot names unknown table {0}")]
    UnknownTable(u8),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] engine::Error),
}

/// Serialises `tables` of `engine`. The caller holds whatever lock keeps them consistent.
pub fn export(engine: &dyn KvEngine, tables: &[Table]) -> Result<Vec<u8>, Error> {
    let mut out = MAGIC.to_vec();
    for &t in tables {
        engine.scan(t, b"", None, &mut |k, v| {
            out.push(t as u8);
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
            true
        })?;
    }
    out.push(0);
    let pad = (512 - out.len() % 512) % 512;
    out.resize(out.len() + pad, 0);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// One record: table, key, value.
pub type Record = (Table, Vec<u8>, Vec<u8>);

/// Checks the checksum and decodes every record.
pub fn parse(data: &[u8]) -> Result<Vec<Record>, Error> {
    if data.len() < MAGIC.len() + 32 || &data[..MAGIC.len()] != MAGIC {
        return Err(Error::BadMagic);
    }
    let (body, sum) = data.split_at(data.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(Error::Checksum);
    }
    let mut out = Vec::new();
    let mut i = MAGIC.len();
    let take = |i: &mut usize, n: usize| -> Result<&[u8], Error> {
        let s = body.get(*i..*i + n).ok_or(Error::Truncated(*i))?;
        *i += n;
        Ok(s)
    };
    loop {
        let tag = take(&mut i, 1)?[0];
        if tag == 0 {
            break;
        }
        let table = Table::from_u8(tag).ok_or(Error::UnknownTable(tag))?;
        let kl = u32::from_be_bytes(
            take(&mut i, 4)?
                .try_into()
                .map_err(|_| Error::Truncated(i))?,
        ) as usize;
        let k = take(&mut i, kl)?.to_vec();
        let vl = u32::from_be_bytes(
            take(&mut i, 4)?
                .try_into()
                .map_err(|_| Error::Truncated(i))?,
        ) as usize;
        let v = take(&mut i, vl)?.to_vec();
        out.push((table, k, v));
    }
    Ok(out)
}

/// A batch that replaces `tables` with the snapshot's contents.
pub fn restore_batch(data: &[u8], tables: &[Table]) -> Result<WriteBatch, Error> {
    let records = parse(data)?;
    let mut batch = WriteBatch::new();
    for &t in tables {
        batch.delete_range(t, Vec::new(), vec![0xff; 64]);
    }
    for (t, k, v) in records {
        if tables.contains(&t) {
            batch.put(t, k, v);
        }
    }
    Ok(batch)
}

/// Replaces `tables` of `engine` with the snapshot's contents, durably.
pub fn restore(engine: &dyn KvEngine, data: &[u8], tables: &[Table]) -> Result<(), Error> {
    let batch = restore_batch(data, tables)?;
    engine.write(&batch, Durability::Sync)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineKind;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine::open(EngineKind::Redb, dir.path()).unwrap();
        let mut b = WriteBatch::new();
        b.put(Table::Kv, b"k".to_vec(), b"v".to_vec());
        b.put(Table::Lease, b"l".to_vec(), vec![0; 300]);
        b.put(Table::RaftLog, b"r".to_vec(), b"not exported".to_vec());
        e.write(&b, Durability::Sync).unwrap();
        let snap = export(&*e, &Table::STATE_MACHINE).unwrap();
        assert_eq!(snap.len() % 512, 32, "etcdctl's size check");
        assert_eq!(parse(&snap).unwrap().len(), 2);
        let mut bad = snap.clone();
        bad[20] ^= 1;
        assert!(matches!(parse(&bad), Err(Error::Checksum)));
        assert!(matches!(parse(b"nonsense"), Err(Error::BadMagic)));

        let dir2 = tempfile::tempdir().unwrap();
        let e2 = engine::open(EngineKind::Sled, dir2.path()).unwrap();
        let mut b = WriteBatch::new();
        b.put(Table::Kv, b"stale".to_vec(), b"x".to_vec());
        e2.write(&b, Durability::Sync).unwrap();
        restore(&*e2, &snap, &Table::STATE_MACHINE).unwrap();
        assert_eq!(e2.get(Table::Kv, b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            e2.get(Table::Kv, b"stale").unwrap(),
            None,
            "restore replaces"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Arbitrary bytes never panic the parser, with or without our magic in front.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = parse(&data);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&data);
            let _ = parse(&with_magic);
        }

        /// Any single-byte change to a valid snapshot is rejected.
        #[test]
        fn any_corruption_is_caught(pos in 0usize..4096, flip in 1u8..=255) {
            let dir = tempfile::tempdir().unwrap();
            let e = engine::open(EngineKind::Redb, dir.path()).unwrap();
            let mut b = WriteBatch::new();
            for i in 0..20u32 {
                b.put(Table::Kv, i.to_be_bytes().to_vec(), vec![i as u8; 50]);
            }
            e.write(&b, Durability::Sync).unwrap();
            let mut snap = export(&*e, &Table::STATE_MACHINE).unwrap();
            let pos = pos % snap.len();
            snap[pos] ^= flip;
            proptest::prop_assert!(parse(&snap).is_err());
        }
    }
}
