//! Planted bugs: stores that are wrong in one known way, to show that the checks here catch
//! them. The suite's own tests and the torture suite's mutation check use them; a backend
//! author can wrap their own store in one and watch the suite fail.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::backend::{ForwardingStore, WaitPolicy, granted_lease, safety_margin};
use fencelock_core::{Error, Lease, LeaseStore, LockName, OwnerLabel, async_trait};

/// Reports every lease with a TTL 4/3 of the one the wrapped store granted, so the store ends
/// each grant at ¾ of the TTL the lease reports: the holder's local deadline outlives the
/// server's grant, and a rival can be granted while the holder still says it is valid.
///
/// Every path that hands out a lease reports it stretched: `try_acquire`, `acquire_waiting`,
/// `renew` and `renew_many` (the [`fencelock_core::Locker`]'s watchdog renews through it).
///
/// The conformance case `exclusive_until_local_deadline` fails for it, and the history check
/// ([`crate::history::check_store`]) reports I6.
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

/// `real` as reported with 4/3 of its TTL, from the same send instant.
fn stretched(real: &Lease) -> Lease {
    let ttl = real.ttl();
    // The send instant the real deadline was computed from (the deadline is that instant
    // plus the TTL minus the safety margin).
    let sent_at = real.deadline() - ttl.saturating_sub(safety_margin(ttl));
    granted_lease(
        real.name().clone(),
        real.token(),
        real.holder(),
        ttl * 4 / 3,
        sent_at,
    )
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
        Ok(self
            .inner()
            .try_acquire_as(name, ttl, label)
            .await?
            .map(|l| stretched(&l)))
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
        Ok(self
            .inner()
            .acquire_waiting(name, ttl, label, policy)
            .await?
            .map(|l| stretched(&l)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use fencelock_core::backend::WaitPolicy;
    use fencelock_core::{LeaseStore, LockName, MemoryLeaseStore};

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
    }
}
