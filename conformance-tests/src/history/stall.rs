//! A stall switch in front of a store: while it is on, every call waits at the door, as calls
//! through a network path that holds all bytes would (the torture suite's `net-stall` does
//! the same with a `TcpProxy`). A call already past the door runs on.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::backend::{ForwardingStore, ReleaseWatch, WaitPolicy};
use fencelock_core::{
    Diagnosis, Error, FencingToken, Lease, LeaseInfo, LeaseStore, ListQuery, Listing, LockName,
    OwnerLabel, async_trait,
};
use tokio::sync::watch;

/// One worker's view of the store under test, with a stall switch.
#[derive(Debug)]
pub(crate) struct Stallable {
    inner: Arc<dyn LeaseStore>,
    stalled: watch::Sender<bool>,
}

impl Stallable {
    pub(crate) fn new(inner: Arc<dyn LeaseStore>) -> Self {
        Self {
            inner,
            stalled: watch::Sender::new(false),
        }
    }

    /// Holds every later call at the door until [`Stallable::unstall`].
    pub(crate) fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Lets the held calls through, in no particular order.
    pub(crate) fn unstall(&self) {
        self.stalled.send_replace(false);
    }

    async fn door(&self) {
        let mut open = self.stalled.subscribe();
        // `Err` only when the sender is gone, which cannot happen while `self` lives.
        let _ = open.wait_for(|stalled| !*stalled).await;
    }
}

#[async_trait]
impl ForwardingStore for Stallable {
    fn inner(&self) -> &dyn LeaseStore {
        &*self.inner
    }

    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        self.door().await;
        self.inner().try_acquire_as(name, ttl, label).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        self.door().await;
        self.inner().renew(lease, ttl).await
    }

    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        self.door().await;
        self.inner().renew_many(leases, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        self.door().await;
        self.inner().release(lease).await
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        self.door().await;
        self.inner().inspect(name).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        self.door().await;
        self.inner().list(query).await
    }

    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        self.door().await;
        self.inner().force_release(name).await
    }

    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.door().await;
        self.inner().watch_released(name).await
    }

    async fn diagnose(&self) -> Result<Diagnosis, Error> {
        self.door().await;
        self.inner().diagnose().await
    }

    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        self.door().await;
        self.inner().acquire_waiting(name, ttl, label, policy).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use fencelock_core::{LeaseStore, LockName, MemoryLeaseStore};

    use super::Stallable;

    #[tokio::test]
    async fn a_stalled_store_holds_calls_until_unstalled() {
        let store = Arc::new(Stallable::new(Arc::new(MemoryLeaseStore::new())));
        let name = LockName::new("stall/a").unwrap();
        store.stall();
        let held = {
            let (store, name) = (Arc::clone(&store), name.clone());
            tokio::spawn(async move { store.try_acquire(&name, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!held.is_finished(), "a call went through a stalled store");
        store.unstall();
        let lease = held.await.unwrap().unwrap();
        assert!(lease.is_some(), "the held call ran once unstalled");
    }
}
