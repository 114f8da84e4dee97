//! Leases, as etcd's `lease.Lessor` keeps them.
//!
//! Grants, revocations and key attachments are replicated (they change in the apply
//! loop on every member). **Expiry is local to the leader**: only the leader tracks
//! deadlines; when one passes it proposes a revoke through Raft, and the revoke deletes
//! the lease's keys on every member. A new leader *promotes* its lessor: every lease
//! gets its full TTL again plus the election timeout, exactly as etcd does without
//! lease checkpointing, so a lease never expires early because leadership moved.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The largest TTL etcd accepts (`lease.MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// A time source, so expiry is testable without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[derive(Debug)]
struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
    /// Set on the leader only.
    expiry: Option<Instant>,
    /// When a revoke was last proposed for it (leader only), to avoid proposing twice.
    revoking: Option<Instant>,
}

/// A lease as listed or inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease ID.
    pub id: i64,
    /// The TTL granted.
    pub granted_ttl: i64,
    /// Seconds left, on the leader; the granted TTL elsewhere.
    pub remaining: i64,
    /// Attached keys.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Inner {
    leases: HashMap<i64, Lease>,
    /// Which lease each attached key belongs to (etcd's `itemMap`), so a put finds the
    /// key's old lease without reading the old value.
    items: HashMap<Vec<u8>, i64>,
    primary: bool,
}

/// The lessor.
pub struct Lessor {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    min_ttl: i64,
}

