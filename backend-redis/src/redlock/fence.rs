//! Fenced writes on Redlock's servers: a write is admitted iff a majority admitted it, and a
//! read takes the newest answer of a majority (writing it back when the majority disagrees).
//!
//! Why this keeps "no lower token lands after a higher one" for reads, and what the stamps
//! and the write-back are for, is argued in the [module docs](crate::redlock) (`REDLOCK.md`,
//! "Fenced writes on the servers").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fencelock_core::{Error, Fence, FencedValue, FencingToken, Operation};

use super::quorum::{REDLOCK, Replies, no_majority, quorum};
use super::store::{Inner, RedlockLeaseStore};
use crate::fence::{Stored, check, check_key, stale, stored, verdict};
use crate::scripts::{Call, SCRIPTS};

/// The [`Fence`] on a Redlock store's servers (from [`RedlockLeaseStore::fence`]).
///
/// Each server holds the fenced key as a hash (`value`, `fence_token`, `fence_stamp`).
/// [`Fence::write`] runs the fenced set script on every server at once, each within the
/// store's server timeout: admitted iff a majority admitted, [`Error::StaleToken`] (naming
/// the highest mark seen) iff a majority rejected, `OutcomeUnknown` or `Unavailable` when
/// neither. [`Fence::read`] returns the newest answer of a majority. The [module
/// docs](crate::redlock) argue why no lower token lands after a higher one. Keys get no
/// prefix.
#[derive(Clone)]
pub struct RedlockFence {
    inner: Arc<Inner>,
}

impl RedlockLeaseStore {
    /// A handle for fenced writes on this store's servers, through its connections.
    pub fn fence(&self) -> RedlockFence {
        RedlockFence {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl RedlockFence {
    /// Runs the fenced set script with `stamp` on every server until a majority admitted or
    /// a majority rejected (or every server answered or timed out).
    async fn set_all(
        &self,
        op: Operation,
        key: &str,
        token: FencingToken,
        stamp: u64,
        value: &[u8],
    ) -> Replies<Option<FencingToken>> {
        let q = quorum(self.inner.instances.len());
        let call = Call::new(&SCRIPTS.redlock_fenced_set, &[key])
            .arg(token.get())
            .arg(stamp)
            .arg(value);
        self.inner
            .ask_all(op, call, self.inner.server_timeout, verdict, |r| {
                r.count(Option::is_none) >= q || r.count(Option::is_some) >= q
            })
            .await
    }
}

#[async_trait]
impl Fence for RedlockFence {
    fn backend(&self) -> &'static str {
        REDLOCK
    }

    /// # Errors
    /// As [`Fence::write`]; `OutcomeUnknown` when some servers admitted the write but no
    /// majority answered either way (a later read may or may not see it).
    async fn write(&self, key: &str, token: FencingToken, value: &[u8]) -> Result<(), Error> {
        check(key, token)?;
        let op = Operation::FencedWrite;
        let n = self.inner.instances.len();
        let q = quorum(n);
        let replies = self.set_all(op, key, token, next_stamp(), value).await;
        let admitted = replies.count(Option::is_none);
        let marks: Vec<FencingToken> = replies.ok.iter().filter_map(|(_, m)| *m).collect();
        if admitted >= q {
            return Ok(());
        }
        if marks.len() >= q {
            let high_water = marks.iter().copied().max().unwrap_or(token);
            return Err(stale(REDLOCK, key, token, high_water));
        }
        if admitted > 0 {
            return Err(Error::outcome_unknown(
                REDLOCK,
                op,
                format!(
                    "the write to `{key}` was admitted by {admitted} and rejected by {} of {n} servers ({q} needed); {} failed, so it may or may not be seen",
                    marks.len(),
                    replies.failed.len()
                ),
            ));
        }
        Err(no_majority(op, n, replies.failed))
    }

    /// # Errors
    /// `Unavailable` / `OutcomeUnknown` when no majority answered (or, when the answers
    /// disagreed, no majority took the newest one back).
    async fn read(&self, key: &str) -> Result<Option<FencedValue>, Error> {
        check_key(key)?;
        let op = Operation::FencedRead;
        let n = self.inner.instances.len();
        let q = quorum(n);
        let read = Call::new(&SCRIPTS.fenced_get, &[key]);
        let replies = self
            .inner
            .ask_all(op, read, self.inner.server_timeout, stored, |r| {
                r.ok.len() >= q
            })
            .await;
        if replies.ok.len() < q {
            return Err(no_majority(op, n, replies.failed));
        }
        let Some(newest) = newest(&replies) else {
            // No majority member holds anything, so no write was ever admitted.
            return Ok(None);
        };
        if replies.count(|s| s.as_ref() == Some(&newest)) >= q {
            return Ok(Some(newest.value));
        }
        let (token, value) = (newest.value.token, &newest.value.value);
        let back = self.set_all(op, key, token, newest.stamp, value).await;
        // Every server that answered now holds the newest answer or a later write.
        if back.ok.len() < q {
            return Err(no_majority(op, n, back.failed));
        }
        Ok(Some(newest.value))
    }
}

/// The newest of the answers, by (token, stamp).
fn newest(replies: &Replies<Option<Stored>>) -> Option<Stored> {
    replies
        .ok
        .iter()
        .filter_map(|(_, s)| s.as_ref())
        .max_by_key(|s| s.order())
        .cloned()
}

/// A stamp for the next write: the wall clock in µs, and above every stamp this process
/// handed out before. The clock (rather than a counter alone) keeps a restarted process's
/// writes newer than its earlier ones.
fn next_stamp() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let step = |last: u64| Some(now.max(last + 1).min(FencingToken::MAX_EXACT));
    match LAST.fetch_update(Ordering::Relaxed, Ordering::Relaxed, step) {
        Ok(last) | Err(last) => step(last).unwrap_or(FencingToken::MAX_EXACT),
    }
}

impl std::fmt::Debug for RedlockFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedlockFence")
            .field("servers", &self.inner.instances)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_rise_and_follow_the_clock() {
        let a = next_stamp();
        let b = next_stamp();
        assert!(b > a);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or_default();
        assert!(u128::from(b) + 1_000_000 > now, "{b} vs {now}");
        assert!(b <= FencingToken::MAX_EXACT);
    }

    #[test]
    fn the_newest_answer_wins_by_token_then_stamp() {
        let at = |token: u64, stamp: u64, value: &str| {
            Some(Stored {
                value: FencedValue::new(value.as_bytes().to_vec(), FencingToken::new(token)),
                stamp,
            })
        };
        let replies = Replies {
            ok: vec![(0, at(5, 90, "old")), (1, None), (2, at(5, 91, "new"))],
            failed: Vec::new(),
            pending: Vec::new(),
        };
        assert_eq!(
            newest(&replies).map(|s| s.value.value),
            Some(b"new".to_vec())
        );
        let replies = Replies {
            ok: vec![(0, at(6, 1, "higher token")), (1, at(5, 99, "later stamp"))],
            failed: Vec::new(),
            pending: Vec::new(),
        };
        assert_eq!(
            newest(&replies).map(|s| s.value.value),
            Some(b"higher token".to_vec())
        );
        let none: Replies<Option<Stored>> = Replies {
            ok: vec![(0, None), (1, None)],
            failed: Vec::new(),
            pending: Vec::new(),
        };
        assert_eq!(newest(&none), None);
    }
}
