//! What a backend hands the suite: a store, its timing, and whatever must outlive the case.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use fencelock_core::{AcquireOptions, Lease, LeaseStore, LockGuard, LockName, Locker};

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
pub struct Ctx {
    fixture: Fixture,
    prefix: String,
}

impl Ctx {
    /// Wraps a fixture with a fresh random prefix.
    pub fn new(fixture: Fixture) -> Self {
        let prefix = format!("fl-test/{:016x}/", rand::random::<u64>());
        Self { fixture, prefix }
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

    /// `try_acquire` that must grant: panics (failing the case) on an error or on contention.
    pub async fn grant(&self, name: &LockName, ttl: Duration) -> Lease {
        match self.store().try_acquire(name, ttl).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                let holder = self.store().inspect(name).await;
                panic!(
                    "try_acquire on `{name}` (TTL {ttl:?}) must grant, but it is refused; \
                     inspect says {holder:?}"
                )
            }
            Err(e) => panic!("try_acquire on `{name}` (TTL {ttl:?}) must grant: {e}"),
        }
    }

    /// A guard on `name` with the short TTL and the watchdog renewing it, taken without waiting.
    pub async fn renewed_guard(&self, name: &LockName) -> LockGuard {
        let options = AcquireOptions::new()
            .with_ttl(self.short_ttl())
            .with_no_wait();
        match self.locker().acquire(name, options).await {
            Ok(guard) => guard,
            Err(e) => panic!("Locker::acquire of `{name}` (no wait) must grant: {e}"),
        }
    }
}
