//! Spare leases: the etcd leases of released grants, kept for the next acquire instead of
//! being revoked, so that an uncontended acquire + release costs two Raft writes (the queue
//! txn and the delete txn) instead of four (grant, txn, txn, revoke).
//!
//! Why reuse is safe:
//! - A lease is pooled only after *our* release txn deleted its key (the create revision
//!   matched), so it holds no key. Contended, failed or cancelled acquires and releases that
//!   found the grant gone (`LeaseLost`) or failed keep revoking their lease.
//! - The lock key embeds the lease id, so reusing lease `L` for `NAME` creates `NAME/L` again
//!   with a new, greater create revision: a new, greater token. A stale guard of the earlier
//!   grant still names the old revision, and renew and release compare it, so they answer
//!   `LeaseLost` and leave the new holder alone.
//! - A spare's freshness is the send instant of its last keepalive (or grant) that etcd
//!   confirmed; the lease cannot expire before freshness + TTL. A reused grant's deadline counts
//!   from that instant, never from the moment of reuse, and a spare is handed out only while
//!   it is at most a tenth of its TTL old, so the caller still gets at least 90 % of the TTL.
//!   Older spares are revoked in the background.
//! - If a spare was revoked behind our back, the queue txn fails with "lease not found" and
//!   the acquire grants a fresh lease instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fencelock_core::Lease;
use fencelock_core::backend::{lock_unpoisoned, safety_margin};
use tokio::time::Instant;

use crate::etcd_lease::{EtcdLease, spawn_revoke, ttl_seconds};
use crate::rpc::Rpc;

/// At most this many spares are kept per TTL; more are revoked.
pub(crate) const MAX_SPARES_PER_TTL: usize = 256;

/// The pool of spare leases of one store, shared by its clones.
#[derive(Clone)]
pub(crate) struct Spares {
    inner: Arc<Mutex<Pool>>,
}

struct Pool {
    rpc: Rpc,
    /// Spares by granted TTL in whole seconds, oldest first.
    by_ttl: HashMap<u64, Vec<EtcdLease>>,
    /// Requested TTLs (whole seconds) that etcd raised on grant (to its minimum TTL), and to
    /// what: a spare of the raised TTL is what a fresh grant would give.
    raised: HashMap<u64, u64>,
}

/// Whether a lease confirmed at `fresh` with `ttl` is young enough to hand out at `now`.
fn is_fresh(fresh: Instant, ttl: Duration, now: Instant) -> bool {
    now.saturating_duration_since(fresh) <= ttl / 10
}

