//! What the client tests share: the in-memory store wrapped to fail renewals, report regressing
//! tokens and answer batches wrongly on demand, a locker over it, and the options every test
//! starts from.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use fencelock_core::{
    AcquireOptions, Error, FencingToken, Lease, LeaseInfo, LeaseStore, LockName, Locker,
    LossReason, MemoryLeaseStore, Operation, OwnerLabel, TtlLimits, async_trait,
};
use tokio::time::Instant;

/// What the wrapped store does on renew.
pub(crate) const RENEW_OK: u8 = 0;
pub(crate) const RENEW_LOST: u8 = 1;
pub(crate) const RENEW_UNAVAILABLE: u8 = 2;
pub(crate) const RENEW_PANIC: u8 = 3;

/// The memory store with switchable renew failures and a token offset, to drive the client
/// through the failures a networked store produces.
#[derive(Debug, Default)]
pub(crate) struct Faulty {
    pub(crate) inner: MemoryLeaseStore,
    pub(crate) renew_mode: AtomicU8,
    pub(crate) renews: AtomicU32,
    /// When set, tokens are reported as 1000 − real token: they go down.
    pub(crate) regress: AtomicBool,
    /// `renew_many` calls, and the leases they carried.
    pub(crate) batches: AtomicU32,
    pub(crate) batched: AtomicU32,
    /// When set, `renew_many` answers one result too few.
    pub(crate) short_answers: AtomicBool,
}

#[async_trait]
impl LeaseStore for Faulty {
    fn backend(&self) -> &'static str {
        "faulty-memory"
    }
    fn ttl_limits(&self) -> TtlLimits {
        self.inner.ttl_limits()
    }
    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        let lease = self.inner.try_acquire_as(name, ttl, label).await?;
        Ok(lease.map(|l| {
            if self.regress.load(Ordering::SeqCst) {
                let token = FencingToken::new(1000 - l.token().get());
                fencelock_core::backend::granted_lease(
                    l.name().clone(),
                    token,
                    l.holder(),
                    l.ttl(),
                    Instant::now(),
                )
            } else {
                l
            }
        }))
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        self.renews.fetch_add(1, Ordering::SeqCst);
        match self.renew_mode.load(Ordering::SeqCst) {
            RENEW_LOST => Err(Error::lost(lease, LossReason::NotHeld)),
            RENEW_UNAVAILABLE => Err(Error::unavailable(
                "faulty-memory",
                Operation::Renew,
                std::io::Error::other("connection refused"),
            )),
            RENEW_PANIC => panic!("renew exploded"),
            _ => self.inner.renew(lease, ttl).await,
        }
    }
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.batched
            .fetch_add(leases.len() as u32, Ordering::SeqCst);
        let mut answers =
            futures::future::join_all(leases.iter().map(|lease| self.renew(lease, ttl))).await;
        if self.short_answers.load(Ordering::SeqCst) {
            answers.pop();
        }
        answers
    }
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        if self.regress.load(Ordering::SeqCst) {
            let real = FencingToken::new(1000 - lease.token().get());
            let lease = fencelock_core::backend::granted_lease(
                lease.name().clone(),
                real,
                lease.holder(),
                lease.ttl(),
                Instant::now(),
            );
            return self.inner.release(&lease).await;
        }
        self.inner.release(lease).await
    }
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        self.inner.inspect(name).await
    }
    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        self.inner.force_release(name).await
    }
    async fn watch_released(
        &self,
        name: &LockName,
    ) -> Result<Option<fencelock_core::backend::ReleaseWatch>, Error> {
        self.inner.watch_released(name).await
    }
}

/// A fresh faulty store and a locker over it.
pub(crate) fn setup() -> (Arc<Faulty>, Locker) {
    let store = Arc::new(Faulty::default());
    let locker = Locker::from_arc(store.clone());
    (store, locker)
}

/// The TTL the tests acquire with.
pub(crate) const TTL: Duration = Duration::from_secs(3);
/// The watchdog's default renew interval for [`TTL`]: TTL/3.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// [`TTL`], no waiting.
pub(crate) fn opts() -> AcquireOptions {
    AcquireOptions::new().with_ttl(TTL).with_no_wait()
}
