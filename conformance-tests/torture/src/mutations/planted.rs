//! The store-side planted bugs (feature `mutations` only).

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fencelock::wait::WaitPolicy;
use fencelock::{
    Error, FencingToken, Lease, LeaseInfo, LeaseStore, LockName, ReleaseWatch, TtlLimits,
    async_trait,
};
use nix::fcntl::{Flock, FlockArg};

/// Hands out tokens from a shared counter file instead of the store's: grant order is kept
/// while the file lives, and tokens start again at 1 once it is removed (the "server" lost
/// its counter). Renew and release go to the store with the real lease.
#[derive(Debug)]
pub(crate) struct TokenReset {
    inner: Arc<dyn LeaseStore>,
    counter: PathBuf,
    real: Mutex<HashMap<u64, Lease>>,
}

impl TokenReset {
    pub(crate) fn new(inner: Arc<dyn LeaseStore>, counter: PathBuf) -> Self {
        Self {
            inner,
            counter,
            real: Mutex::default(),
        }
    }

    fn next_token(&self) -> Result<u64, Error> {
        let io = |e: std::io::Error| Error::invalid("token counter", e.to_string());
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.counter)
            .map_err(io)?;
        let mut file = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io(std::io::Error::from(e)))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        let next = text.trim().parse::<u64>().unwrap_or(0) + 1;
        file.rewind().map_err(io)?;
        file.set_len(0).map_err(io)?;
        write!(file, "{next}").map_err(io)?;
        Ok(next)
    }

    fn fake(&self, real: Lease) -> Result<Lease, Error> {
        let token = self.next_token()?;
        // Keep the real deadline: only the token is wrong.
        let lasts = real
            .ttl()
            .saturating_sub(fencelock::safety_margin(real.ttl()));
        let sent_at = real
            .deadline()
            .checked_sub(lasts)
            .unwrap_or_else(tokio::time::Instant::now);
        let fake = Lease::granted(
            real.name().clone(),
            FencingToken::new(token),
            real.holder(),
            real.ttl(),
            sent_at,
        );
        self.real
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, real);
        Ok(fake)
    }

    fn real(&self, fake: &Lease) -> Lease {
        self.real
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&fake.token().get())
            .cloned()
            .unwrap_or_else(|| fake.clone())
    }
}

#[async_trait]
impl LeaseStore for TokenReset {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn ttl_limits(&self) -> TtlLimits {
        self.inner.ttl_limits()
    }
    async fn try_acquire(&self, name: &LockName, ttl: Duration) -> Result<Option<Lease>, Error> {
        match self.inner.try_acquire(name, ttl).await? {
            Some(real) => self.fake(real).map(Some),
            None => Ok(None),
        }
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let real = self.real(lease);
        let sent_at = tokio::time::Instant::now();
        let renewed = self.inner.renew(&real, ttl).await?;
        let fake = lease.renewed(renewed.ttl(), sent_at);
        self.real
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(lease.token().get(), renewed);
        Ok(fake)
    }
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let real = self.real(lease);
        self.inner.release(&real).await
    }
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        self.inner.inspect(name).await
    }
    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        self.inner.force_release(name).await
    }
    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.inner.watch_released(name).await
    }
    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        match self.inner.acquire_waiting(name, ttl, policy).await? {
            Some(real) => self.fake(real).map(Some),
            None => Ok(None),
        }
    }
}

/// Renews without asking the store: the renewed lease is the caller's own copy with a new
/// deadline, so nothing checks that the caller still owns the lock. Everything else goes to
/// the store.
#[derive(Debug)]
pub(crate) struct RenewSkip {
    inner: Arc<dyn LeaseStore>,
}

impl RenewSkip {
    pub(crate) fn new(inner: Arc<dyn LeaseStore>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl LeaseStore for RenewSkip {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn ttl_limits(&self) -> TtlLimits {
        self.inner.ttl_limits()
    }
    async fn try_acquire(&self, name: &LockName, ttl: Duration) -> Result<Option<Lease>, Error> {
        self.inner.try_acquire(name, ttl).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        Ok(lease.renewed(ttl, tokio::time::Instant::now()))
    }
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        self.inner.release(lease).await
    }
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        self.inner.inspect(name).await
    }
    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        self.inner.force_release(name).await
    }
    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.inner.watch_released(name).await
    }
    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        self.inner.acquire_waiting(name, ttl, policy).await
    }
}
