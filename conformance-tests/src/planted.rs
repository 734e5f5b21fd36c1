//! Planted bugs: stores that are wrong in one known way, to show that the checks here catch
//! them. The suite's own tests and the torture suite's mutation check use them; a backend
//! author can wrap their own store in one and watch the suite fail.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::backend::{ForwardingStore, WaitPolicy, renewed_lease, safety_margin};
use fencelock_core::{
    Error, Lease, LeaseStore, LockName, OwnerLabel, PermitAttempt, PermitLimit, async_trait,
};

/// Reports every lease with a TTL 4/3 of the one the wrapped store granted, so the store ends
/// each grant at ¾ of the TTL the lease reports: the holder's local deadline outlives the
/// server's grant, and a rival can be granted while the holder still says it is valid.
///
/// Every path that hands out a lease reports it stretched: `try_acquire`, `acquire_waiting`,
/// `renew` and `renew_many` (the [`fencelock_core::Locker`]'s watchdog renews through it), and
/// for permits `try_acquire_permit`, `try_acquire_permit_or_next_expiry` and
/// `acquire_permit_waiting`.
///
/// The conformance case `exclusive_until_local_deadline` fails for it, and the history check
/// ([`crate::history::check_store`]) reports I6 (in the torture suite's semaphore runs: I7, a
/// paused holder's permit still valid by its deadline while its place was granted again).
#[derive(Debug)]
pub struct EarlyExpiry {
    inner: Arc<dyn LeaseStore>,
}

impl EarlyExpiry {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LeaseStore>) -> Self {
        Self { inner }
    }
}

/// `real` as reported with 4/3 of its TTL, from the same send instant (everything else kept:
/// token, holder, label, a permit's limit).
fn stretched(real: &Lease) -> Lease {
    let ttl = real.ttl();
    // The send instant the real deadline was computed from (the deadline is that instant
    // plus the TTL minus the safety margin).
    let sent_at = real.deadline() - ttl.saturating_sub(safety_margin(ttl));
    renewed_lease(real, ttl * 4 / 3, sent_at)
}

/// A grant's answer, its lease stretched.
fn stretch(answer: Result<Option<Lease>, Error>) -> Result<Option<Lease>, Error> {
    Ok(answer?.map(|l| stretched(&l)))
}

#[async_trait]
impl ForwardingStore for EarlyExpiry {
    fn inner(&self) -> &dyn LeaseStore {
        &*self.inner
    }

    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        stretch(self.inner().try_acquire_as(name, ttl, label).await)
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        self.inner().renew(lease, ttl).await.map(|l| stretched(&l))
    }

    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        self.inner()
            .renew_many(leases, ttl)
            .await
            .into_iter()
            .map(|answer| answer.map(|l| stretched(&l)))
            .collect()
    }

    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        stretch(self.inner().acquire_waiting(name, ttl, label, policy).await)
    }

    async fn try_acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        stretch(
            self.inner()
                .try_acquire_permit(name, limit, ttl, label)
                .await,
        )
    }

    async fn try_acquire_permit_or_next_expiry(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        Ok(
            match self
                .inner()
                .try_acquire_permit_or_next_expiry(name, limit, ttl, label)
                .await?
            {
                PermitAttempt::Granted(real) => PermitAttempt::Granted(stretched(&real)),
                full => full,
            },
        )
    }

    async fn acquire_permit_waiting(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        stretch(
            self.inner()
                .acquire_permit_waiting(name, limit, ttl, label, policy)
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use fencelock_core::backend::WaitPolicy;
    use fencelock_core::{LeaseStore, LockName, MemoryLeaseStore, PermitLimit};

    use super::EarlyExpiry;

    #[tokio::test]
    async fn every_path_reports_four_thirds_of_the_granted_ttl() {
        let store: Arc<dyn LeaseStore> =
            Arc::new(EarlyExpiry::new(Arc::new(MemoryLeaseStore::new())));
        let ttl = Duration::from_millis(300);
        let name = LockName::new("planted/early").unwrap();
        let lease = store.try_acquire(&name, ttl).await.unwrap().unwrap();
        assert_eq!(lease.ttl(), Duration::from_millis(400));
        let renewed = store.renew(&lease, ttl).await.unwrap();
        assert_eq!(renewed.ttl(), Duration::from_millis(400));
        let batch = store.renew_many(std::slice::from_ref(&renewed), ttl).await;
        assert_eq!(batch[0].as_ref().unwrap().ttl(), Duration::from_millis(400));
        store.release(&renewed).await.unwrap();
        let policy = WaitPolicy::until(Some(tokio::time::Instant::now() + ttl));
        let waited = store
            .acquire_waiting(&name, ttl, None, policy)
            .await
            .unwrap();
        assert_eq!(waited.unwrap().ttl(), Duration::from_millis(400));
        // Permits too, and they stay permits (their renewals take the permit path).
        let limit = PermitLimit::new(2).unwrap();
        let permit = store
            .try_acquire_permit(&name, limit, ttl, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(permit.ttl(), Duration::from_millis(400));
        assert_eq!(permit.permit_limit(), Some(limit));
        let renewed = store.renew(&permit, ttl).await.unwrap();
        assert_eq!(renewed.permit_limit(), Some(limit));
        assert_eq!(store.inspect_permits(&name).await.unwrap().holders.len(), 1);
        let policy = WaitPolicy::until(Some(tokio::time::Instant::now() + ttl));
        let waited = store
            .acquire_permit_waiting(&name, limit, ttl, None, policy)
            .await
            .unwrap();
        assert_eq!(waited.unwrap().ttl(), Duration::from_millis(400));
    }
}
