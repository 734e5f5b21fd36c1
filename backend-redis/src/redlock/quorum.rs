//! Majorities: asking every server at once, stopping as soon as the answer is known, the
//! validity budget, and the error when no majority answered.

use std::future::Future;
use std::time::Duration;

use fencelock_core::backend::safety_margin;
use fencelock_core::{Error, ErrorKind, Operation};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

/// The backend name of Redlock stores in errors, logs and metrics.
pub(crate) const REDLOCK: &str = "redlock";

/// The smallest majority of `n` servers.
pub(crate) const fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// The answers collected so far from `n` servers.
#[derive(Debug)]
pub(crate) struct Replies<T> {
    /// Servers that answered, with their answer.
    pub(crate) ok: Vec<(usize, T)>,
    /// Servers that failed or did not answer in time.
    pub(crate) failed: Vec<(usize, Error)>,
    /// Servers still being waited for when the collection stopped.
    pub(crate) pending: Vec<usize>,
}

impl<T> Replies<T> {
    /// How many answers satisfy `pred`.
    pub(crate) fn count(&self, pred: impl Fn(&T) -> bool) -> usize {
        self.ok.iter().filter(|(_, t)| pred(t)).count()
    }
}

/// Sends `call(i)` to every server `i` in `0..n` at once and collects the answers until
/// `settled` says the outcome is known (or every server answered or timed out).
///
/// Every request runs in a task of its own and to its end, also after this returns: a release
/// that the quorum no longer waits for still happens (including its `NOSCRIPT` reload). A later
/// request to the same server may overtake it (the reload costs two round trips, and a task may
/// be scheduled late), so the next acquire can find the old grant still there and be refused
/// by that server; nothing depends on that order, since every script compares holder and token.
/// Each `call` carries its own time limit, so one silent server delays nothing past that limit.
pub(crate) async fn gather<T, F, Fut>(
    n: usize,
    call: F,
    mut settled: impl FnMut(&Replies<T>) -> bool,
) -> Replies<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    let mut out: FuturesUnordered<_> = (0..n)
        .map(|i| {
            let request = tokio::spawn(call(i));
            async move {
                let answer = request.await.unwrap_or_else(|e| {
                    Err(Error::outcome_unknown(
                        REDLOCK,
                        Operation::Connect,
                        format!("the request task failed: {e}"),
                    ))
                });
                (i, answer)
            }
        })
        .collect();
    let mut replies = Replies {
        ok: Vec::with_capacity(n),
        failed: Vec::new(),
        pending: (0..n).collect(),
    };
    while let Some((i, answer)) = out.next().await {
        replies.pending.retain(|&p| p != i);
        match answer {
            Ok(value) => replies.ok.push((i, value)),
            Err(error) => replies.failed.push((i, error)),
        }
        if settled(&replies) {
            break;
        }
    }
    replies
}

/// The clock-drift allowance for `ttl`: `ttl × factor + 2 ms`.
pub(crate) fn drift(ttl: Duration, factor: f64) -> Duration {
    ttl.mul_f64(factor) + Duration::from_millis(2)
}

/// Redlock's validity: `ttl − elapsed − drift`, or `None` when nothing is left.
pub(crate) fn validity(ttl: Duration, elapsed: Duration, drift: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed)?
        .checked_sub(drift)
        .filter(|v| !v.is_zero())
}

/// The instant to pass as `sent_at` to `granted_lease`/`renewed_lease` with `ttl`, so that the
/// lease's deadline (`sent_at + ttl − safety_margin(ttl)`) is exactly `first_sent + validity`.
/// `None` if that instant cannot be represented (then the grant is not used).
pub(crate) fn backdated(first_sent: Instant, ttl: Duration, validity: Duration) -> Option<Instant> {
    first_sent
        .checked_add(validity + safety_margin(ttl))?
        .checked_sub(ttl)
}

