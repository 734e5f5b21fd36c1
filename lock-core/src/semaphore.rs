//! Semaphores: at most N holders of a name at once, each permit a lease of its own with its own
//! fencing token, watchdog and loss signal.

use std::fmt;
use std::num::NonZeroU32;
use std::ops::Deref;
use std::time::Duration;

use tokio::time::Instant;

use crate::{
    AcquireOptions, Error, IntoLockName, Lease, LeaseInfo, LockGuard, LockName, Locker, Wait,
};

/// How many permits of a semaphore may hold at once: 1 to [`PermitLimit::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PermitLimit(NonZeroU32);

impl PermitLimit {
    /// The largest limit (10,000): every acquire looks at the live permits, so the limit bounds
    /// the work of one grant on the server.
    pub const MAX: u32 = 10_000;

    /// A limit of `n` permits.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for 0 or more than [`PermitLimit::MAX`].
    pub fn new(n: u32) -> Result<Self, Error> {
        NonZeroU32::new(n)
            .filter(|n| n.get() <= Self::MAX)
            .map(Self)
            .ok_or_else(|| {
                Error::invalid(
                    "permit limit",
                    format!("{n} is outside 1..={} permits", Self::MAX),
                )
            })
    }

    /// The number of permits.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for PermitLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The permits of a semaphore that hold now ([`crate::LeaseStore::inspect_permits`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Permits {
    /// The limit the holders were granted under; `None` when nobody holds a permit.
    pub limit: Option<PermitLimit>,
    /// Each live permit, in token order: token, holder, time left by the server's clock, label.
    pub holders: Vec<LeaseInfo>,
}

impl Permits {
    /// The permits held under `limit` (backends build their answer with it).
    pub fn new(limit: Option<PermitLimit>, mut holders: Vec<LeaseInfo>) -> Self {
        holders.sort_by_key(|h| h.token);
        let limit = limit.filter(|_| !holders.is_empty());
        Self { limit, holders }
    }

    /// The time left of the permit that expires first; zero when none holds.
    pub fn next_expiry(&self) -> Duration {
        self.holders
            .iter()
            .map(|h| h.remaining)
            .min()
            .unwrap_or(Duration::ZERO)
    }
}

/// What [`crate::LeaseStore::try_acquire_permit_or_next_expiry`] answers.
#[derive(Clone, Debug)]
pub enum PermitAttempt {
    /// A permit was granted.
    Granted(Lease),
    /// Every permit is taken. The soonest of them runs out in `next_expiry` by the server's
    /// clock, unless its holder renews it first (zero when none holds any more: try again).
    Full {
        /// The time left of the permit that expires first.
        next_expiry: Duration,
    },
}

impl PermitAttempt {
    /// The permit, if one was granted: what [`crate::LeaseStore::try_acquire_permit`]
    /// answers.
    pub fn into_granted(self) -> Option<Lease> {
        match self {
            Self::Granted(lease) => Some(lease),
            Self::Full { .. } => None,
        }
    }
}

/// The error for a permit asked with a limit other than its holders': names both limits.
pub fn limit_mismatch(name: &LockName, held: PermitLimit, asked: PermitLimit) -> Error {
    Error::invalid(
        "permit limit",
        format!(
            "semaphore `{name}` is held with a limit of {held} permits; asked with {asked}: every \
             holder must use the same limit"
        ),
    )
}

/// A counting semaphore: at most [`Semaphore::limit`] permits of its name hold at once, across
/// every process that uses the store.
///
/// Each permit is a lease: it has its own holder, its own fencing token (above every earlier
/// permit's of the name), a TTL judged by the server's clock, and a [`PermitGuard`] with the
/// watchdog, loss signal and guarded run of a [`LockGuard`]. Pass the permit's token with the
/// writes it guards, as with a lock. Everyone using a semaphore must give the same limit: a
/// different one is [`Error::InvalidInput`] naming both, never more permits than either.
///
/// ```
/// # async fn demo() -> Result<(), fencelock_core::Error> {
/// use fencelock_core::{AcquireOptions, Locker, MemoryLeaseStore};
///
/// let locker = Locker::new(MemoryLeaseStore::new());
/// let exports = locker.semaphore("exports", 3)?; // at most 3 exports at once
/// let permit = exports.acquire(AcquireOptions::new()).await?;
/// let token = permit.token(); // fence this permit's writes with it
/// assert_eq!(exports.holders().await?.holders.len(), 1);
/// permit.release().await?;
/// # let _ = token; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Semaphore {
    locker: Locker,
    name: LockName,
    limit: PermitLimit,
}

