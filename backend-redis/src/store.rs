//! `RedisLeaseStore`: the `LeaseStore` contract on one Redis server, one script per operation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fencelock_core::backend::labeled;
use fencelock_core::backend::{
    ReleaseWatch, granted_lease, lost_or_superseded, renewed_lease, ttl_millis,
};
use fencelock_core::{
    Diagnosis, Error, FencingToken, HolderId, Lease, LeaseInfo, LeaseStore, ListQuery, Listing,
    LockName, Operation, OwnerLabel, PermitAttempt, PermitLimit, Permits, TtlLimits,
};
use redis::Value;
use redis::aio::{ConnectionLike, ConnectionManager};
use tokio::time::Instant;

use crate::classify::{STORE, classify};
use crate::fence::RedisFence;
use crate::grant::{Grant, holder_hex, label_suffix};
use crate::keys::KeyLayout;
use crate::permits::{release_call, renew_call};
use crate::reply::{self, Acquired, Compared};
use crate::scripts::{Call, SCRIPTS};
use crate::wakeups::{Topic, Wakeups};

/// A [`LeaseStore`] on Redis.
///
/// Every operation is one `EVALSHA` round trip of one Lua script, and a batch of renewals is one
/// pipeline of them (see the crate docs for the key layout and the token guarantee). Clones
/// share the connection and the subscriber.
///
/// `C` is the connection: a [`ConnectionManager`] (reconnects by itself; what
/// [`RedisLeaseStore::connect`] builds) or any other [`ConnectionLike`] that is cheap to clone,
/// such as a `MultiplexedConnection` you already have.
#[derive(Clone)]
pub struct RedisLeaseStore<C = ConnectionManager> {
    conn: C,
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) layout: KeyLayout,
    pub(crate) limits: TtlLimits,
    pub(crate) target: String,
    pub(crate) wakeups: Option<Wakeups>,
    pub(crate) topology: Topology,
    /// The sharded-pub/sub subscriber of a cluster store.
    pub(crate) sharded: Option<crate::cluster_wakeups::ClusterWakeups>,
    /// A cluster store's connection, for what goes to every primary (listing's `SCAN`).
    pub(crate) nodes: Option<redis::cluster_async::ClusterConnection>,
}

/// The deployment behind the connection, for what differs by topology.
pub(crate) enum Topology {
    /// One server (or a proxy in front of one).
    Single,
    /// A Redis Cluster: no pipeline may span slots, releases are announced with `SPUBLISH`, and
    /// `diagnose` asks every primary through this handle on the store's cluster connection.
    Cluster(redis::cluster_async::ClusterConnection),
    /// A primary behind Sentinel: `diagnose` asks the sentinels too.
    Sentinel(crate::diagnose::sentinel::Sentinels),
}

impl Shared {
    /// Whether the connection is a Redis Cluster's.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster(_))
    }
}

impl<C> RedisLeaseStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub(crate) fn assemble(conn: C, shared: Shared) -> Self {
        Self {
            conn,
            shared: Arc::new(shared),
        }
    }

    /// The key layout (prefix, key names, channel) this store uses.
    pub fn layout(&self) -> &KeyLayout {
        &self.shared.layout
    }

    /// A handle for fenced writes into this Redis through the store's connection.
    pub fn fence(&self) -> RedisFence<C> {
        RedisFence::new(self.conn.clone())
    }

    /// The connection the store sends its scripts on.
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// A watch on `topic` announcements of `name` from the store's subscriber (sharded on a
    /// cluster); `Ok(None)` without one (push wake-ups off, or behind Sentinel): waiters poll.
    async fn watch(&self, topic: Topic, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        if let Some(sharded) = &self.shared.sharded {
            return sharded.watch(topic, name).await;
        }
        match &self.shared.wakeups {
            Some(wakeups) => wakeups.watch(topic, name).await,
            None => Ok(None),
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) async fn run(&self, op: Operation, call: &Call) -> Result<Value, Error> {
        let mut conn = self.conn.clone();
        call.run(&mut conn).await.map_err(|e| classify(op, e))
    }
}

/// The release scripts' last argument on a cluster: announce with `SPUBLISH`.
pub(crate) const SHARDED: &str = "sharded";

/// Why `lease` no longer holds, given the grant the store has now.
pub(crate) fn loss(lease: &Lease, current: Option<Grant>) -> Error {
    lost_or_superseded(lease, current.map(|grant| grant.token))
}

