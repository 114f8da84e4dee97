//! The in-memory key index, a port of etcd's `keyIndex`/`generation` model
//! (`server/mvcc/key_index.go`).
//!
//! For every key it keeps the revisions at which the key changed, grouped into
//! *generations*: a generation starts with the put that creates the key and ends with
//! the tombstone that deletes it. The last generation is empty when the key is
//! currently deleted. Values live in the engine, keyed by revision; the index only
//! answers "which revision holds key K as of revision R".

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

/// A revision: `main` is the store revision of a write transaction, `sub` the
/// position of the change within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rev {
    /// The store revision.
    pub main: i64,
    /// The change's position within its transaction.
    pub sub: i64,
}

impl Rev {
    /// A revision.
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// etcd's on-disk encoding: 8 bytes big-endian main, `_`, 8 bytes big-endian sub,
    /// and a trailing `t` for tombstones. Byte order equals revision order.
    pub fn encode(self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(18);
        b.extend_from_slice(&self.main.to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            b.push(b't');
        }
        b
    }

    /// Decodes [`Rev::encode`]'s output; returns the revision and whether it is a tombstone.
    pub fn decode(b: &[u8]) -> Option<(Rev, bool)> {
        if b.len() < 17 || b[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[9..17].try_into().ok()?);
        Some((Rev { main, sub }, b.len() == 18 && b[17] == b't'))
    }

    /// The smallest encoded key with this main revision (sub 0).
    pub fn main_start(main: i64) -> Vec<u8> {
        Rev::new(main, 0).encode(false)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Generation {
    ver: i64,
    created: Rev,
    revs: Vec<Rev>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }
    /// The index of the last revision, walking backwards, for which `keep_walking` is false.
    fn walk(&self, mut keep_walking: impl FnMut(Rev) -> bool) -> Option<usize> {
        (0..self.revs.len())
            .rev()
            .find(|&i| !keep_walking(self.revs[i]))
    }
}

/// The revisions of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    modified: Rev,
    generations: Vec<Generation>,
}

/// What [`KeyIndex::get`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The revision holding the value.
    pub modified: Rev,
    /// The revision that created the key's current generation.
    pub created: Rev,
    /// The key's version at that revision.
    pub version: i64,
}

