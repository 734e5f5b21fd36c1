//! Waiting for a lock: the one generic loop (push wake-ups, holder TTL, jittered polling).

use std::time::Duration;

use rand::Rng;
use tokio::time::{Instant, sleep_until};

use std::future::Future;

use crate::wake::ReleaseWatch;
use crate::{Error, Lease, LeaseStore, LockName, OwnerLabel, PermitAttempt, PermitLimit};

/// How a waiting acquire behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Give up at this instant; `None` waits forever.
    pub until: Option<Instant>,
    /// The longest a waiter sleeps between attempts when nothing wakes it. With push wake-ups
    /// this only matters if a notification is lost; without them it caps the polling backoff.
    pub poll_interval: Duration,
}

impl WaitPolicy {
    /// The default poll interval (1 s).
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

    /// Waits until `until` (or forever) with the default poll interval.
    pub fn until(until: Option<Instant>) -> Self {
        Self {
            until,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
        }
    }
}

/// The longest single sleep of a waiter (it re-checks at least this often).
const MAX_NAP: Duration = Duration::from_secs(3600);

/// The first sleep of a waiter without push wake-ups; doubles up to the poll interval.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);

/// The generic waiting acquire behind [`LeaseStore::acquire_waiting`].
///
/// Subscribes first, then loops: try; if held, learn the holder's remaining TTL and sleep until
/// a notification, that TTL (plus jitter), the backoff or the deadline. Cancel-safe while it
/// sleeps; a drop during a request in flight is like a lost reply (the grant, if any, expires).
pub async fn acquire_with_polling<S: LeaseStore + ?Sized>(
    store: &S,
    name: &LockName,
    ttl: Duration,
    label: Option<&OwnerLabel>,
    policy: WaitPolicy,
) -> Result<Option<Lease>, Error> {
    let watch = subscribe(name, store.watch_released(name).await);
    wait_loop(
        name,
        watch,
        policy,
        || async {
            Ok(match store.try_acquire_as(name, ttl, label).await? {
                Some(lease) => Tried::Granted(lease),
                None => Tried::Refused(None),
            })
        },
        || async {
            Ok(store
                .inspect(name)
                .await?
                .map_or(Duration::ZERO, |info| info.remaining))
        },
    )
    .await
}

/// The generic waiting acquire of a semaphore's permit behind
/// [`LeaseStore::acquire_permit_waiting`]: [`acquire_with_polling`]'s loop, subscribed with
/// [`LeaseStore::watch_permits`], sleeping at most until the soonest holder's TTL runs out.
/// Each attempt is one [`LeaseStore::try_acquire_permit_or_next_expiry`], which answers that
/// time itself: a refusal costs no second request.
pub async fn acquire_permit_with_polling<S: LeaseStore + ?Sized>(
    store: &S,
    name: &LockName,
    limit: PermitLimit,
    ttl: Duration,
    label: Option<&OwnerLabel>,
    policy: WaitPolicy,
) -> Result<Option<Lease>, Error> {
    let watch = subscribe(name, store.watch_permits(name).await);
    wait_loop(
        name,
        watch,
        policy,
        || async {
            Ok(
                match store
                    .try_acquire_permit_or_next_expiry(name, limit, ttl, label)
                    .await?
                {
                    PermitAttempt::Granted(lease) => Tried::Granted(lease),
                    PermitAttempt::Full { next_expiry } => Tried::Refused(Some(next_expiry)),
                },
            )
        },
        // Never asked: every refusal above says how long the soonest holder has left.
        || async { Ok(Duration::ZERO) },
    )
    .await
}

/// One attempt of a waiter.
enum Tried {
    Granted(Lease),
    /// Refused; with the holder's time left if the attempt learned it (else the loop asks).
    Refused(Option<Duration>),
}

fn subscribe(name: &LockName, watch: Result<Option<ReleaseWatch>, Error>) -> Option<ReleaseWatch> {
    watch.unwrap_or_else(|error| {
        tracing::warn!(lock = %name, %error, "push wake-ups unavailable; polling");
        None
    })
}

/// Tries, and while refused sleeps until a notification, the holder's time left (plus
/// jitter), the backoff or the deadline. The time left is the refusal's own, or else what
/// `holder_left` answers.
async fn wait_loop<A, AF, H, HF>(
    name: &LockName,
    mut watch: Option<ReleaseWatch>,
    policy: WaitPolicy,
    mut attempt: A,
    mut holder_left: H,
) -> Result<Option<Lease>, Error>
where
    A: FnMut() -> AF,
    AF: Future<Output = Result<Tried, Error>>,
    H: FnMut() -> HF,
    HF: Future<Output = Result<Duration, Error>>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let known = match attempt().await? {
            Tried::Granted(lease) => return Ok(Some(lease)),
            Tried::Refused(known) => known,
        };
        let now = Instant::now();
        if policy.until.is_some_and(|until| now >= until) {
            return Ok(None);
        }
        let holder_left = match known {
            Some(left) => left,
            None => holder_left().await?,
        };
        let nap = if watch.is_some() {
            holder_left.min(policy.poll_interval)
        } else {
            let nap = holder_left.min(backoff);
            backoff = (backoff * 2).min(policy.poll_interval);
            nap
        };
        // Bounded so that no poll interval, however large, can overflow the clock.
        let nap = nap.min(MAX_NAP);
        let mut wake_at = now + with_jitter(nap);
        if let Some(until) = policy.until {
            wake_at = wake_at.min(until);
        }
        tracing::trace!(lock = %name, nap_ms = nap.as_millis() as u64, "waiting");
        match watch.as_mut() {
            Some(w) => {
                tokio::select! {
                    open = w.notified() => if !open {
                        tracing::debug!(lock = %name, "push wake-ups closed; polling");
                        watch = None;
                    },
                    () = sleep_until(wake_at) => {}
                }
            }
            None => sleep_until(wake_at).await,
        }
    }
}

/// `d` plus up to 10 % (at least 1 ms) of random jitter, so waiters do not poll in lockstep.
pub fn with_jitter(d: Duration) -> Duration {
    let spread = (d / 10).max(Duration::from_millis(1));
    let extra = rand::rng().random_range(Duration::ZERO..=spread);
    d + extra
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = with_jitter(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(110));
        }
        assert!(with_jitter(Duration::ZERO) <= Duration::from_millis(1));
    }
}
