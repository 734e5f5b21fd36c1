//! Acquiring on a majority with a token above every earlier grant's (see `REDLOCK.md`).
//!
//! One attempt is two rounds, each sent to every server at once:
//! 1. **read**: each server reports its grant (if any) and its token counter;
//! 2. **write**: propose `max(counters of a majority) + 1`; each server sets the lock iff it is
//!    free *and* the proposal is above its counter, raising the counter in the same script.
//!
//! The grant holds iff a majority set it within the validity budget. Otherwise the attempt is
//! rolled back everywhere it may have been set, and, if it lost a race rather than meeting a
//! holder, tried again after a random pause.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::backend::{granted_lease, labeled, ttl_millis};
use fencelock_core::{Error, FencingToken, HolderId, Lease, LockName, Operation, OwnerLabel};
use rand::Rng;
use tokio::time::Instant;

use super::quorum::{self, REDLOCK, Replies, no_majority, quorum};
use super::reply::{self, Read, Written};
use super::rollback::Rollback;
use super::store::Inner;
use crate::grant::{Grant, holder_hex, label_suffix};
use crate::keys::LockKeys;
use crate::scripts::{Call, SCRIPTS};

/// How many attempts one `try_acquire` makes when it loses races (not when the name is held).
const ATTEMPTS: u32 = 6;

/// How one attempt ended.
enum Attempt {
    Granted(Lease),
    /// A grant holds the name on a majority, or (before this call wrote anything) enough
    /// servers are taken that no majority is free.
    Held,
    /// Lost a race with another acquirer (split votes or a stale proposal); worth retrying.
    Raced,
}

pub(super) async fn try_acquire(
    inner: &Arc<Inner>,
    name: &LockName,
    ttl: Duration,
    label: Option<&OwnerLabel>,
) -> Result<Option<Lease>, Error> {
    let ttl = inner.check_ttl(ttl)?;
    let keys = inner.layout.lock(name);
    let mut wrote = false;
    for attempt in 1..=ATTEMPTS {
        match attempt_once(inner, name, &keys, ttl, label, &mut wrote).await? {
            Attempt::Granted(lease) => return Ok(Some(lease)),
            Attempt::Held => return Ok(None),
            Attempt::Raced if attempt == ATTEMPTS => break,
            Attempt::Raced => {
                // Random, growing pauses break the symmetry of acquirers that keep splitting
                // the servers between them.
                let cap = Duration::from_micros(500 << attempt.min(6));
                let pause = rand::rng().random_range(Duration::ZERO..=cap);
                tokio::time::sleep(pause).await;
            }
        }
    }
    tracing::debug!(lock = %name, "lost every race for a majority; reporting the name as held");
    Ok(None)
}

async fn attempt_once(
    inner: &Arc<Inner>,
    name: &LockName,
    keys: &LockKeys,
    ttl: Duration,
    label: Option<&OwnerLabel>,
    wrote: &mut bool,
) -> Result<Attempt, Error> {
    let n = inner.instances.len();
    let q = quorum(n);
    let limit = inner.acquire_timeout(ttl);
    let drift = inner.drift(ttl);
    let first_sent = Instant::now();

    // Round 1: read grants and counters.
    let read = Call::new(&SCRIPTS.redlock_read, &[&keys.lock, &keys.counter]);
    let reads = inner
        .ask_all(
            Operation::Acquire,
            read,
            limit,
            reply::read,
            |r: &Replies<Read>| top_holder(r).1 >= q || r.count(|x| x.held.is_none()) >= q,
        )
        .await;
    if top_holder(&reads).1 >= q {
        return Ok(Attempt::Held);
    }
    if reads.count(|x| x.held.is_none()) < q {
        if reads.ok.len() < q && reads.failed.len() > n - q {
            return Err(no_majority(Operation::Acquire, n, reads.failed));
        }
        // Taken on too many servers for a majority to be free. Before this call wrote anything
        // that is contention; after, it may be the leftovers of a split it was part of.
        return Ok(if *wrote {
            Attempt::Raced
        } else {
            Attempt::Held
        });
    }
    let highest = reads.ok.iter().map(|(_, r)| r.counter).max().unwrap_or(0);
    let proposed = highest
        .checked_add(1)
        .filter(|t| *t <= FencingToken::MAX_EXACT)
        .ok_or_else(|| {
            Error::backend(
                REDLOCK,
                Operation::Acquire,
                format!("token counter of `{name}` is exhausted (2^53 - 1)"),
            )
        })?;

    // Round 2: propose the token and take the lock where it is free.
    let holder = HolderId::random();
    let grant = Grant {
        holder,
        token: FencingToken::new(proposed),
    };
    let ttl_ms = ttl_millis(ttl);
    let write = Call::new(&SCRIPTS.redlock_write, &[&keys.lock, &keys.counter])
        .arg(&holder_hex(holder)[..])
        .arg(proposed)
        .arg(ttl_ms)
        .arg(label_suffix(label));
    let proposal = labeled(
        granted_lease(name.clone(), grant.token, holder, ttl, first_sent),
        label,
    );
    // From here on, a caller that drops this future leaves nothing held.
    let rollback = Rollback::arm(Arc::clone(inner), proposal);
    *wrote = true;
    let writes = inner
        .ask_all(
            Operation::Acquire,
            write,
            limit,
            reply::written,
            |r: &Replies<Written>| {
                let set = r.count(|w| *w == Written::Set);
                set >= q || set + r.pending.len() < q
            },
        )
        .await;
    let set = writes.count(|w| *w == Written::Set);
    let elapsed = first_sent.elapsed();
    if set >= q {
        let deadline = quorum::validity(ttl, elapsed, drift)
            .and_then(|v| Some((v, quorum::backdated(first_sent, ttl, v)?)))
            .filter(|(v, _)| first_sent + *v > Instant::now());
        if let Some((_, sent_at)) = deadline {
            rollback.disarm();
            return Ok(Attempt::Granted(labeled(
                granted_lease(name.clone(), grant.token, holder, ttl, sent_at),
                label,
            )));
        }
        rollback.run_now().await;
        return Err(Error::unavailable(
            REDLOCK,
            Operation::Acquire,
            format!(
                "a majority granted `{name}` only after {elapsed:?}, leaving no validity of the {ttl:?} TTL (drift allowance {drift:?}); the grant was rolled back. Use a longer TTL or check the servers' latency"
            ),
        ));
    }
    rollback.run_now().await;
    let refused = writes.ok.len() - set;
    if refused == 0 {
        return Err(no_majority(Operation::Acquire, n, writes.failed));
    }
    Ok(Attempt::Raced)
}

/// The grant held on the most answering servers, and on how many.
fn top_holder(replies: &Replies<Read>) -> (Option<Grant>, usize) {
    let mut best = (None, 0);
    for (_, r) in &replies.ok {
        if let Some(g) = r.held {
            let count = replies.count(|x| x.held == Some(g));
            if count > best.1 {
                best = (Some(g), count);
            }
        }
    }
    best
}
