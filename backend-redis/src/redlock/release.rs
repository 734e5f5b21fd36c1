//! Renew and release: on every server at once, each comparing holder id and token.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::backend::{lost_or_superseded, renewed_lease, ttl_millis};
use fencelock_core::{Error, Lease, LossReason, Operation};
use tokio::time::Instant;

use super::quorum::{self, Replies, no_majority, quorum};
use super::store::Inner;
use crate::grant::value_of;
use crate::reply::{self, Compared};
use crate::scripts::{Call, SCRIPTS};

/// Extends `lease` on every server where this exact grant still holds.
///
/// Succeeds iff a majority extended it before the lease's current deadline and the new
/// validity (`ttl − elapsed − drift`) is positive; the new deadline is measured from the send.
/// `LeaseLost` once so many servers refused that no majority can hold it, or when the deadline
/// passed; a transient error while a majority may still hold it (the watchdog retries until the
/// deadline).
pub(super) async fn renew(
    inner: &Arc<Inner>,
    lease: &Lease,
    ttl: Duration,
) -> Result<Lease, Error> {
    let ttl = inner.check_ttl(ttl)?;
    let n = inner.instances.len();
    let q = quorum(n);
    let left = lease.remaining();
    if left.is_zero() {
        return Err(Error::lost(lease, LossReason::DeadlineReached));
    }
    let limit = inner.server_timeout.min(left);
    let keys = inner.layout.lock(lease.name());
    let ttl_ms = ttl_millis(ttl);
    let renew = Call::new(&SCRIPTS.renew, &[&keys.lock])
        .arg(value_of(lease))
        .arg(ttl_ms);
    let first_sent = Instant::now();
    let replies = inner
        .ask_all(
            Operation::Renew,
            renew,
            limit,
            |v| reply::compared(Operation::Renew, v),
            |r: &Replies<Compared>| decided(r, n),
        )
        .await;
    let done = replies.count(|c| *c == Compared::Done);
    let now = Instant::now();
    if done >= q {
        if now >= lease.deadline() {
            return Err(Error::lost(lease, LossReason::DeadlineReached));
        }
        let validity = quorum::validity(ttl, first_sent.elapsed(), inner.drift(ttl))
            .filter(|v| first_sent + *v > now);
        if let Some(sent_at) = validity.and_then(|v| quorum::backdated(first_sent, ttl, v)) {
            return Ok(renewed_lease(lease, ttl, sent_at));
        }
        return Err(Error::lost(lease, LossReason::DeadlineReached));
    }
    if replies.ok.len() - done > n - q {
        return Err(loss(lease, &replies));
    }
    if now >= lease.deadline() {
        return Err(Error::lost(lease, LossReason::DeadlineReached));
    }
    Err(no_majority(Operation::Renew, n, replies.failed))
}

/// Frees `lease` on every server where this exact grant still holds, and announces it there.
///
/// `Ok` once it was freed somewhere and no majority said it was not held; `LeaseLost` when a
/// majority said so (it expired, was broken or taken over); a transient error when too few
/// servers answered to tell.
pub(super) async fn release(inner: &Arc<Inner>, lease: &Lease) -> Result<(), Error> {
    let n = inner.instances.len();
    let q = quorum(n);
    let replies = release_everywhere(inner, lease, |r| {
        r.count(|c| *c == Compared::Done) >= q || decided(r, n)
    })
    .await;
    let done = replies.count(|c| *c == Compared::Done);
    let refused = replies.ok.len() - done;
    if refused >= q {
        return Err(loss(lease, &replies));
    }
    if done > 0 {
        return Ok(());
    }
    Err(no_majority(Operation::Release, n, replies.failed))
}

/// Runs the release script for `lease`'s grant on every server, collecting answers until
/// `settled`.
pub(super) async fn release_everywhere(
    inner: &Arc<Inner>,
    lease: &Lease,
    settled: impl FnMut(&Replies<Compared>) -> bool,
) -> Replies<Compared> {
    let name = lease.name();
    let keys = inner.layout.lock(name);
    let channel = inner.layout.release_channel(name);
    let release = Call::new(&SCRIPTS.release, &[&keys.lock])
        .arg(value_of(lease))
        .arg(channel)
        .arg(name.as_str());
    let replies = inner
        .ask_all(
            Operation::Release,
            release,
            inner.server_timeout,
            |v| reply::compared(Operation::Release, v),
            settled,
        )
        .await;
    for (i, error) in &replies.failed {
        tracing::debug!(lock = %name, server = %inner.instances[*i].target, %error, "release not confirmed");
    }
    replies
}

/// Whether the outcome is known: a majority succeeded, or so many refused that it cannot.
fn decided(r: &Replies<Compared>, n: usize) -> bool {
    let q = quorum(n);
    let done = r.count(|c| *c == Compared::Done);
    done >= q || r.ok.len() - done > n - q
}

/// `LeaseLost`, `Superseded` by the newest grant any server showed, if newer.
fn loss(lease: &Lease, replies: &Replies<Compared>) -> Error {
    let newest = replies
        .ok
        .iter()
        .filter_map(|(_, c)| match c {
            Compared::Lost(Some(g)) => Some(g.token),
            _ => None,
        })
        .max();
    lost_or_superseded(lease, newest)
}
