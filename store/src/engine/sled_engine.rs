//! The sled 0.34 engine: one sled tree per [`Table`]. sled keeps everything in one
//! log, so a batch that spans trees is made atomic with a multi-tree transaction.
//!
//! sled makes writes durable only on `flush()` (a background flush also runs every
//! 500 ms), so `Durability::Sync` flushes after the transaction commits.

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Durability, Error, KvEngine, Op, Result, Table, Visitor, WriteBatch};

/// A sled database directory.
pub(crate) struct SledEngine {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

impl SledEngine {
    /// Opens or creates the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        // sled releases its file lock from its flusher thread after the last handle is
        // dropped, so a reopen right after a close can find the lock still held for a
        // moment: retry lock errors for up to two seconds.
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new()
                .path(path)
                .cache_capacity(64 << 20)
                .open()
            {
                Ok(db) => break db,
                Err(e) if attempts < 40 && e.to_string().contains("lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(Error::Open {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    });
                }
            }
        };
        let trees = Table::ALL
            .iter()
            .map(|t| {
                db.open_tree(t.name())
                    .map_err(|e| Error::io("open tree", e))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { db, trees })
    }

    fn tree(&self, t: Table) -> &sled::Tree {
        &self.trees[t as usize - 1]
    }
}

impl KvEngine for SledEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tree(table)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| Error::io("get", e))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        let tree = self.tree(table);
        let iter = match end {
            Some(end) if end <= start => return Ok(()),
            Some(end) => tree.range(start..end),
            None => tree.range(start..),
        };
        for item in iter {
            let (k, v) = item.map_err(|e| Error::io("range", e))?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<()> {
        // Range deletes are resolved to point deletes before the transaction: sled
        // transactions cannot iterate. Our only writer is the apply thread, so no key
        // appears in the range between the scan and the commit.
        let mut ops: Vec<(Table, Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(batch.len());
        for op in batch.ops() {
            match op {
                Op::Put(t, k, v) => ops.push((*t, k.clone(), Some(v.clone()))),
                Op::Delete(t, k) => ops.push((*t, k.clone(), None)),
                Op::DeleteRange(t, s, e) => {
                    for item in self.tree(*t).range(s.as_slice()..e.as_slice()) {
                        let (k, _) = item.map_err(|e| Error::io("range", e))?;
                        ops.push((*t, k.to_vec(), None));
                    }
                }
            }
        }
        let trees: Vec<&sled::Tree> = self.trees.iter().collect();
        let res: std::result::Result<(), TransactionError<()>> =
            trees.as_slice().transaction(|txs| {
                for (t, k, v) in &ops {
                    let tx = &txs[*t as usize - 1];
                    match v {
                        Some(v) => {
                            tx.insert(k.as_slice(), v.as_slice())?;
                        }
                        None => {
                            tx.remove(k.as_slice())?;
                        }
                    }
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            });
        res.map_err(|e| Error::io("transaction", format!("{e:?}")))?;
        if durability == Durability::Sync {
            self.db.flush().map_err(|e| Error::io("flush", e))?;
        }
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(|e| Error::io("size", e))
    }

    fn compact(&self) -> Result<()> {
        // sled reclaims space by itself in the background; flush so the file reflects it.
        self.db.flush().map_err(|e| Error::io("flush", e))?;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "sled"
    }
}