#[async_trait]
impl<C> LeaseStore for RedisLeaseStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn backend(&self) -> &'static str {
        STORE
    }

    fn ttl_limits(&self) -> TtlLimits {
        self.shared.limits
    }

    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        let ttl = self.shared.limits.check(ttl)?;
        let ttl_ms = ttl_millis(ttl);
        let keys = self.shared.layout.lock(name);
        let holder = HolderId::random();
        let call = Call::new(&SCRIPTS.acquire, &[&keys.lock, &keys.counter])
            .arg(&holder_hex(holder)[..])
            .arg(ttl_ms)
            .arg(label_suffix(label));
        let sent_at = Instant::now();
        match reply::acquired(self.run(Operation::Acquire, &call).await?)? {
            Acquired::Held => Ok(None),
            Acquired::Granted(grant) if grant.holder == holder => Ok(Some(labeled(
                granted_lease(
                    name.clone(),
                    grant.token,
                    holder,
                    Duration::from_millis(ttl_ms),
                    sent_at,
                ),
                label,
            ))),
            Acquired::Granted(other) => Err(crate::classify::unexpected_reply(
                Operation::Acquire,
                format!("granted holder {} instead of {holder}", other.holder),
            )),
        }
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let ttl = self.shared.limits.check(ttl)?;
        let ttl_ms = ttl_millis(ttl);
        let call = renew_call(&self.shared, lease, ttl_ms);
        let sent_at = Instant::now();
        match reply::compared(Operation::Renew, self.run(Operation::Renew, &call).await?)? {
            Compared::Done => Ok(renewed_lease(lease, Duration::from_millis(ttl_ms), sent_at)),
            Compared::Lost(current) => Err(loss(lease, current)),
        }
    }

    /// One pipeline of renew scripts for the whole batch (locks and permits alike).
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        crate::pipeline::renew_many(&self.conn, &self.shared, leases, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let call = release_call(&self.shared, lease);
        match reply::compared(
            Operation::Release,
            self.run(Operation::Release, &call).await?,
        )? {
            Compared::Done => Ok(()),
            Compared::Lost(current) => Err(loss(lease, current)),
        }
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        let key = self.shared.layout.lock_key(name);
        let call = Call::new(&SCRIPTS.inspect, &[&key]);
        let held = reply::inspected(self.run(Operation::Inspect, &call).await?)?;
        Ok(held.map(crate::list::info))
    }

    /// `SCAN` for the lock keys under the prefix (every primary of a cluster), then the inspect
    /// script on the first names in order (see the crate docs, "How it works").
    async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        crate::list::list(&self.conn, &self.shared, query).await
    }

    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        let key = self.shared.layout.lock_key(name);
        let mut call = Call::new(&SCRIPTS.force_release, &[&key])
            .arg(self.shared.layout.release_channel(name))
            .arg(name.as_str());
        if self.shared.is_cluster() {
            call = call.arg(SHARDED);
        }
        let broken = reply::broken(self.run(Operation::ForceRelease, &call).await?)?;
        Ok(broken.map(|grant| grant.token))
    }

    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.watch(Topic::Lock, name).await
    }

    /// One script: drop the expired permits, compare the limit, mint a token (the lock's rule,
    /// on the semaphore's own counter) and add the permit (see the crate docs, "Semaphores").
    async fn try_acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        Ok(self
            .acquire_permit(name, limit, ttl, label)
            .await?
            .into_granted())
    }

    /// The same script: a refusal answers the first permit's time left (the lowest score of
    /// the semaphore's ZSET), so a waiter needs no second request.
    async fn try_acquire_permit_or_next_expiry(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        self.acquire_permit(name, limit, ttl, label).await
    }

    async fn inspect_permits(&self, name: &LockName) -> Result<Permits, Error> {
        self.permits_of(name).await
    }

    /// The semaphore's own release channel, on the store's one subscriber (sharded pub/sub on a
    /// cluster); `Ok(None)` behind Sentinel or with push wake-ups off: waiters poll.
    async fn watch_permits(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.watch(Topic::Permits, name).await
    }

    /// `INFO` and `CONFIG GET` over the store's connection: version, persistence, eviction
    /// policy, replication role; on a cluster of every primary, with the cluster's state and
    /// coverage; behind Sentinel of the primary, with what the sentinels say (see the crate
    /// docs, "Diagnosis").
    async fn diagnose(&self) -> Result<Diagnosis, Error> {
        let mut conn = self.conn.clone();
        match &self.shared.topology {
            Topology::Single => {
                let settings = crate::diagnose::ask(&mut conn).await?;
                Ok(crate::diagnose::diagnosis(&settings))
            }
            Topology::Cluster(cluster) => crate::diagnose::cluster::diagnose(cluster).await,
            Topology::Sentinel(sentinels) => {
                crate::diagnose::sentinel::diagnose(&mut conn, sentinels).await
            }
        }
    }
}

impl<C> fmt::Debug for RedisLeaseStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLeaseStore")
            .field("target", &self.shared.target)
            .field("key_prefix", &self.shared.layout.prefix())
            .field("max_ttl", &self.shared.limits.max())
            .field("wakeups", &self.shared.wakeups)
            .finish_non_exhaustive()
    }
}