impl Spares {
    pub(crate) fn new(rpc: Rpc) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Pool {
                rpc,
                by_ttl: HashMap::new(),
                raised: HashMap::new(),
            })),
        }
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        lock_unpoisoned(&self.inner)
    }

    /// A spare for a request of `ttl`, if a fresh one exists; stale ones are revoked.
    pub(crate) fn take(&self, ttl: Duration) -> Option<EtcdLease> {
        let requested = u64::try_from(ttl_seconds(ttl)).ok()?;
        let mut pool = self.pool();
        let key = pool.raised.get(&requested).copied().unwrap_or(requested);
        let now = Instant::now();
        let rpc = pool.rpc.clone();
        let spares = pool.by_ttl.get_mut(&key)?;
        // Spares are pushed in release order, which is roughly freshness order: the newest
        // are at the end. Revoke every stale one, hand out the newest fresh one.
        spares.retain(|spare| {
            let fresh = is_fresh(spare.sent_at, spare.ttl, now);
            if !fresh {
                spawn_revoke(rpc.clone(), spare.id);
            }
            fresh
        });
        spares.pop()
    }

    /// Notes that a request of `requested` was granted `granted` (etcd raises short TTLs).
    pub(crate) fn note_grant(&self, requested: Duration, granted: &EtcdLease) {
        let (Ok(requested), Some(granted)) = (
            u64::try_from(ttl_seconds(requested)),
            whole_seconds(granted.ttl),
        ) else {
            return;
        };
        if granted != requested {
            self.pool().raised.insert(requested, granted);
        }
    }

    /// Keeps `granted`, which never had a key attached (its claim found the lock held), as a
    /// spare; revokes it in the background when it is too old or the pool is full.
    pub(crate) fn restore(&self, granted: EtcdLease) {
        let mut pool = self.pool();
        let rpc = pool.rpc.clone();
        let now = Instant::now();
        match whole_seconds(granted.ttl) {
            Some(secs) if is_fresh(granted.sent_at, granted.ttl, now) => {
                let spares = pool.by_ttl.entry(secs).or_default();
                if spares.len() < MAX_SPARES_PER_TTL {
                    spares.push(granted);
                    return;
                }
                spawn_revoke(rpc, granted.id);
            }
            _ => spawn_revoke(rpc, granted.id),
        }
    }

    /// Keeps the lease of `lease`, whose key our release just deleted, as a spare; revokes it
    /// in the background when it is too old, the pool is full, or its freshness is unknown.
    pub(crate) fn put(&self, lease: &Lease, lease_id: i64) {
        let mut pool = self.pool();
        let rpc = pool.rpc.clone();
        let Some(spare) = spare_of(lease, lease_id) else {
            spawn_revoke(rpc, lease_id);
            return;
        };
        let Some(secs) = whole_seconds(spare.ttl) else {
            spawn_revoke(rpc, lease_id);
            return;
        };
        let now = Instant::now();
        let spares = pool.by_ttl.entry(secs).or_default();
        spares.retain(|old| {
            let fresh = is_fresh(old.sent_at, old.ttl, now);
            if !fresh {
                spawn_revoke(rpc.clone(), old.id);
            }
            fresh
        });
        if !is_fresh(spare.sent_at, spare.ttl, now) || spares.len() >= MAX_SPARES_PER_TTL {
            spawn_revoke(rpc, lease_id);
            return;
        }
        spares.push(spare);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The last clone of the store is gone: nobody will reuse these.
        for spare in self.by_ttl.values().flatten() {
            spawn_revoke(self.rpc.clone(), spare.id);
        }
    }
}

/// `ttl` as whole seconds, if it is a positive whole number of seconds (as etcd grants).
fn whole_seconds(ttl: Duration) -> Option<u64> {
    (ttl.subsec_nanos() == 0 && ttl.as_secs() > 0).then_some(ttl.as_secs())
}

/// The lease behind `lease` as a spare: its freshness is the send instant of the grant or
/// renewal its deadline was computed from (see [`granted_lease`](fencelock_core::backend::granted_lease)), recovered exactly by
/// undoing the deadline's arithmetic.
fn spare_of(lease: &Lease, lease_id: i64) -> Option<EtcdLease> {
    let ttl = lease.ttl();
    let sent_at = lease
        .deadline()
        .checked_sub(ttl.checked_sub(safety_margin(ttl))?)?;
    Some(EtcdLease {
        id: lease_id,
        ttl,
        sent_at,
    })
}

#[cfg(test)]
mod tests {
    use fencelock_core::backend::{granted_lease, holder_id, renewed_lease};
    use fencelock_core::{FencingToken, LockName};

    use super::*;

    #[tokio::test]
    async fn freshness_is_the_send_instant_of_the_grant() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(7);
        let lease = granted_lease(
            LockName::new("n").unwrap(),
            FencingToken::new(3),
            holder_id(5),
            ttl,
            sent,
        );
        let spare = spare_of(&lease, 5).unwrap();
        assert_eq!(spare.sent_at, sent);
        let renewed = renewed_lease(&lease, ttl, sent + Duration::from_secs(2));
        assert_eq!(
            spare_of(&renewed, 5).unwrap().sent_at,
            sent + Duration::from_secs(2)
        );
    }

    #[test]
    fn only_young_spares_are_fresh() {
        let now = Instant::now();
        let ttl = Duration::from_secs(10);
        assert!(is_fresh(now, ttl, now));
        assert!(is_fresh(now, ttl, now + Duration::from_secs(1)));
        assert!(!is_fresh(now, ttl, now + Duration::from_millis(1001)));
    }

    #[test]
    fn whole_seconds_only() {
        assert_eq!(whole_seconds(Duration::from_secs(2)), Some(2));
        assert_eq!(whole_seconds(Duration::from_millis(2500)), None);
        assert_eq!(whole_seconds(Duration::ZERO), None);
    }
}
