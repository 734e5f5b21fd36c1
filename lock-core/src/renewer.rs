//! Renewal batching: the store call for the renewals a timer queue's driver found due together.
//!
//! The driver (`watchdog.rs`) takes every watchdog due within [`MAX_LINGER`] (never more than a
//! fiftieth of the time its lease has left: renewing a little early is always safe) and hands
//! them to one task, which sends them through [`LeaseStore::renew_many`] (one pipeline, one
//! statement or one stream, where the backend allows) per TTL and answers each watchdog alone.
//! No channel, no reply slot and no task per renewal.
//!
//! Nothing here can end a renewal silently: a call that panics, outlives the earliest deadline
//! in its group, or answers the wrong number of results comes back to every watchdog in it as a
//! [`Renewed`] that is not an answer, which the watchdog reports as loss or retries while its
//! lease is locally valid.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use crate::{Error, Lease, LeaseStore};

/// The earliest a batched renewal goes out before it is due, at most.
pub(crate) const MAX_LINGER: Duration = Duration::from_millis(2);
/// A renewal goes out early by at most this fraction of the time its lease has left (1/50).
pub(crate) const LINGER_SHARE: u32 = 50;
/// The most leases in one `renew_many` call.
pub(crate) const MAX_BATCH: usize = 1024;
/// The most batches in flight at once per timer queue; further ones wait for a slot.
pub(crate) const MAX_IN_FLIGHT: usize = 4;

/// How one lease's renewal ended.
#[derive(Debug)]
pub(crate) enum Renewed {
    /// The store's answer for this lease.
    Answer(Result<Lease, Error>),
    /// No answer by the earliest local deadline in the group: the call was abandoned.
    TimedOut,
    /// No answer: the call panicked or answered wrongly. The watchdog reports loss.
    Failed(String),
}

/// Renews `leases` (all to `ttl`) with one `renew_many` (`batched`) or `renew` each, bounded by
/// the earliest of their deadlines; `slots` bounds the batches in flight. One answer per lease,
/// in order.
pub(crate) async fn renew_group(
    store: &dyn LeaseStore,
    slots: &Semaphore,
    leases: &[Lease],
    ttl: Duration,
    batched: bool,
) -> Vec<Renewed> {
    let Some(until) = leases.iter().map(Lease::deadline).min() else {
        return Vec::new();
    };
    let call = async {
        // Lone renewals are not bounded (as many as watchdogs come due); batches are. The
        // semaphore is never closed; were it, the batch would go out without a slot.
        let _slot = if batched {
            slots.acquire().await.ok()
        } else {
            None
        };
        if batched {
            crate::metrics::renew_batch(store.backend(), leases.len());
            store.renew_many(leases, ttl).await
        } else {
            let mut answers = Vec::with_capacity(leases.len());
            for lease in leases {
                answers.push(store.renew(lease, ttl).await);
            }
            answers
        }
    };
    let outcome = timeout_at(until, AssertUnwindSafe(call).catch_unwind()).await;
    let all = |renewed: &dyn Fn() -> Renewed| leases.iter().map(|_| renewed()).collect();
    match outcome {
        Err(_elapsed) => all(&|| Renewed::TimedOut),
        Ok(Err(panic)) => {
            let message = panic_message(panic.as_ref());
            all(&|| Renewed::Failed(message.clone()))
        }
        Ok(Ok(answers)) if answers.len() == leases.len() => {
            answers.into_iter().map(Renewed::Answer).collect()
        }
        Ok(Ok(answers)) => {
            let message = format!(
                "renew_many answered {} results for {} leases",
                answers.len(),
                leases.len()
            );
            all(&|| Renewed::Failed(message.clone()))
        }
    }
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("the renewal task panicked: {text}")
}

/// When a watchdog due to renew at `next_renew` may go out, at `now`, with its lease's local
/// deadline at `deadline`: a batched renewal up to [`MAX_LINGER`] early (never more than
/// 1/[`LINGER_SHARE`] of the time left), a lone one when due.
pub(crate) fn renew_now(
    next_renew: Instant,
    deadline: Instant,
    now: Instant,
    batched: bool,
) -> bool {
    let early = if batched {
        MAX_LINGER.min(deadline.saturating_duration_since(now) / LINGER_SHARE)
    } else {
        Duration::ZERO
    };
    next_renew <= now + early
}