impl KeyIndex {
    /// Records a put at `rev`.
    ///
    /// # Panics
    /// If `rev` is not newer than the last change: the apply loop never does that.
    pub fn put(&mut self, rev: Rev) {
        assert!(
            rev > self.modified || self.generations.is_empty(),
            "put at {rev:?} after {:?}",
            self.modified
        );
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let g = self
            .generations
            .last_mut()
            .expect("one generation at least");
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Records a delete at `rev`. Returns false if the key is not live.
    pub fn tombstone(&mut self, rev: Rev) -> bool {
        match self.generations.last() {
            None => return false,
            Some(g) if g.is_empty() => return false,
            Some(_) => {}
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// Whether the key currently exists (its last generation is not empty).
    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.is_empty())
    }

    /// The revision holding the key as of `at` (a main revision), if it existed then.
    pub fn get(&self, at: i64) -> Option<Found> {
        let g = self.find_generation(at)?;
        let n = g.walk(|r| r.main > at)?;
        Some(Found {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            if g.is_empty() {
                continue;
            }
            if i != last && g.revs[g.revs.len() - 1].main <= at {
                // The key was deleted at or before `at`.
                return None;
            }
            if g.revs[0].main <= at {
                return Some(g);
            }
        }
        None
    }

    /// True when the index holds nothing (after compaction removed everything).
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    /// Drops revisions older than `at` that no read at `at` or later needs. Adds the
    /// revisions that must be kept (the newest at or below `at`) to `available`.
    pub fn compact(&mut self, at: i64, available: &mut HashSet<Rev>) {
        if self.generations.is_empty() {
            return;
        }
        let mut gen_idx = 0;
        while gen_idx < self.generations.len() - 1 {
            let g = &self.generations[gen_idx];
            if g.revs[g.revs.len() - 1].main > at {
                break;
            }
            gen_idx += 1;
        }
        let last = self.generations.len() - 1;
        let g = &mut self.generations[gen_idx];
        let rev_idx = g.walk(|r| {
            if r.main <= at {
                available.insert(r);
                false
            } else {
                true
            }
        });
        if !g.is_empty() {
            if let Some(i) = rev_idx {
                g.revs.drain(..i);
            }
            // A generation reduced to its tombstone is gone entirely.
            if g.revs.len() == 1 && gen_idx != last {
                available.remove(&g.revs[0]);
                gen_idx += 1;
            }
        }
        self.generations.drain(..gen_idx);
    }
}

/// Every key's [`KeyIndex`], ordered by key.
#[derive(Debug, Default)]
pub struct TreeIndex {
    tree: BTreeMap<Vec<u8>, KeyIndex>,
}

/// A key range: `[start, end)`, with `end == None` meaning the single key `start`, and
/// an empty `end` meaning "to the end" (etcd's `"\0"` range end is mapped to that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// First key.
    pub start: Vec<u8>,
    /// End of the range; see the type docs.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Builds a range from etcd's `(key, range_end)` convention.
    pub fn from_etcd(key: &[u8], range_end: &[u8]) -> Self {
        let end = match range_end {
            [] => None,
            [0] => Some(Vec::new()),
            e => Some(e.to_vec()),
        };
        Self {
            start: key.to_vec(),
            end,
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == self.start.as_slice(),
            Some(e) if e.is_empty() => key >= self.start.as_slice(),
            Some(e) => key >= self.start.as_slice() && key < e.as_slice(),
        }
    }

    /// Whether the range is inverted (ends before it starts) and so matches nothing.
    pub fn is_inverted(&self) -> bool {
        matches!(&self.end, Some(e) if !e.is_empty() && e.as_slice() <= self.start.as_slice())
    }
}

impl TreeIndex {
    /// Records a put of `key` at `rev`.
    pub fn put(&mut self, key: &[u8], rev: Rev) {
        match self.tree.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                let mut ki = KeyIndex::default();
                ki.put(rev);
                self.tree.insert(key.to_vec(), ki);
            }
        }
    }

    /// Records a delete of `key` at `rev`; false if it was not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Rev) -> bool {
        self.tree.get_mut(key).is_some_and(|ki| ki.tombstone(rev))
    }

    /// The key's state as of `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Option<Found> {
        self.tree.get(key).and_then(|ki| ki.get(at))
    }

    /// Visits `(key, found)` for every key in `range` that existed as of `at`, in key
    /// order, until `visit` returns false.
    pub fn range(&self, range: &KeyRange, at: i64, mut visit: impl FnMut(&[u8], Found) -> bool) {
        if range.is_inverted() {
            return;
        }
        let iter: Box<dyn Iterator<Item = (&Vec<u8>, &KeyIndex)>> = match &range.end {
            None => Box::new(self.tree.get_key_value(&range.start).into_iter()),
            Some(e) if e.is_empty() => Box::new(
                self.tree
                    .range::<[u8], _>((Bound::Included(range.start.as_slice()), Bound::Unbounded)),
            ),
            Some(e) => Box::new(self.tree.range::<[u8], _>((
                Bound::Included(range.start.as_slice()),
                Bound::Excluded(e.as_slice()),
            ))),
        };
        for (k, ki) in iter {
            if let Some(f) = ki.get(at)
                && !visit(k, f)
            {
                break;
            }
        }
    }

    /// Keys currently live in `range`.
    pub fn live_keys(&self, range: &KeyRange) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.range(range, i64::MAX, |k, _| {
            out.push(k.to_vec());
            true
        });
        out
    }

    /// Compacts every key at `at`; returns the revisions that must be kept.
    pub fn compact(&mut self, at: i64) -> HashSet<Rev> {
        let mut available = HashSet::new();
        self.tree.retain(|_, ki| {
            ki.compact(at, &mut available);
            !ki.is_empty() && !ki.generations.is_empty()
        });
        available
    }

    /// The number of keys in the index (live or with history).
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Rev {
        Rev::new(main, 0)
    }

    #[test]
    fn encode_orders_like_revisions() {
        let a = Rev::new(1, 5).encode(false);
        let b = Rev::new(2, 0).encode(true);
        assert!(a < b);
        assert_eq!(Rev::decode(&b), Some((Rev::new(2, 0), true)));
        assert_eq!(Rev::decode(&a), Some((Rev::new(1, 5), false)));
        assert_eq!(Rev::decode(b"short"), None);
    }

    // etcd's TestKeyIndexGet: puts at 2, 4, 6 (tombstone), 8, 10, 12 (tombstone), 14, 14.1, 16.
    fn etcd_fixture() -> KeyIndex {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(r(4));
        ki.tombstone(r(6));
        ki.put(r(8));
        ki.put(r(10));
        ki.tombstone(r(12));
        ki.put(r(14));
        ki.put(Rev::new(14, 1));
        ki.put(r(16));
        ki
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn get_follows_generations() {
        let ki = etcd_fixture();
        let cases: &[(i64, Option<(Rev, Rev, i64)>)] = &[
            (17, Some((r(16), r(14), 3))),
            (16, Some((r(16), r(14), 3))),
            (15, Some((Rev::new(14, 1), r(14), 2))),
            (14, Some((Rev::new(14, 1), r(14), 2))),
            (13, None),
            (12, None),
            (11, Some((r(10), r(8), 2))),
            (10, Some((r(10), r(8), 2))),
            (9, Some((r(8), r(8), 1))),
            (8, Some((r(8), r(8), 1))),
            (7, None),
            (6, None),
            (5, Some((r(4), r(2), 2))),
            (4, Some((r(4), r(2), 2))),
            (3, Some((r(2), r(2), 1))),
            (2, Some((r(2), r(2), 1))),
            (1, None),
            (0, None),
        ];
        for (at, want) in cases {
            let got = ki.get(*at).map(|f| (f.modified, f.created, f.version));
            assert_eq!(got, *want, "get({at})");
        }
    }

    #[test]
    fn tombstone_of_deleted_key_fails() {
        let mut ki = KeyIndex::default();
        ki.put(r(1));
        assert!(ki.tombstone(r(2)));
        assert!(!ki.tombstone(r(3)));
        assert!(!ki.is_live());
    }

    #[test]
    fn compaction_keeps_what_reads_need() {
        // etcd's TestKeyIndexCompactAndKeep, in spirit: after compacting at `at`, every
        // read at `at` or later answers as before, and `available` holds exactly the
        // revisions those reads touch at or below `at`.
        for at in 1..=17 {
            let full = etcd_fixture();
            let mut ki = etcd_fixture();
            let mut avail = HashSet::new();
            ki.compact(at, &mut avail);
            for read in at..=17 {
                assert_eq!(
                    ki.get(read),
                    full.get(read),
                    "compact({at}) then get({read})"
                );
            }
            if let Some(f) = full.get(at) {
                assert!(
                    avail.contains(&f.modified),
                    "compact({at}) keeps {:?}",
                    f.modified
                );
            }
            assert!(avail.iter().all(|r| r.main <= at));
        }
    }

    #[test]
    fn tree_compaction_drops_deleted_keys() {
        let mut t = TreeIndex::default();
        t.put(b"a", r(2));
        t.tombstone(b"a", r(3));
        t.put(b"b", r(4));
        let avail = t.compact(4);
        assert_eq!(t.len(), 1);
        assert!(avail.contains(&r(4)));
        assert!(!avail.contains(&r(3)), "a tombstone alone is not kept");
    }

    #[test]
    fn key_ranges() {
        let single = KeyRange::from_etcd(b"a", b"");
        assert!(single.contains(b"a") && !single.contains(b"ab"));
        let from = KeyRange::from_etcd(b"b", b"\0");
        assert!(from.contains(b"zzz") && !from.contains(b"a"));
        let half = KeyRange::from_etcd(b"b", b"d");
        assert!(half.contains(b"c") && !half.contains(b"d"));
        assert!(KeyRange::from_etcd(b"d", b"b").is_inverted());
        let mut t = TreeIndex::default();
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            t.put(*k, r(i as i64 + 2));
        }
        assert_eq!(t.live_keys(&half), vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(t.live_keys(&from).len(), 3);
        assert!(t.live_keys(&KeyRange::from_etcd(b"d", b"b")).is_empty());
    }
}
