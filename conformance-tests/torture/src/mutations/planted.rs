//! The store-side planted bugs (feature `mutations` only).

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock::{Error, FencingToken, Lease, LeaseStore, LockName};
use fencelock_core::backend::{
    ForwardingStore, WaitPolicy, granted_lease, lock_unpoisoned, renewed_lease, safety_margin,
};
use fencelock_core::{OwnerLabel, async_trait};
use nix::fcntl::{Flock, FlockArg};

/// Ends each grant at ¾ of the TTL the lease reports; the same planted bug the conformance
/// case `exclusive_until_local_deadline` and `history::check_store` are shown to catch. Here
/// `net-stall` catches it: the stalled holder's guard, probed while it waits, still says
/// valid after a rival was granted (I6).
pub(crate) use fencelock_conformance::planted::EarlyExpiry;

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
        let lasts = real.ttl().saturating_sub(safety_margin(real.ttl()));
        let sent_at = real
            .deadline()
            .checked_sub(lasts)
            .unwrap_or_else(tokio::time::Instant::now);
        let fake = granted_lease(
            real.name().clone(),
            FencingToken::new(token),
            real.holder(),
            real.ttl(),
            sent_at,
        );
        lock_unpoisoned(&self.real).insert(token, real);
        Ok(fake)
    }

    fn real(&self, fake: &Lease) -> Lease {
        lock_unpoisoned(&self.real)
            .get(&fake.token().get())
            .cloned()
            .unwrap_or_else(|| fake.clone())
    }
}

#[async_trait]
impl ForwardingStore for TokenReset {
    fn inner(&self) -> &dyn LeaseStore {
        &*self.inner
    }
    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        match self.inner().try_acquire_as(name, ttl, label).await? {
            Some(real) => self.fake(real).map(Some),
            None => Ok(None),
        }
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let real = self.real(lease);
        let sent_at = tokio::time::Instant::now();
        let renewed = self.inner().renew(&real, ttl).await?;
        let fake = renewed_lease(lease, renewed.ttl(), sent_at);
        lock_unpoisoned(&self.real).insert(lease.token().get(), renewed);
        Ok(fake)
    }
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        // Each fake lease maps to its own real one: renew them one by one, as the default does.
        futures::future::join_all(
            leases
                .iter()
                .map(|lease| ForwardingStore::renew(self, lease, ttl)),
        )
        .await
    }
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let real = self.real(lease);
        self.inner().release(&real).await
    }
    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        match self
            .inner()
            .acquire_waiting(name, ttl, label, policy)
            .await?
        {
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
impl ForwardingStore for RenewSkip {
    fn inner(&self) -> &dyn LeaseStore {
        &*self.inner
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        Ok(renewed_lease(lease, ttl, tokio::time::Instant::now()))
    }
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        let now = tokio::time::Instant::now();
        leases
            .iter()
            .map(|lease| Ok(renewed_lease(lease, ttl, now)))
            .collect()
    }
}
