//! `Locker`: the client users call. Waiting, renewal, loss signals and regression checks live
//! here once, over any `LeaseStore`.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tracing::Instrument;

use crate::guard::Shared;
use crate::lock;
use crate::metrics;
use crate::seen::{DEFAULT_NAMES, Seen};
use crate::wait::WaitPolicy;
use crate::watchdog::{Dog, Watchdogs};
use crate::{
    AcquireOptions, Error, FencingToken, IntoLockName, Lease, LeaseStore, LockGuard, LockName,
    OwnerLabel, PermitLimit, Wait,
};

/// Takes locks on a [`LeaseStore`] and keeps them: the client most users want.
///
/// ```
/// use std::time::Duration;
/// use fencelock_core::{AcquireOptions, FenceGate, Locker, MemoryLeaseStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), fencelock_core::Error> {
/// let locker = Locker::new(MemoryLeaseStore::new());
/// let gate = FenceGate::new(); // stands in for your database's fenced write
/// let guard = locker
///     .acquire("jobs/nightly", AcquireOptions::new().with_ttl(Duration::from_secs(10)))
///     .await?;
/// gate.admit("report", guard.token())?; // every write carries the token
/// guard.release().await?;
/// # Ok(()) }
/// ```
///
/// Cloning is cheap; clones share the store, the regression memory and the watchdogs.
///
/// # Renewal
/// Each guard's watchdog renews its lease every [`AcquireOptions::with_renew_interval`] (a third of
/// the TTL by default). The watchdogs are not a task per guard: each runtime that takes locks
/// through a locker gets one timer queue, whose driver task wakes when a lease is due, so
/// acquire and release spawn and wake nothing. Guards held when the locker is dropped keep
/// being renewed; guards taken on a runtime that shuts down report their watchdog gone.
///
/// Renewals that come due within about 2 ms of each other (never more than a fiftieth of the
/// time their lease has left) go to the store together, through [`LeaseStore::renew_many`]: one
/// pipeline on Redis, one statement on PostgreSQL, one keepalive stream on etcd. Each runtime's
/// queue batches its own guards' renewals. Each guard still gets its own answer and its own loss
/// signal. [`Locker::with_renewal_batching`] turns this off.
///
/// Every `# Behavior` bullet here and on [`LockGuard`] is a case of the same name in
/// `fencelock-conformance`, run over every store, as those of [`LeaseStore`] are.
#[derive(Clone, Debug)]
pub struct Locker {
    store: Arc<dyn LeaseStore>,
    seen: Arc<Mutex<Seen>>,
    /// The highest permit token seen per semaphore: a separate sequence from the locks'.
    seen_permits: Arc<Mutex<Seen>>,
    watchdogs: Arc<Watchdogs>,
}

