//! What a backend hands the suite: a store, its timing, and whatever must outlive the case.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fencelock_core::{
    AcquireOptions, Error, FencingToken, Lease, LeaseInfo, LeaseStore, LockGuard, LockName, Locker,
};

use crate::settle::{self, ForceReleased};

/// A store under test, with the timing the suite may rely on.
pub struct Fixture {
    store: Arc<dyn LeaseStore>,
    short_ttl: Duration,
    keep: Vec<Box<dyn Any + Send + Sync>>,
}

impl Fixture {
    /// The short TTL used by default (300 ms): cases wait 2–3 of them for an expiry.
    pub const DEFAULT_SHORT_TTL: Duration = Duration::from_millis(300);

    /// A fixture over `store`.
    pub fn new(store: impl LeaseStore + 'static) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A fixture over a shared store.
    pub fn from_arc(store: Arc<dyn LeaseStore>) -> Self {
        Self {
            store,
            short_ttl: Self::DEFAULT_SHORT_TTL,
            keep: Vec::new(),
        }
    }

    /// The shortest TTL the backend honours precisely enough to wait out (etcd: whole seconds).
    pub fn with_short_ttl(mut self, ttl: Duration) -> Self {
        self.short_ttl = ttl;
        self
    }

    /// Keeps `value` (a server handle, say) alive for as long as the case runs.
    pub fn keep_alive(mut self, value: impl Any + Send + Sync) -> Self {
        self.keep.push(Box::new(value));
        self
    }
}

/// One case's view: the fixture plus a random name prefix, so cases never share locks.
///
/// Its store calls are settled ([`crate::settle`]): a transient error is asked again until the
/// store answers definitely, and what a failed attempt left behind is resolved. For that the
/// context remembers the highest token it has seen per name: a holder above it, after an
/// acquire failed transiently, is that attempt's orphaned grant.
pub struct Ctx {
    fixture: Fixture,
    prefix: String,
    seen: Mutex<HashMap<LockName, FencingToken>>,
}

impl Ctx {
    /// Wraps a fixture with a fresh random prefix.
    pub fn new(fixture: Fixture) -> Self {
        let prefix = format!("fl-test/{:016x}/", rand::random::<u64>());
        Self {
            fixture,
            prefix,
            seen: Mutex::default(),
        }
    }

    /// The store under test.
    pub fn store(&self) -> &Arc<dyn LeaseStore> {
        &self.fixture.store
    }

    /// A new [`Locker`] over the store (each has its own regression memory).
    pub fn locker(&self) -> Locker {
        Locker::from_arc(Arc::clone(&self.fixture.store))
    }

    /// The short TTL cases wait out.
    pub fn short_ttl(&self) -> Duration {
        self.fixture.short_ttl
    }

    /// A TTL no case waits out (60 s).
    pub fn long_ttl(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// How long to sleep so that a `short_ttl` lease has surely expired on the server.
    pub fn past_short_ttl(&self) -> Duration {
        self.fixture.short_ttl * 5 / 2
    }

    /// This case's prefix, prepended to every name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `suffix` under this case's prefix.
    pub fn name(&self, suffix: &str) -> LockName {
        LockName::new(format!("{}{suffix}", self.prefix)).expect("valid test name")
    }

    /// The highest token this case has seen granted for `name`.
    fn highest_seen(&self, name: &LockName) -> Option<FencingToken> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
    }

    /// Remembers that `token` was granted for `name`.
    pub fn saw(&self, name: &LockName, token: FencingToken) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let highest = seen.entry(name.clone()).or_insert(token);
        *highest = (*highest).max(token);
    }

    /// `try_acquire`, settled: the grant, or `None` while a grant this case knows holds `name`.
    pub async fn try_acquire(&self, name: &LockName, ttl: Duration) -> Option<Lease> {
        let store = self.store().as_ref();
        let lease = settle::try_acquire(store, name, ttl, self.highest_seen(name)).await;
        if let Some(lease) = &lease {
            self.saw(name, lease.token());
        }
        lease
    }

    /// `try_acquire` that must grant: fails the case if `name` is held.
    pub async fn grant(&self, name: &LockName, ttl: Duration) -> Lease {
        let store = self.store().as_ref();
        let lease = settle::grant(store, name, ttl, self.highest_seen(name)).await;
        self.saw(name, lease.token());
        lease
    }

    /// A guard on `name` through a new locker (settled as [`Self::try_acquire`]), granted
    /// within the wait `options` allow: fails the case if `name` stays held.
    pub async fn guard(&self, name: &LockName, options: AcquireOptions) -> LockGuard {
        let locker = self.locker();
        let store = self.store().as_ref();
        let guard = settle::acquire(store, name, self.highest_seen(name), || {
            locker.try_acquire(name, options)
        })
        .await;
        let Some(guard) = guard else {
            panic!(
                "{name:?} must be granted, but it is held: {:?}",
                self.inspect(name).await
            )
        };
        self.saw(name, guard.token());
        guard
    }

    /// A guard on `name` with the short TTL and the watchdog renewing it, taken without waiting.
    pub async fn renewed_guard(&self, name: &LockName) -> LockGuard {
        let options = AcquireOptions::new()
            .with_ttl(self.short_ttl())
            .with_no_wait();
        self.guard(name, options).await
    }

    /// `inspect`, settled.
    pub async fn inspect(&self, name: &LockName) -> Option<LeaseInfo> {
        settle::inspect(self.store().as_ref(), name).await
    }

    /// `renew`, settled: the store's definite answer.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        settle::settle("renew", || self.store().renew(lease, ttl)).await
    }

    /// `renew_many`, settled: every answer definite.
    pub async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        settle::renew_many(self.store().as_ref(), leases, ttl).await
    }

    /// Releases `lease`, which must still hold ([`settle::release`]).
    pub async fn release(&self, lease: &Lease) {
        settle::release(self.store().as_ref(), lease).await;
    }

    /// `release`, settled: the store's definite answer, for releases that must fail.
    pub async fn release_answer(&self, lease: &Lease) -> Result<(), Error> {
        settle::settle("release", || self.store().release(lease)).await
    }

    /// Releases `guard`, whose lease must still hold ([`settle::release_guard`]).
    pub async fn release_guard(&self, guard: LockGuard) {
        settle::release_guard(self.store().as_ref(), guard).await;
    }

    /// `force_release`, settled.
    pub async fn force_release(&self, name: &LockName) -> ForceReleased {
        settle::force_release(self.store().as_ref(), name).await
    }
}
