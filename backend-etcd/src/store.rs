//! `EtcdLeaseStore`: the handle, its options, and the `LeaseStore` impl that delegates to the
//! protocol modules.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::Client;
use fencelock_core::backend::WaitPolicy;
use fencelock_core::{
    Error, FencingToken, Lease, LeaseInfo, LeaseStore, LockName, Operation, TtlLimits,
};

use crate::EtcdConfig;
use crate::classify::{STORE, classify};
use crate::keepalive::KeepAlives;
use crate::keys::LockKeys;
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
    /// The default time one etcd request may take before its outcome counts as unknown (5 s).
    pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(5);

    /// Connects to `endpoints` (`http://host:2379`, …) with default options.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad endpoints; [`Error::Unavailable`] when etcd cannot be
    /// reached (authentication included).
    pub async fn connect<E: AsRef<str>>(
        endpoints: impl IntoIterator<Item = E>,
    ) -> Result<Self, Error> {
        Self::builder(endpoints).connect().await
    }

    /// A configuration to adjust before [`EtcdConfig::connect`].
    pub fn builder<E: AsRef<str>>(endpoints: impl IntoIterator<Item = E>) -> EtcdConfig {
        EtcdConfig::new(endpoints)
    }

    /// A store over a client you already have (its endpoints, TLS and auth are kept), with the
    /// default options: empty key prefix, 24 h maximum TTL, 5 s operation timeout.
    pub fn from_client(client: Client) -> Self {
        let rpc = Rpc {
            client: std::sync::Arc::new(client),
            timeout: Self::DEFAULT_OP_TIMEOUT,
        };
        Self {
            keepalives: KeepAlives::new(rpc.clone()),
            spares: Spares::new(rpc.clone()),
            rpc,
            key_prefix: Arc::from(""),
            limits: TtlLimits::default(),
        }
    }

    /// Puts every lock key under `prefix`: the lock `NAME` lives at `<prefix>NAME/<lease id>`.
    ///
    /// The default is the empty prefix, which is what `etcdctl lock NAME` and Go's
    /// `concurrency.NewMutex(session, "NAME/")` use. With a prefix `p`, fencelock's `NAME` and
    /// `etcdctl lock pNAME` are the same lock.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = Arc::from(prefix.into());
        self
    }

    /// Sets the largest TTL accepted.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a maximum outside 1 ms..=10 years.
    pub fn with_max_ttl(mut self, max: Duration) -> Result<Self, Error> {
        self.limits = TtlLimits::with_max(max)?;
        Ok(self)
    }

    /// Sets how long one etcd request may take; after that its outcome is unknown
    /// ([`Error::OutcomeUnknown`]).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for zero.
    pub fn with_op_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        if timeout.is_zero() {
            return Err(Error::invalid(
                "etcd op timeout",
                "it is zero; give requests time to answer",
            ));
        }
        self.rpc.timeout = timeout;
        Ok(self)
    }

    /// The key prefix of lock keys.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The underlying client, e.g. for your own fenced transactions.
    pub fn client(&self) -> &Client {
        &self.rpc.client
    }

    /// The keys of the lock `name`.
    pub(crate) fn lock_keys(&self, name: &LockName) -> LockKeys {
        LockKeys::new(&self.key_prefix, name)
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

    async fn try_acquire(&self, name: &LockName, ttl: Duration) -> Result<Option<Lease>, Error> {
        crate::acquire::try_acquire(self, name, ttl).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        crate::renew_release::renew(self, lease, ttl).await
    }

    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        crate::renew_batch::renew_many(self, leases, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        crate::renew_release::release(self, lease).await
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        crate::admin::inspect(self, name).await
    }

    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        crate::admin::force_release(self, name).await
    }

    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        crate::wait::acquire_waiting(self, name, ttl, policy).await
    }
}