impl Locker {
    /// A locker over `store`.
    pub fn new(store: impl LeaseStore + 'static) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A locker over a shared store.
    pub fn from_arc(store: Arc<dyn LeaseStore>) -> Self {
        Self {
            watchdogs: Arc::new(Watchdogs::new(Arc::clone(&store), true)),
            store,
            seen: Arc::new(Mutex::new(Seen::new(DEFAULT_NAMES))),
            seen_permits: Arc::new(Mutex::new(Seen::new(DEFAULT_NAMES))),
        }
    }

    /// Whether watchdogs batch their renewals (on by default; see [Renewal](#renewal)). Off,
    /// each watchdog calls [`LeaseStore::renew`] alone. Guards already held keep the setting
    /// they were taken with.
    #[must_use]
    pub fn with_renewal_batching(mut self, on: bool) -> Self {
        self.watchdogs = Arc::new(Watchdogs::new(Arc::clone(&self.store), on));
        self
    }

    /// How many lock names this locker remembers the highest token of, for its regression check
    /// (65,536 by default). At least the latest half of them are always remembered; older names
    /// are forgotten, so memory stays bounded when every job locks a fresh name. Clones made
    /// before this call keep the memory they share.
    #[must_use]
    pub fn with_token_memory(mut self, names: usize) -> Self {
        self.seen = Arc::new(Mutex::new(Seen::new(names)));
        self.seen_permits = Arc::new(Mutex::new(Seen::new(names)));
        self
    }

    /// Whether watchdogs batch their renewals.
    pub fn renewal_batching(&self) -> bool {
        self.watchdogs.batching()
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn LeaseStore> {
        &self.store
    }

    /// Takes `name`, waiting as `options` say, and starts its watchdog.
    ///
    /// Cancel-safe while waiting: dropping the future leaves nothing held.
    ///
    /// # Errors
    /// [`Error::Timeout`] when the wait ran out (or, with [`Wait::No`], the lock is held);
    /// [`Error::InvalidInput`] for a bad name, TTL or renew interval; [`Error::TokenRegression`]
    /// when the store granted a token not above one this locker saw before for the name (the
    /// grant is released, not used); the store's errors otherwise.
    ///
    /// # Behavior
    /// - `name_validation`: an empty, oversized or control-character name is `InvalidInput`,
    ///   before any store call.
    /// - `label_validation`: an empty, oversized or control-character [`crate::OwnerLabel`] is
    ///   `InvalidInput`; the grant carries the options' label, host and pid by default
    ///   ([`AcquireOptions::with_label`], [`AcquireOptions::without_label`]).
    /// - `watchdog_keeps_lease_alive`: the guard's watchdog renews a short lease across several
    ///   TTLs: the guard stays valid, its deadline moves on, and the store still shows it as
    ///   the holder and refuses everyone else.
    /// - `contention_stress_no_stale_write_accepted`: holders that outlive their TTL without
    ///   renewing (a paused process) are told so by their guard once the deadline passed, every
    ///   grant carries its own token, and a fence fed those tokens rejects every late write
    ///   and loses none.
    pub async fn acquire(
        &self,
        name: impl IntoLockName,
        options: AcquireOptions,
    ) -> Result<LockGuard, Error> {
        let name = name.into_lock_name()?;
        self.take_or_timeout(&name, None, &options).await
    }

    /// Takes `name` if it is free right now, and starts its watchdog; never waits, whatever
    /// `options` say about waiting (as tokio's `try_*` methods). Contention is a value:
    /// `Ok(None)` when someone else holds the lock.
    ///
    /// # Errors
    /// As [`Locker::acquire`], except that a held lock is `Ok(None)`.
    pub async fn try_acquire(
        &self,
        name: impl IntoLockName,
        options: AcquireOptions,
    ) -> Result<Option<LockGuard>, Error> {
        let name = name.into_lock_name()?;
        self.take(&name, None, &options, Wait::No, Instant::now())
            .await
    }

    /// [`Locker::take`], waiting as `options` say; nothing granted in that time is
    /// [`Error::Timeout`]. The waiting acquire of a lock and of a permit.
    pub(crate) async fn take_or_timeout(
        &self,
        name: &LockName,
        permits: Option<PermitLimit>,
        options: &AcquireOptions,
    ) -> Result<LockGuard, Error> {
        let started = Instant::now();
        match self
            .take(name, permits, options, options.wait(), started)
            .await?
        {
            Some(guard) => Ok(guard),
            None => Err(Error::Timeout {
                name: name.clone(),
                waited: started.elapsed(),
            }),
        }
    }

    /// The one acquire path, of a lock or (with `permits`) of a semaphore's permit: the name is
    /// validated by the caller, the TTL by the store (once, before anything is sent), the renew
    /// and poll intervals here.
    pub(crate) async fn take(
        &self,
        name: &LockName,
        permits: Option<PermitLimit>,
        options: &AcquireOptions,
        wait: Wait,
        started: Instant,
    ) -> Result<Option<LockGuard>, Error> {
        let ttl = options.ttl();
        let every = options.renew_every()?;
        let poll_interval = options.checked_poll_interval()?;
        let span = tracing::info_span!(
            "fencelock.acquire",
            lock = %name,
            backend = self.store.backend(),
            ttl_ms = ttl.as_millis() as u64,
            token = tracing::field::Empty,
        );
        async {
            let backend = self.store.backend();
            let label = options.label();
            let result = self
                .acquire_lease(
                    name,
                    permits,
                    ttl,
                    label.as_ref(),
                    wait,
                    poll_interval,
                    started,
                )
                .await;
            let outcome = match &result {
                Ok(Some(_)) => "acquired",
                Ok(None) => "timeout",
                Err(_) => "error",
            };
            metrics::acquire_finished(backend, outcome, started.elapsed());
            let waited_ms = started.elapsed().as_millis() as u64;
            let Some(lease) = result? else {
                tracing::debug!(waited_ms, "not acquired");
                return Ok(None);
            };
            if wait != Wait::No {
                metrics::waited(backend, started.elapsed());
            }
            tracing::Span::current().record("token", lease.token().get());
            if let Err(error) = self.record_token(&lease) {
                tracing::error!(%error, "token regression");
                metrics::token_regression(backend);
                let store = Arc::clone(&self.store);
                tokio::spawn(async move { store.release(&lease).await });
                return Err(error);
            }
            tracing::debug!(waited_ms, "acquired");
            Ok(Some(self.guard(lease, ttl, every)))
        }
        .instrument(span)
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn acquire_lease(
        &self,
        name: &LockName,
        permits: Option<PermitLimit>,
        ttl: std::time::Duration,
        label: Option<&OwnerLabel>,
        wait: Wait,
        poll_interval: std::time::Duration,
        started: Instant,
    ) -> Result<Option<Lease>, Error> {
        let until = match (wait, permits) {
            (Wait::No, None) => return self.store.try_acquire_as(name, ttl, label).await,
            (Wait::No, Some(limit)) => {
                return self.store.try_acquire_permit(name, limit, ttl, label).await;
            }
            // A timeout too large for the clock means "forever", never "no wait".
            (Wait::Timeout(timeout), _) => started.checked_add(timeout),
            (Wait::Forever, _) => None,
        };
        let policy = WaitPolicy {
            until,
            poll_interval,
        };
        match permits {
            None => self.store.acquire_waiting(name, ttl, label, policy).await,
            Some(limit) => {
                self.store
                    .acquire_permit_waiting(name, limit, ttl, label, policy)
                    .await
            }
        }
    }

    /// Runs `work` under `name`: acquires, hands `work` the fencing token, cancels `work` if the
    /// lease is lost, and releases when it finishes.
    ///
    /// # Errors
    /// The errors of [`Locker::acquire`]; [`Error::LostDuringWork`] with the token when the lease
    /// was lost before `work` finished (compensate for what it did).
    pub async fn with_lock<F, Fut>(
        &self,
        name: impl IntoLockName,
        options: AcquireOptions,
        work: F,
    ) -> Result<Fut::Output, Error>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future,
    {
        let guard = self.acquire(name, options).await?;
        let out = guard.run(work(guard.token())).await?;
        if let Err(error) = guard.release().await {
            // The work finished while the lease held; its writes carried the token.
            tracing::warn!(%error, "work finished but the release failed");
        }
        Ok(out)
    }

    /// The highest token this locker has seen for `name`, if it still remembers the name (see
    /// [`Locker::with_token_memory`]).
    pub fn last_token(&self, name: &LockName) -> Option<FencingToken> {
        lock(&self.seen).get(name)
    }

    fn record_token(&self, lease: &Lease) -> Result<(), Error> {
        let seen = if lease.permit_limit().is_some() {
            &self.seen_permits
        } else {
            &self.seen
        };
        let mut seen = lock(seen);
        match seen.get(lease.name()) {
            Some(prev) if lease.token() <= prev => Err(Error::TokenRegression {
                name: lease.name().clone(),
                seen: prev,
                got: lease.token(),
            }),
            _ => {
                seen.insert(lease.name(), lease.token());
                Ok(())
            }
        }
    }

    fn guard(
        &self,
        lease: Lease,
        ttl: std::time::Duration,
        every: Option<std::time::Duration>,
    ) -> LockGuard {
        let shared = Shared::new(lease, Dog::schedule(ttl, every));
        self.watchdogs.start(Dog::new(Arc::clone(&shared)));
        LockGuard::new(Arc::clone(&self.store), shared)
    }
}