impl Lessor {
    /// A lessor whose TTLs are at least `min_ttl` seconds (etcd: 1.5 election timeouts).
    pub fn new(clock: Arc<dyn Clock>, min_ttl: i64) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            clock,
            min_ttl,
        }
    }

    /// The TTL a grant of `ttl` actually gets.
    pub fn effective_ttl(&self, ttl: i64) -> i64 {
        ttl.max(self.min_ttl)
    }

    /// Whether the lease exists.
    pub fn exists(&self, id: i64) -> bool {
        self.inner.lock().leases.contains_key(&id)
    }

    /// Records a grant (apply loop). Returns false if the ID is taken.
    pub fn grant(&self, id: i64, ttl: i64) -> bool {
        let mut inner = self.inner.lock();
        if inner.leases.contains_key(&id) {
            return false;
        }
        let expiry = inner.primary.then(|| self.clock.now() + secs(ttl));
        inner.leases.insert(
            id,
            Lease {
                ttl,
                keys: BTreeSet::new(),
                expiry,
                revoking: None,
            },
        );
        true
    }

    /// Removes a lease (apply loop); returns its keys, which the caller deletes.
    pub fn revoke(&self, id: i64) -> Option<Vec<Vec<u8>>> {
        let mut inner = self.inner.lock();
        let l = inner.leases.remove(&id)?;
        for k in &l.keys {
            inner.items.remove(k);
        }
        Some(l.keys.into_iter().collect())
    }

    /// Attaches `key` to lease `id`.
    pub fn attach(&self, id: i64, key: &[u8]) {
        let mut inner = self.inner.lock();
        if let Some(l) = inner.leases.get_mut(&id) {
            l.keys.insert(key.to_vec());
            inner.items.insert(key.to_vec(), id);
        }
    }

    /// Detaches `key` from whatever lease holds it; returns that lease (0: none).
    pub fn detach_key(&self, key: &[u8]) -> i64 {
        let mut inner = self.inner.lock();
        let Some(id) = inner.items.remove(key) else {
            return 0;
        };
        if let Some(l) = inner.leases.get_mut(&id) {
            l.keys.remove(key);
        }
        id
    }

    /// Renews a lease (leader only); returns its TTL, or `None` if it does not exist.
    pub fn renew(&self, id: i64) -> Option<i64> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        let primary = inner.primary;
        let l = inner.leases.get_mut(&id)?;
        if primary {
            l.expiry = Some(now + secs(l.ttl));
            l.revoking = None;
        }
        Some(l.ttl)
    }

    /// Whether this member tracks expiry (it is the leader).
    pub fn is_primary(&self) -> bool {
        self.inner.lock().primary
    }

    /// Becomes the primary: every lease gets its full TTL plus `extend`.
    pub fn promote(&self, extend: Duration) {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        inner.primary = true;
        for l in inner.leases.values_mut() {
            l.expiry = Some(now + secs(l.ttl) + extend);
            l.revoking = None;
        }
    }

    /// Stops tracking expiry.
    pub fn demote(&self) {
        let mut inner = self.inner.lock();
        inner.primary = false;
        for l in inner.leases.values_mut() {
            l.expiry = None;
            l.revoking = None;
        }
    }

    /// Leases whose deadline passed and whose revoke has not been proposed in the last
    /// `retry`; at most `max` of them. Marks them as being revoked.
    pub fn take_expired(&self, max: usize, retry: Duration) -> Vec<i64> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if !inner.primary {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (id, l) in inner.leases.iter_mut() {
            if out.len() >= max {
                break;
            }
            let expired = l.expiry.is_some_and(|e| e <= now);
            let pending = l.revoking.is_some_and(|r| now < r + retry);
            if expired && !pending {
                l.revoking = Some(now);
                out.push(*id);
            }
        }
        out
    }

    /// One lease's details.
    pub fn info(&self, id: i64) -> Option<LeaseInfo> {
        let now = self.clock.now();
        let inner = self.inner.lock();
        inner.leases.get(&id).map(|l| info(id, l, now))
    }

    /// Every lease ID.
    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.inner.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Drops every lease (before a snapshot restore).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.leases.clear();
        inner.items.clear();
    }

    /// The number of leases.
    pub fn len(&self) -> usize {
        self.inner.lock().leases.len()
    }

    /// Whether there are no leases.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn info(id: i64, l: &Lease, now: Instant) -> LeaseInfo {
    let remaining = match l.expiry {
        Some(e) if e > now => {
            let left = e - now;
            // etcd rounds the remaining TTL up to whole seconds.
            i64::try_from(left.as_secs()).unwrap_or(i64::MAX) + i64::from(left.subsec_nanos() > 0)
        }
        Some(_) => 0,
        None => l.ttl,
    };
    LeaseInfo {
        id,
        granted_ttl: l.ttl,
        remaining,
        keys: l.keys.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeClock(Mutex<Option<Instant>>);
    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().get_or_insert_with(Instant::now)
        }
    }
    impl FakeClock {
        fn advance(&self, d: Duration) {
            let now = self.now();
            *self.0.lock() = Some(now + d);
        }
    }

    #[test]
    fn only_the_primary_expires_leases() {
        let clock = Arc::new(FakeClock::default());
        let l = Lessor::new(clock.clone(), 2);
        assert_eq!(l.effective_ttl(1), 2, "TTLs below the minimum are raised");
        assert!(l.grant(1, 5));
        assert!(!l.grant(1, 5), "IDs are unique");
        clock.advance(Duration::from_secs(100));
        assert!(
            l.take_expired(10, Duration::from_secs(3)).is_empty(),
            "followers never expire"
        );
        l.promote(Duration::from_secs(1));
        clock.advance(Duration::from_secs(5));
        assert!(
            l.take_expired(10, Duration::from_secs(3)).is_empty(),
            "TTL plus the extension"
        );
        clock.advance(Duration::from_secs(2));
        assert_eq!(l.take_expired(10, Duration::from_secs(3)), vec![1]);
        assert!(
            l.take_expired(10, Duration::from_secs(3)).is_empty(),
            "not proposed twice"
        );
        clock.advance(Duration::from_secs(4));
        assert_eq!(
            l.take_expired(10, Duration::from_secs(3)),
            vec![1],
            "retried"
        );
    }

    #[test]
    fn renew_and_keys() {
        let clock = Arc::new(FakeClock::default());
        let l = Lessor::new(clock.clone(), 1);
        l.promote(Duration::ZERO);
        l.grant(7, 10);
        l.attach(7, b"a");
        l.attach(7, b"b");
        assert_eq!(l.detach_key(b"a"), 7);
        assert_eq!(l.detach_key(b"a"), 0, "already detached");
        clock.advance(Duration::from_millis(9500));
        assert_eq!(l.info(7).unwrap().remaining, 1);
        assert_eq!(l.renew(7), Some(10));
        assert_eq!(l.info(7).unwrap().remaining, 10);
        assert_eq!(l.renew(8), None);
        assert_eq!(l.revoke(7), Some(vec![b"b".to_vec()]));
        assert!(!l.exists(7));
    }
}