/// The error when too few servers answered for a majority decision: `OutcomeUnknown` if any of
/// them may have applied the request, `Unavailable` if none did, else the first other failure.
pub(crate) fn no_majority(op: Operation, n: usize, failed: Vec<(usize, Error)>) -> Error {
    let kinds: Vec<ErrorKind> = failed.iter().map(|(_, e)| e.kind()).collect();
    let source = NoMajority {
        n,
        failures: failed.into_iter().map(|(_, e)| e).collect(),
    };
    if kinds.contains(&ErrorKind::OutcomeUnknown) {
        Error::outcome_unknown(REDLOCK, op, source)
    } else if kinds.iter().all(|k| *k == ErrorKind::Unavailable) {
        Error::unavailable(REDLOCK, op, source)
    } else {
        Error::backend(REDLOCK, op, source)
    }
}

/// Which servers failed, and how.
#[derive(Debug)]
struct NoMajority {
    n: usize,
    failures: Vec<Error>,
}

impl std::fmt::Display for NoMajority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no majority of the {} servers ({} needed) answered; {} failed: ",
            self.n,
            quorum(self.n),
            self.failures.len()
        )?;
        for (i, e) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NoMajority {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failures
            .first()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities() {
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(5), 3);
        assert_eq!(quorum(7), 4);
    }

    #[test]
    fn validity_budget() {
        let ttl = Duration::from_secs(10);
        let d = drift(ttl, 0.01);
        assert_eq!(d, Duration::from_millis(102));
        assert_eq!(
            validity(ttl, Duration::from_millis(8), d),
            Some(Duration::from_millis(9_890))
        );
        assert_eq!(validity(ttl, Duration::from_millis(9_898), d), None);
        assert_eq!(validity(ttl, Duration::from_secs(11), d), None);
        assert_eq!(drift(ttl, 0.0), Duration::from_millis(2));
    }

    #[tokio::test(start_paused = true)]
    async fn backdated_send_makes_the_deadline_first_sent_plus_validity() {
        use fencelock_core::{FencingToken, HolderId, LockName};
        for (ttl_ms, factor, elapsed_ms) in [(10_000, 0.01, 7), (300, 0.01, 1), (1_000, 0.2, 30)] {
            let ttl = Duration::from_millis(ttl_ms);
            let sent = Instant::now();
            tokio::time::advance(Duration::from_millis(elapsed_ms)).await;
            let v = validity(ttl, sent.elapsed(), drift(ttl, factor)).unwrap();
            let lease = fencelock_core::backend::granted_lease(
                LockName::new("n").unwrap(),
                FencingToken::new(1),
                HolderId::random(),
                ttl,
                backdated(sent, ttl, v).unwrap(),
            );
            assert_eq!(lease.deadline(), sent + v, "{ttl_ms} {factor}");
            assert_eq!(lease.ttl(), ttl);
            let renewed = fencelock_core::backend::renewed_lease(
                &lease,
                ttl,
                backdated(sent, ttl, v).unwrap(),
            );
            assert_eq!(renewed.deadline(), sent + v);
        }
    }

    #[test]
    fn no_majority_classification() {
        let unknown = || Error::outcome_unknown("redis", Operation::Acquire, "timeout");
        let down = || Error::unavailable("redis", Operation::Acquire, "refused");
        let bad = || Error::backend("redis", Operation::Acquire, "WRONGTYPE");
        let cases = [
            (vec![down(), down()], ErrorKind::Unavailable),
            (vec![down(), unknown()], ErrorKind::OutcomeUnknown),
            (vec![bad(), down()], ErrorKind::Backend),
            (vec![bad(), unknown()], ErrorKind::OutcomeUnknown),
        ];
        for (failures, kind) in cases {
            let failed = failures.into_iter().enumerate().collect();
            let err = no_majority(Operation::Acquire, 3, failed);
            assert_eq!(err.kind(), kind, "{err}");
            assert!(
                err.to_string().contains("no majority of the 3 servers"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn gather_stops_once_settled_and_never_waits_for_the_slow() {
        let started = Instant::now();
        let replies = gather(
            3,
            |i| async move {
                if i == 2 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                Ok::<_, Error>(i)
            },
            |r| r.ok.len() >= 2,
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(replies.ok.len(), 2);
        assert_eq!(replies.pending, vec![2]);
    }
}