impl Locker {
    /// The semaphore `name` with `limit` permits, run through this locker (its store,
    /// watchdogs and token regression checks). Semaphores and locks are separate: the
    /// semaphore `x` and the lock `x` never exclude each other.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name, or a limit of 0 or above [`PermitLimit::MAX`].
    ///
    /// # Behavior
    /// - `permit_limit_validation`: a limit of 0 or above [`PermitLimit::MAX`], a bad name, and
    ///   a TTL outside the store's limits are `InvalidInput`, before anything is granted.
    pub fn semaphore(&self, name: impl IntoLockName, limit: u32) -> Result<Semaphore, Error> {
        Ok(Semaphore {
            locker: self.clone(),
            name: name.into_lock_name()?,
            limit: PermitLimit::new(limit)?,
        })
    }
}

impl Semaphore {
    /// The semaphore's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// How many permits may hold at once.
    pub fn limit(&self) -> PermitLimit {
        self.limit
    }

    /// Takes a permit, waiting as `options` say (a release wakes one waiter), and starts its
    /// watchdog. Cancel-safe while waiting: dropping the future leaves no permit held.
    ///
    /// # Errors
    /// As [`Locker::acquire`]: [`Error::Timeout`] when the wait ran out, [`Error::InvalidInput`]
    /// when the holders use another limit, [`Error::Unsupported`] on a store without
    /// semaphores.
    ///
    /// # Behavior
    /// - `permit_guard_renews_and_reports_loss`: the guard's watchdog keeps a short permit
    ///   past its TTL, the store shows it among the holders, and a permit left without
    ///   renewal reports its loss through `lost()` and `is_valid()`.
    /// - `permit_stress_never_more_than_limit`: many tasks on a small limit, some holding past
    ///   the TTL without renewing, never have more than `limit` permits valid at one moment, and
    ///   every grant has its own token.
    pub async fn acquire(&self, options: AcquireOptions) -> Result<PermitGuard, Error> {
        let guard = self
            .locker
            .take_or_timeout(&self.name, Some(self.limit), &options)
            .await?;
        Ok(PermitGuard { guard })
    }

    /// Takes a permit if one is free right now; never waits. `Ok(None)` when all are taken.
    ///
    /// # Errors
    /// As [`Semaphore::acquire`], except that a full semaphore is `Ok(None)`.
    pub async fn try_acquire(&self, options: AcquireOptions) -> Result<Option<PermitGuard>, Error> {
        let guard = self
            .locker
            .take(
                &self.name,
                Some(self.limit),
                &options,
                Wait::No,
                Instant::now(),
            )
            .await?;
        Ok(guard.map(|guard| PermitGuard { guard }))
    }

    /// The permits that hold now, by the store's clock. A snapshot, for operators and tools.
    ///
    /// # Errors
    /// The store's errors ([`crate::LeaseStore::inspect_permits`]).
    pub async fn holders(&self) -> Result<Permits, Error> {
        self.locker.store().inspect_permits(&self.name).await
    }
}

/// One held permit of a [`Semaphore`]: everything a [`LockGuard`] does (dereference it for
/// `token()`, `deadline()`, `is_valid()`, `check()`, `lost()`, `cancellation_token()`, `run()`,
/// `on_lost()`), and [`PermitGuard::release`]. Dropping it releases the permit in the
/// background.
#[derive(Debug)]
pub struct PermitGuard {
    guard: LockGuard,
}

impl PermitGuard {
    /// Stops renewal and frees the permit for the next waiter.
    ///
    /// # Errors
    /// As [`LockGuard::release`]: [`Error::LeaseLost`] when the permit had been lost before.
    pub async fn release(self) -> Result<(), Error> {
        self.guard.release().await
    }

    /// The guard underneath.
    pub fn into_guard(self) -> LockGuard {
        self.guard
    }
}

impl Deref for PermitGuard {
    type Target = LockGuard;

    fn deref(&self) -> &LockGuard {
        &self.guard
    }
}
