//! `EtcdLeaseStore`: the handle, its options, and the `LeaseStore` impl that delegates to the
//! protocol modules.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::Client;
use fencelock_core::backend::{ReleaseWatch, WaitPolicy};
use fencelock_core::{
    Diagnosis, Error, FencingToken, Lease, LeaseInfo, LeaseStore, ListQuery, Listing, LockName,
    Operation, OwnerLabel, PermitLimit, Permits, TtlLimits,
};

use crate::classify::{STORE, classify};
use crate::config::Settings;
use crate::keepalive::KeepAlives;
use crate::keys::LockKeys;
use crate::observe::Observers;
use crate::queue_snapshot::{QueueSnapshot, queue_range};
use crate::rpc::Rpc;
use crate::spare::Spares;

/// A [`LeaseStore`] on etcd: one etcd lease and one key per holder, the key's create revision
/// as the fencing token, FIFO waiters that watch their predecessor — the protocol of etcd's own
/// `concurrency.Mutex`, so fencelock and `etcdctl lock NAME` exclude each other.
///
/// Cloning is cheap; clones share the connection, one keepalive stream, and the pool of spare
/// leases: a released grant's lease is reused by the next acquire of the same TTL while it is
/// fresh (confirmed alive at most a tenth of its TTL ago), so that acquire + release costs two
/// etcd writes. A reused grant's deadline counts from its lease's last confirmed keepalive.
///
/// ```no_run
/// use std::time::Duration;
/// use fencelock_core::{AcquireOptions, Fence, Locker};
/// use fencelock_etcd::EtcdLeaseStore;
///
/// # #[tokio::main] async fn main() -> Result<(), fencelock_core::Error> {
/// let store = EtcdLeaseStore::connect(["http://127.0.0.1:2379"]).await?;
/// let locker = Locker::new(store.clone());
/// let guard = locker
///     .acquire("jobs/nightly", AcquireOptions::new().with_ttl(Duration::from_secs(10)))
///     .await?;
/// store.fence().write("reports/nightly", guard.token(), b"done").await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdLeaseStore {
    pub(crate) rpc: Rpc,
    pub(crate) keepalives: KeepAlives,
    pub(crate) spares: Spares,
    observers: Arc<Observers>,
    key_prefix: Arc<str>,
    limits: TtlLimits,
}

impl fmt::Debug for EtcdLeaseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds credentials; never print it.
        f.debug_struct("EtcdLeaseStore")
            .field("key_prefix", &self.key_prefix)
            .field("max_ttl", &self.limits.max())
            .field("op_timeout", &self.rpc.timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdLeaseStore {
    /// A store over `client` with validated settings; every way to build one ends here.
    pub(crate) fn assemble(client: Client, settings: Settings) -> Self {
        let rpc = Rpc {
            client: Arc::new(client),
            timeout: settings.op_timeout,
        };
        Self {
            keepalives: KeepAlives::new(rpc.clone()),
            spares: Spares::new(rpc.clone()),
            observers: Arc::default(),
            rpc,
            key_prefix: Arc::from(settings.key_prefix),
            limits: settings.limits,
        }
    }

    /// The key prefix of lock keys.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The underlying client, e.g. for your own fenced transactions.
    pub fn client(&self) -> &Client {
        &self.rpc.client
    }

    /// How many elections this store watches for observers right now: one etcd watch per name
    /// that has a [`LeaderWatch`](fencelock_core::LeaderWatch) (or another
    /// [`LeaseStore::watch_holder`] subscription) alive, ended within a second of the last one
    /// being dropped.
    pub fn observed_elections(&self) -> usize {
        self.observers.watched()
    }

    /// The keys of the lock `name`.
    pub(crate) fn lock_keys(&self, name: &LockName) -> LockKeys {
        LockKeys::new(&self.key_prefix, name)
    }

    /// The keys of the semaphore `name` (see [`crate::keys::SEMAPHORE_SEGMENT`]).
    pub(crate) fn permit_keys(&self, name: &LockName) -> LockKeys {
        LockKeys::semaphore(&self.key_prefix, name)
    }

    pub(crate) fn ttl_limits_checked(&self, ttl: Duration) -> Result<Duration, Error> {
        self.limits.check(ttl)
    }

    /// The queue of `keys` and the revision it was read at.
    pub(crate) async fn read_queue(
        &self,
        keys: &LockKeys,
        op: Operation,
    ) -> Result<(QueueSnapshot, i64), Error> {
        let resp = self
            .rpc
            .call(|mut c| {
                let prefix = keys.prefix().to_vec();
                async move { c.get(prefix, Some(queue_range())).await }
            })
            .await
            .map_err(|e| classify(op, e))?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((QueueSnapshot::from_kvs(keys, resp.kvs()), revision))
    }
}

#[async_trait]
impl LeaseStore for EtcdLeaseStore {
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
        crate::acquire::try_acquire(self, name, ttl, label).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        if lease.permit_limit().is_some() {
            return crate::permits::renew(self, lease, ttl).await;
        }
        crate::renew_release::renew(self, lease, ttl).await
    }

    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        crate::renew_batch::renew_many(self, leases, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        if lease.permit_limit().is_some() {
            return crate::permits::release(self, lease).await;
        }
        crate::renew_release::release(self, lease).await
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        crate::admin::inspect(self, name).await
    }

    /// One range read of the keys under the prefix, then the remaining TTL of each listed
    /// owner's lease (see `list.rs`).
    async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        crate::list::list(self, query).await
    }

    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        crate::admin::force_release(self, name).await
    }

    /// One etcd watch per observed name, on its queue's range (see `observe.rs`): grants,
    /// releases, revokes and expiries all wake the observers.
    async fn watch_holder(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        Ok(Some(self.observers.observe(
            &self.rpc,
            self.lock_keys(name),
            name,
        )))
    }

    /// etcd's own queue (see `wait.rs`) instead of core's polling loop: FIFO, one watcher per
    /// release.
    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        wait: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        crate::wait::acquire_waiting(self, name, ttl, label, wait).await
    }

    /// Keys under `<prefix>\x1fsemaphores/NAME/`, the first `limit` by create revision may
    /// hold, each grant's token the revision of the write that granted it (see `permits.rs`).
    async fn try_acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        crate::permits::try_acquire_permit(self, name, limit, ttl, label).await
    }

    /// One range read of the semaphore's keys, then each holder's lease TTL.
    async fn inspect_permits(&self, name: &LockName) -> Result<Permits, Error> {
        crate::permits::inspect_permits(self, name).await
    }

    /// The semaphore's own queue (see `permit_wait.rs`) instead of core's polling loop: FIFO,
    /// woken by the deletes that let this waiter in.
    async fn acquire_permit_waiting(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        wait: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        crate::permit_wait::acquire_permit_waiting(self, name, limit, ttl, label, wait).await
    }

    /// Over the store's client: version, leader, members, alarms, database size, and whether
    /// every endpoint answers (see the crate docs, "Diagnosis").
    async fn diagnose(&self) -> Result<Diagnosis, Error> {
        crate::diagnose::diagnose(self).await
    }
}
