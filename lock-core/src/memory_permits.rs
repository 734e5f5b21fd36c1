//! The memory store's semaphores: per name, the live permits and the token counter.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{limit_mismatch, lost_or_superseded};
use crate::{Error, FencingToken, HolderId, Lease, LeaseInfo, LockName, PermitLimit, Permits};

/// The semaphores of one memory store.
#[derive(Debug, Default)]
pub(crate) struct Semaphores {
    by_name: HashMap<LockName, Semaphore>,
}

#[derive(Debug, Default)]
struct Semaphore {
    last_token: u64,
    /// The limit the live permits were granted under.
    limit: Option<PermitLimit>,
    held: Vec<Permit>,
}

#[derive(Debug)]
struct Permit {
    holder: HolderId,
    token: FencingToken,
    expires_at: Instant,
    label: Option<crate::OwnerLabel>,
}

impl Semaphore {
    /// Drops the permits that expired by `now`, and the limit with the last of them.
    fn prune(&mut self, now: Instant) {
        self.held.retain(|p| p.expires_at > now);
        if self.held.is_empty() {
            self.limit = None;
        }
    }

    fn find(&mut self, lease: &Lease, now: Instant) -> Result<usize, Error> {
        self.prune(now);
        self.held
            .iter()
            .position(|p| p.holder == lease.holder() && p.token == lease.token())
            .ok_or_else(|| lost_or_superseded(lease, None))
    }
}

impl Semaphores {
    /// Grants a permit if fewer than `limit` hold: `Ok((token, holder))`; else `Err` with the
    /// time left of the permit that expires first.
    pub(crate) fn grant(
        &mut self,
        name: &LockName,
        limit: PermitLimit,
        expires_at: Instant,
        label: Option<&crate::OwnerLabel>,
        now: Instant,
    ) -> Result<Result<(FencingToken, HolderId), Duration>, Error> {
        let sem = self.by_name.entry(name.clone()).or_default();
        sem.prune(now);
        if let Some(held) = sem.limit.filter(|held| *held != limit) {
            return Err(limit_mismatch(name, held, limit));
        }
        if sem.held.len() >= limit.get() as usize {
            let next_expiry = sem.held.iter().map(|p| p.expires_at).min();
            return Ok(Err(
                next_expiry.map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
            ));
        }
        let token = FencingToken::new(crate::memory::next_token(sem.last_token, name)?);
        sem.last_token = token.get();
        let holder = HolderId::random();
        sem.limit = Some(limit);
        sem.held.push(Permit {
            holder,
            token,
            expires_at,
            label: label.cloned(),
        });
        Ok(Ok((token, holder)))
    }

    pub(crate) fn renew(
        &mut self,
        lease: &Lease,
        expires_at: Instant,
        now: Instant,
    ) -> Result<(), Error> {
        let sem = self.semaphore(lease)?;
        let at = sem.find(lease, now)?;
        sem.held[at].expires_at = expires_at;
        Ok(())
    }

    pub(crate) fn release(&mut self, lease: &Lease, now: Instant) -> Result<(), Error> {
        let sem = self.semaphore(lease)?;
        let at = sem.find(lease, now)?;
        sem.held.remove(at);
        // `find` pruned already; the limit goes with the last permit.
        if sem.held.is_empty() {
            sem.limit = None;
        }
        Ok(())
    }

    pub(crate) fn inspect(&mut self, name: &LockName, now: Instant) -> Permits {
        let Some(sem) = self.by_name.get_mut(name) else {
            return Permits::default();
        };
        sem.prune(now);
        let holders = sem
            .held
            .iter()
            .map(|p| LeaseInfo {
                token: p.token,
                holder: Some(p.holder),
                remaining: p.expires_at.saturating_duration_since(now),
                label: p.label.clone(),
            })
            .collect();
        Permits::new(sem.limit, holders)
    }

    fn semaphore(&mut self, lease: &Lease) -> Result<&mut Semaphore, Error> {
        self.by_name
            .get_mut(lease.name())
            .ok_or_else(|| lost_or_superseded(lease, None))
    }
}
