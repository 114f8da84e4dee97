//! The redb engine: one redb table per [`Table`], one write transaction per batch.
//!
//! `Durability::Sync` maps to redb's `Immediate` (fsync on commit), `Buffered` to
//! redb's `None`, which redb makes durable with the next `Immediate` commit. That is
//! exactly the ordering [`KvEngine`] promises.

use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, TableDefinition};

use super::{Durability, Error, KvEngine, Op, Result, Table, Visitor, WriteBatch};

type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

fn def(table: Table) -> Def {
    TableDefinition::new(table.name())
}

/// A redb database file.
pub(crate) struct RedbEngine {
    // `compact` needs `&mut Database`; everything else takes the read side.
    db: RwLock<Database>,
    path: PathBuf,
}

impl RedbEngine {
    /// Opens or creates the database at `path`, creating every table.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let db = Database::builder()
            // redb's default cache is 1 GiB; the index lives in our memory anyway.
            .set_cache_size(64 << 20)
            .create(path)
            .map_err(|e| Error::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let txn = db.begin_write().map_err(|e| Error::io("begin write", e))?;
        for t in Table::ALL {
            txn.open_table(def(t))
                .map_err(|e| Error::io("create table", e))?;
        }
        txn.commit().map_err(|e| Error::io("commit", e))?;
        Ok(Self {
            db: RwLock::new(db),
            path: path.to_owned(),
        })
    }
}

impl KvEngine for RedbEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db.read();
        let txn = db.begin_read().map_err(|e| Error::io("begin read", e))?;
        let t = txn
            .open_table(def(table))
            .map_err(|e| Error::io("open table", e))?;
        let v = t.get(key).map_err(|e| Error::io("get", e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        let db = self.db.read();
        let txn = db.begin_read().map_err(|e| Error::io("begin read", e))?;
        let t = txn
            .open_table(def(table))
            .map_err(|e| Error::io("open table", e))?;
        let iter = match end {
            Some(end) if end <= start => return Ok(()),
            Some(end) => t.range::<&[u8]>(start..end),
            None => t.range::<&[u8]>(start..),
        }
        .map_err(|e| Error::io("range", e))?;
        for item in iter {
            let (k, v) = item.map_err(|e| Error::io("range", e))?;
            if !visit(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<()> {
        let db = self.db.read();
        let mut txn = db.begin_write().map_err(|e| Error::io("begin write", e))?;
        txn.set_durability(match durability {
            Durability::Sync => redb::Durability::Immediate,
            Durability::Buffered => redb::Durability::None,
        })
        .map_err(|e| Error::io("set durability", e))?;
        {
            let mut tables: Vec<Option<redb::Table<'_, &[u8], &[u8]>>> =
                (0..=Table::ALL.len()).map(|_| None).collect();
            for op in batch.ops() {
                let table = match op {
                    Op::Put(t, ..) | Op::Delete(t, _) | Op::DeleteRange(t, ..) => *t,
                };
                let slot = &mut tables[table as usize];
                if slot.is_none() {
                    *slot = Some(
                        txn.open_table(def(table))
                            .map_err(|e| Error::io("open table", e))?,
                    );
                }
                let Some(t) = slot.as_mut() else {
                    continue;
                };
                match op {
                    Op::Put(_, k, v) => {
                        t.insert(k.as_slice(), v.as_slice())
                            .map_err(|e| Error::io("insert", e))?;
                    }
                    Op::Delete(_, k) => {
                        t.remove(k.as_slice()).map_err(|e| Error::io("remove", e))?;
                    }
                    Op::DeleteRange(_, s, e) => {
                        if s < e {
                            t.retain_in::<&[u8], _>(s.as_slice()..e.as_slice(), |_, _| false)
                                .map_err(|e| Error::io("delete range", e))?;
                        }
                    }
                }
            }
        }
        txn.commit().map_err(|e| Error::io("commit", e))
    }

    fn size_on_disk(&self) -> Result<u64> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| Error::io("stat", e))
    }

    fn size_in_use(&self) -> Result<u64> {
        let db = self.db.read();
        let txn = db.begin_write().map_err(|e| Error::io("begin write", e))?;
        let stats = txn.stats().map_err(|e| Error::io("stats", e))?;
        txn.abort().map_err(|e| Error::io("abort", e))?;
        Ok(stats.allocated_pages() * stats.page_size() as u64)
    }

    fn compact(&self) -> Result<()> {
        let mut db = self.db.write();
        // redb compacts only with no transaction in flight; the write lock ensures that.
        while db.compact().map_err(|e| Error::io("compact", e))? {}
        Ok(())
    }

    fn name(&self) -> &'static str {
        "redb"
    }
}
