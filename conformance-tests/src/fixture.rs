//! What a backend hands the suite: a store, its timing, and whatever must outlive the case.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fencelock_core::{
    AcquireOptions, Error, ErrorKind, FencingToken, Lease, LeaseInfo, LeaseStore, ListQuery,
    Listing, LockGuard, LockName, Locker, OwnerLabel, Wait,
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

    /// Runs `attempt` (one acquire of `name`, this case's alone) through [`settle::acquire`]:
    /// `None` while a grant this case knows holds `name`, else the definite answer. A definite
    /// error is handed back rather than failing the case inside `settle`, so that the caller's
    /// failure names its operation and values.
    async fn settled_acquire<T, F, Fut>(
        &self,
        name: &LockName,
        mut attempt: F,
    ) -> Option<Result<T, Error>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, Error>>,
    {
        let store = self.store().as_ref();
        settle::acquire(store, name, self.highest_seen(name), || {
            let answer = attempt();
            async move {
                match answer.await {
                    Ok(granted) => Ok(granted.map(Ok)),
                    Err(e) if e.is_transient() => Err(e),
                    Err(e) => Ok(Some(Err(e))),
                }
            }
        })
        .await
    }

    /// `try_acquire`, settled: the grant, or `None` while a grant this case knows holds `name`.
    pub async fn try_acquire(&self, name: &LockName, ttl: Duration) -> Option<Lease> {
        let what = format!("try_acquire on `{name}` (TTL {ttl:?})");
        self.try_acquire_as(name, ttl, &what).await
    }

    /// [`Self::try_acquire`], failing the case as `what` (say, "try_acquire on x while held")
    /// on a store error.
    pub async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        what: &str,
    ) -> Option<Lease> {
        let answer = self
            .settled_acquire(name, || self.store().try_acquire(name, ttl))
            .await?;
        let lease = answer.unwrap_or_else(|e| panic!("{what}: {e}"));
        self.saw(name, lease.token());
        Some(lease)
    }

    /// `try_acquire` (settled) that must grant: fails the case on an error or if `name` is held.
    pub async fn grant(&self, name: &LockName, ttl: Duration) -> Lease {
        self.grant_labeled(name, ttl, None).await
    }

    /// [`Self::grant`] through `try_acquire_as` with `label`.
    pub async fn grant_labeled(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Lease {
        match self
            .settled_acquire(name, || self.store().try_acquire_as(name, ttl, label))
            .await
        {
            Some(Ok(lease)) => {
                self.saw(name, lease.token());
                lease
            }
            Some(Err(e)) => panic!("try_acquire on `{name}` (TTL {ttl:?}) must grant: {e}"),
            None => {
                let holder = self.inspect(name).await;
                panic!(
                    "try_acquire on `{name}` (TTL {ttl:?}) must grant, but it is refused; \
                     inspect says {holder:?}"
                )
            }
        }
    }

    /// A guard on `name` through a new locker's [`Locker::acquire`] (settled as
    /// [`Self::try_acquire`]), granted within the wait `options` allow: fails the case if
    /// `name` stays held or on an error.
    pub async fn guard(&self, name: &LockName, options: AcquireOptions) -> LockGuard {
        let what = format!("Locker::acquire of `{name}` ({})", waiting(&options));
        self.guard_as(name, options, &what).await
    }

    /// [`Self::guard`], failing the case as `what` (say, "Locker::acquire of free x").
    pub async fn guard_as(
        &self,
        name: &LockName,
        options: AcquireOptions,
        what: &str,
    ) -> LockGuard {
        let locker = self.locker();
        let (locker, options) = (&locker, &options);
        let answer = self
            .settled_acquire(name, move || async move {
                match locker.acquire(name, options.clone()).await {
                    Ok(guard) => Ok(Some(guard)),
                    // Held for as long as `options` wait.
                    Err(e) if e.kind() == ErrorKind::Timeout => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await;
        match answer {
            Some(Ok(guard)) => {
                self.saw(name, guard.token());
                guard
            }
            Some(Err(e)) => panic!("{what} must grant: {e}"),
            None => {
                let holder = self.inspect(name).await;
                panic!("{what} must grant, but it stayed held; inspect says {holder:?}")
            }
        }
    }

    /// A guard on `name` with the short TTL and the watchdog renewing it, taken without waiting.
    pub async fn renewed_guard(&self, name: &LockName) -> LockGuard {
        let options = AcquireOptions::new()
            .with_ttl(self.short_ttl())
            .with_no_wait();
        self.guard(name, options).await
    }

    /// `list`, settled: the store's definite answer (`Unsupported` included).
    pub async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        let what = format!("list under {:?}", query.prefix_str());
        settle::settle(&what, || self.store().list(query)).await
    }

    /// `inspect`, settled.
    pub async fn inspect(&self, name: &LockName) -> Option<LeaseInfo> {
        self.inspect_as(name, &format!("inspect `{name}`")).await
    }

    /// `inspect`, settled, failing the case as `what` (say, "inspect x after release") on a
    /// store error.
    pub async fn inspect_as(&self, name: &LockName, what: &str) -> Option<LeaseInfo> {
        settle::definite(what, || self.store().inspect(name)).await
    }

    /// `renew`, settled: the store's definite answer.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let what = format!(
            "renew of `{}` (token {}, TTL {ttl:?})",
            lease.name(),
            lease.token()
        );
        settle::settle(&what, || self.store().renew(lease, ttl)).await
    }

    /// `renew_many`, settled: every answer definite.
    pub async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        settle::renew_many(self.store().as_ref(), leases, ttl).await
    }

    /// Releases `lease`, which must still hold (as [`settle::release`] does).
    pub async fn release(&self, lease: &Lease) {
        let what = format!("release of `{}` (token {})", lease.name(), lease.token());
        self.release_as(lease, &what).await;
    }

    /// Releases `lease`, which must still hold, as [`settle::release`] does, failing the case
    /// as `what` (say, "release of x (token 7) in cycle 3").
    pub async fn release_as(&self, lease: &Lease, what: &str) {
        self.release_settled(lease, what, false).await;
    }

    /// `release`, settled: the store's definite answer, for releases that must fail.
    pub async fn release_answer(&self, lease: &Lease) -> Result<(), Error> {
        let what = format!("release of `{}` (token {})", lease.name(), lease.token());
        settle::settle(&what, || self.store().release(lease)).await
    }

    /// Releases `guard`, whose lease must still hold ([`settle::release_guard`]).
    pub async fn release_guard(&self, guard: LockGuard) {
        let what = format!(
            "release of the guard of `{}` (token {})",
            guard.name(),
            guard.token()
        );
        self.release_guard_as(guard, &what).await;
    }

    /// Releases `guard`, whose lease must still hold, as [`settle::release_guard`] does:
    /// after a transient error from the guard's own release its lease is released through the
    /// store. Fails the case as `what`.
    pub async fn release_guard_as(&self, guard: LockGuard, what: &str) {
        let lease = guard.lease();
        match guard.release().await {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                eprintln!("{what}: {e}; releasing its lease through the store");
                let maybe_applied = e.kind() == ErrorKind::OutcomeUnknown;
                self.release_settled(&lease, what, maybe_applied).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }

    /// Releases `lease` until the store answers definitely. After an attempt with an unknown
    /// outcome (`maybe_applied`: one came before), `LeaseLost` means that attempt may have
    /// been applied; it is accepted only if the name is no longer held with this lease's token.
    async fn release_settled(&self, lease: &Lease, what: &str, maybe_applied: bool) {
        let unknown = AtomicBool::new(maybe_applied);
        let (store, seen_unknown) = (self.store(), &unknown);
        let answer = settle::settle(what, move || async move {
            let answer = store.release(lease).await;
            if answer
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::OutcomeUnknown)
            {
                seen_unknown.store(true, Ordering::SeqCst);
            }
            answer
        })
        .await;
        match answer {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::LeaseLost && unknown.load(Ordering::SeqCst) => {
                let name = lease.name();
                let holder = self
                    .inspect_as(name, &format!("inspect `{name}` after {what}"))
                    .await;
                assert!(
                    holder.as_ref().is_none_or(|h| h.token != lease.token()),
                    "{what}: {e}, yet token {} still holds the name",
                    lease.token()
                );
                eprintln!(
                    "{what}: released by an attempt whose outcome was unknown (the next one \
                     met: {e})"
                );
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }

    /// `force_release`, settled.
    pub async fn force_release(&self, name: &LockName) -> ForceReleased {
        settle::force_release(self.store().as_ref(), name).await
    }
}

/// How `options` wait, for failure messages.
fn waiting(options: &AcquireOptions) -> String {
    match options.wait() {
        Wait::No => "no wait".to_owned(),
        Wait::Timeout(timeout) => format!("waiting up to {timeout:?}"),
        Wait::Forever => "waiting forever".to_owned(),
    }
}
