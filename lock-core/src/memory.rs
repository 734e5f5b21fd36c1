//! `MemoryLeaseStore`: the in-process reference backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::backend::{ReleaseWatch, WakeupHub, granted_lease, lost_or_superseded, permit};
use crate::lock;
use crate::memory_permits::Semaphores;
use crate::{
    Diagnosis, Error, FencingToken, Finding, HeldLock, HolderId, Lease, LeaseInfo, LeaseStore,
    ListQuery, Listing, LockName, Operation, OwnerLabel, PermitAttempt, PermitLimit, Permits,
    TtlLimits,
};

/// An in-process [`LeaseStore`] with the same guarantees as the networked backends, within one
/// process: exclusive grants, tokens that only rise, compare-on-renew and -release, push
/// wake-ups. Its clock is tokio's, so client tests can run it under paused time.
///
/// Semaphores ([`LeaseStore::try_acquire_permit`]) live beside the locks, with their own
/// counters and wake-ups.
///
/// Clones share the same locks. Per-name token counters are kept for the life of the store
/// (that is what keeps tokens rising), so memory grows with the number of distinct names.
#[derive(Clone, Debug, Default)]
pub struct MemoryLeaseStore {
    state: Arc<Mutex<HashMap<LockName, Slot>>>,
    hub: Arc<WakeupHub>,
    limits: TtlLimits,
    semaphores: Arc<Mutex<Semaphores>>,
    permit_hub: Arc<WakeupHub>,
}

#[derive(Debug, Default)]
struct Slot {
    last_token: u64,
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    holder: HolderId,
    token: FencingToken,
    expires_at: Instant,
    label: Option<OwnerLabel>,
}

impl Held {
    fn info(&self, now: Instant) -> LeaseInfo {
        LeaseInfo {
            token: self.token,
            holder: Some(self.holder),
            remaining: self.expires_at.saturating_duration_since(now),
            label: self.label.clone(),
        }
    }
}

impl Slot {
    /// The current grant, if it has not expired by `now`.
    fn live(&self, now: Instant) -> Option<&Held> {
        self.held.as_ref().filter(|h| h.expires_at > now)
    }

    /// The `LeaseLost` of `lease` if it does not hold here (or `None` if it does).
    fn loss_of(&self, lease: &Lease, now: Instant) -> Option<Error> {
        match self.live(now) {
            Some(h) if h.holder == lease.holder() && h.token == lease.token() => None,
            live => Some(lost_or_superseded(lease, live.map(|h| h.token))),
        }
    }
}

const STORE: &str = "memory";

impl MemoryLeaseStore {
    /// An empty store with the default TTL limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the largest TTL accepted.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a maximum outside 1 ms..=10 years.
    pub fn with_max_ttl(mut self, max: Duration) -> Result<Self, Error> {
        self.limits = TtlLimits::with_max(max)?;
        Ok(self)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<LockName, Slot>> {
        lock(&self.state)
    }

    /// One permit of `name` if fewer than `limit` hold, else when the first of them expires.
    fn grant_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        let ttl = self.limits.check(ttl)?;
        let now = Instant::now();
        let expires_at = expiry(now, ttl)?;
        let granted = lock(&self.semaphores).grant(name, limit, expires_at, label, now)?;
        Ok(match granted {
            Ok((token, holder)) => {
                let lease = granted_lease(name.clone(), token, holder, ttl, now);
                PermitAttempt::Granted(permit(lease.labeled(label.cloned()), limit))
            }
            Err(next_expiry) => PermitAttempt::Full { next_expiry },
        })
    }
}

/// The token after `last` for `name`, or the error of an exhausted counter.
pub(crate) fn next_token(last: u64, name: &LockName) -> Result<u64, Error> {
    last.checked_add(1)
        .filter(|t| *t <= FencingToken::MAX_EXACT)
        .ok_or_else(|| {
            Error::backend(
                STORE,
                Operation::Acquire,
                format!("token counter of `{name}` is exhausted"),
            )
        })
}

fn expiry(now: Instant, ttl: Duration) -> Result<Instant, Error> {
    now.checked_add(ttl)
        .ok_or_else(|| Error::invalid("ttl", format!("{ttl:?} overflows the clock")))
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    fn backend(&self) -> &'static str {
        STORE
    }

    fn ttl_limits(&self) -> TtlLimits {
        self.limits
    }

    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        let ttl = self.limits.check(ttl)?;
        let now = Instant::now();
        let expires_at = expiry(now, ttl)?;
        let mut slots = self.slots();
        let slot = slots.entry(name.clone()).or_default();
        if slot.live(now).is_some() {
            return Ok(None);
        }
        let next = next_token(slot.last_token, name)?;
        slot.last_token = next;
        let token = FencingToken::new(next);
        let holder = HolderId::random();
        slot.held = Some(Held {
            holder,
            token,
            expires_at,
            label: label.cloned(),
        });
        drop(slots);
        // Observers of the name (an election's) learn of the new holder at once.
        self.hub.notify_observers(name.as_str());
        Ok(Some(
            Lease::granted(name.clone(), token, holder, ttl, now).labeled(label.cloned()),
        ))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let ttl = self.limits.check(ttl)?;
        let now = Instant::now();
        let expires_at = expiry(now, ttl)?;
        if lease.permit_limit().is_some() {
            lock(&self.semaphores).renew(lease, expires_at, now)?;
            return Ok(lease.renewed(ttl, now));
        }
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(lease.name()) else {
            return Err(lost_or_superseded(lease, None));
        };
        if let Some(lost) = slot.loss_of(lease, now) {
            return Err(lost);
        }
        if let Some(held) = slot.held.as_mut() {
            held.expires_at = expires_at;
        }
        Ok(lease.renewed(ttl, now))
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let now = Instant::now();
        if lease.permit_limit().is_some() {
            lock(&self.semaphores).release(lease, now)?;
            self.permit_hub.notify(lease.name().as_str());
            return Ok(());
        }
        {
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(lease.name()) else {
                return Err(lost_or_superseded(lease, None));
            };
            if let Some(lost) = slot.loss_of(lease, now) {
                return Err(lost);
            }
            slot.held = None;
        }
        self.hub.notify(lease.name().as_str());
        Ok(())
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        let now = Instant::now();
        let slots = self.slots();
        Ok(slots
            .get(name)
            .and_then(|slot| slot.live(now))
            .map(|h| h.info(now)))
    }

    async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        let now = Instant::now();
        let slots = self.slots();
        Ok(query.page(slots.iter().filter_map(|(name, slot)| {
            let held = slot.live(now).filter(|_| query.admits(name.as_str()))?;
            Some(HeldLock::new(name.clone(), held.info(now)))
        })))
    }

    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        let now = Instant::now();
        let broken = {
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(name) else {
                return Ok(None);
            };
            let token = slot.live(now).map(|h| h.token);
            slot.held = None;
            token
        };
        if broken.is_some() {
            self.hub.notify(name.as_str());
        }
        Ok(broken)
    }

    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        Ok(Some(self.hub.subscribe(name)))
    }

    async fn try_acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        Ok(self.grant_permit(name, limit, ttl, label)?.into_granted())
    }

    async fn try_acquire_permit_or_next_expiry(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        self.grant_permit(name, limit, ttl, label)
    }

    async fn inspect_permits(&self, name: &LockName) -> Result<Permits, Error> {
        Ok(lock(&self.semaphores).inspect(name, Instant::now()))
    }

    async fn watch_permits(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        Ok(Some(self.permit_hub.subscribe(name)))
    }

    async fn diagnose(&self) -> Result<Diagnosis, Error> {
        Ok(Diagnosis::new(STORE, "in-process").with(Finding::warn(
            "scope",
            "one process",
            "memory:// locks live inside one process: two programs never see each other's locks. Use it to try fencelock out and in tests; use Redis, PostgreSQL or etcd for real locks",
        )))
    }
}
