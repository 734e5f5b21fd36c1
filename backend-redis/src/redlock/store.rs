//! `RedlockLeaseStore`: the `LeaseStore` contract on a majority of independent Redis servers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fencelock_core::backend::{ReleaseWatch, WakeupHub, ttl_millis};
use fencelock_core::{
    Diagnosis, Error, FencingToken, Lease, LeaseInfo, LeaseStore, ListQuery, Listing, LockName,
    Operation, OwnerLabel, PermitLimit, Permits, TtlLimits,
};

use super::instance::Instance;
use super::quorum::{self, REDLOCK, Replies, gather, no_majority, quorum};
use super::{acquire, release, watch};
use redis::Value;

use crate::keys::KeyLayout;
use crate::reply;
use crate::reply::Inspected;
use crate::scripts::{Call, SCRIPTS};

/// A [`LeaseStore`] on N independent Redis servers (N odd, at least 3): a grant holds when a
/// majority of them agreed within the validity budget, and its fencing token is above the
/// token of every earlier grant. See the [module docs](crate::redlock) for the protocol and
/// its assumptions.
///
/// Requests go to every server at once, each with its own time limit, so one slow or dead
/// server never slows the others. Clones share the connections and subscribers.
#[derive(Clone)]
pub struct RedlockLeaseStore {
    pub(super) inner: Arc<Inner>,
}

/// What every operation needs.
pub(crate) struct Inner {
    pub(crate) instances: Vec<Instance>,
    pub(crate) layout: KeyLayout,
    pub(crate) limits: TtlLimits,
    pub(crate) drift_factor: f64,
    pub(crate) server_timeout: Duration,
    /// The waiters, fed by every server's subscriber.
    pub(crate) waiters: Arc<WakeupHub>,
}

impl Inner {
    /// The TTL as the servers will apply it (whole milliseconds, rounded up), checked against
    /// the limits and the drift allowance.
    pub(crate) fn check_ttl(&self, ttl: Duration) -> Result<Duration, Error> {
        let ttl = Duration::from_millis(ttl_millis(self.limits.check(ttl)?));
        let drift = self.drift(ttl);
        if ttl <= drift * 2 {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "{ttl:?} leaves no validity after the clock-drift allowance of {drift:?}; Redlock needs a TTL above twice that"
                ),
            ));
        }
        Ok(ttl)
    }

    /// Runs `call` on every server at once, each within `limit`, and decodes each answer until
    /// `settled` (see [`gather`]).
    pub(crate) async fn ask_all<T: Send + 'static>(
        self: &Arc<Self>,
        op: Operation,
        call: Call,
        limit: Duration,
        decode: fn(Value) -> Result<T, Error>,
        settled: impl FnMut(&Replies<T>) -> bool,
    ) -> Replies<T> {
        let call = Arc::new(call);
        gather(
            self.instances.len(),
            |i| {
                let (inner, call) = (Arc::clone(self), Arc::clone(&call));
                async move { decode(inner.instances[i].run(op, &call, limit).await?) }
            },
            settled,
        )
        .await
    }

    /// The clock-drift allowance for `ttl`.
    pub(crate) fn drift(&self, ttl: Duration) -> Duration {
        quorum::drift(ttl, self.drift_factor)
    }

    /// The time limit of one acquire request to one server: the server timeout, at most a
    /// quarter of the TTL, so a silent server cannot eat the validity budget.
    pub(crate) fn acquire_timeout(&self, ttl: Duration) -> Duration {
        self.server_timeout
            .min(ttl / 4)
            .max(Duration::from_millis(1))
    }
}

impl RedlockLeaseStore {
    pub(super) fn assemble(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The key layout (prefix, key names, channel) used on every server.
    pub fn layout(&self) -> &KeyLayout {
        &self.inner.layout
    }

    /// How many servers there are.
    pub fn servers(&self) -> usize {
        self.inner.instances.len()
    }

    /// How many of them make a majority.
    pub fn quorum(&self) -> usize {
        quorum(self.inner.instances.len())
    }

    /// The clock-drift factor.
    pub fn drift_factor(&self) -> f64 {
        self.inner.drift_factor
    }
}

#[async_trait]
impl LeaseStore for RedlockLeaseStore {
    fn backend(&self) -> &'static str {
        REDLOCK
    }

    fn ttl_limits(&self) -> TtlLimits {
        self.inner.limits
    }

    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        acquire::try_acquire(&self.inner, name, ttl, label).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        release::renew(&self.inner, lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        release::release(&self.inner, lease).await
    }

    /// The grant held on a majority, with the least time left among those servers; `None` when
    /// no grant holds a majority.
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        let inner = &self.inner;
        let n = inner.instances.len();
        let q = quorum(n);
        let keys = inner.layout.lock(name);
        let inspect = Call::new(&SCRIPTS.inspect, &[&keys.lock]);
        let replies = inner
            .ask_all(
                Operation::Inspect,
                inspect,
                inner.server_timeout,
                reply::inspected,
                |r| majority_grant(r).is_some() || r.count(Option::is_none) >= q,
            )
            .await;
        if let Some(held) = majority_grant(&replies) {
            return Ok(Some(crate::list::info(held)));
        }
        if replies.ok.len() < q {
            return Err(no_majority(Operation::Inspect, n, replies.failed));
        }
        Ok(None)
    }

    /// `Unsupported`: a Redlock listing would have to scan every server and count, name by
    /// name, which grants hold on a majority, while grants come and go between the scans; no
    /// answer it gave could be trusted more than one server's. List one of the servers with a
    /// `RedisLeaseStore` to see what it holds (see the crate docs, "Redlock").
    async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        let _ = query;
        Err(Error::unsupported(
            REDLOCK,
            Operation::List,
            "Redlock cannot list: a name's grant holds only where a majority agrees, and scans of several servers cannot agree on a moment; inspect names one by one, or list one server with redis://",
        ))
    }

    /// `Unsupported`: a permit admitted by a majority of servers does not bound the permits
    /// held across them. With 3 servers and a limit of 2, permits admitted on {1, 2}, {2, 3}
    /// and {1, 3} each have a majority while every server holds only 2: three hold at once.
    /// A quorum large enough to prevent that is nearly every server, and a server restarting
    /// empty undoes it (see the crate docs, "Semaphores").
    async fn try_acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        let _ = (name, limit, ttl, label);
        Err(no_semaphores(Operation::Acquire))
    }

    /// `Unsupported`, as [`RedlockLeaseStore::try_acquire_permit`].
    async fn inspect_permits(&self, name: &LockName) -> Result<Permits, Error> {
        let _ = name;
        Err(no_semaphores(Operation::Inspect))
    }

    /// Breaks whatever grant holds on every server that answers and announces it there.
    /// Returns the highest token broken (the grant's, when a grant held), `None` if nothing was
    /// held; an error when fewer than a majority answered.
    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        let inner = &self.inner;
        let n = inner.instances.len();
        let keys = inner.layout.lock(name);
        let force = Call::new(&SCRIPTS.force_release, &[&keys.lock])
            .arg(inner.layout.release_channel(name))
            .arg(name.as_str());
        let replies = inner
            .ask_all(
                Operation::ForceRelease,
                force,
                inner.server_timeout,
                reply::broken,
                |_| false,
            )
            .await;
        if replies.ok.len() < quorum(n) {
            return Err(no_majority(Operation::ForceRelease, n, replies.failed));
        }
        Ok(replies
            .ok
            .iter()
            .filter_map(|(_, g)| g.map(|g| g.token))
            .max())
    }

    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        watch::watch_released(&self.inner, name).await
    }

    /// Every server diagnosed as a single Redis server (findings prefixed `server N`), and
    /// whether a majority answers: fewer is a `Fail` finding, none at all an error.
    async fn diagnose(&self) -> Result<Diagnosis, Error> {
        super::diagnose::diagnose(&self.inner).await
    }
}

/// The grant held by a majority of the answers (its label as the first of them stores it), with
/// the least remaining time among them.
fn majority_grant(replies: &Replies<Option<Inspected>>) -> Option<Inspected> {
    let q = quorum(replies.ok.len() + replies.failed.len() + replies.pending.len());
    replies.ok.iter().find_map(|(_, held)| {
        let (grant, label, _) = held.as_ref()?;
        let same: Vec<u64> = replies
            .ok
            .iter()
            .filter_map(|(_, h)| {
                h.as_ref()
                    .filter(|(g, _, _)| g == grant)
                    .map(|(_, _, pttl)| *pttl)
            })
            .collect();
        (same.len() >= q).then(|| (*grant, label.clone(), same.into_iter().min().unwrap_or(0)))
    })
}

impl fmt::Debug for RedlockLeaseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockLeaseStore")
            .field("servers", &self.inner.instances)
            .field("quorum", &self.quorum())
            .field("key_prefix", &self.inner.layout.prefix())
            .field("drift_factor", &self.inner.drift_factor)
            .field("server_timeout", &self.inner.server_timeout)
            .field("max_ttl", &self.inner.limits.max())
            .finish_non_exhaustive()
    }
}

/// Why Redlock has no semaphores, for the error of every semaphore operation.
fn no_semaphores(op: Operation) -> Error {
    Error::unsupported(
        REDLOCK,
        op,
        "Redlock has no semaphores: permit counts admitted by a majority of servers do not add up to a limit across them (with 3 servers and a limit of 2, permits admitted on servers {1,2}, {2,3} and {1,3} all hold); use a semaphore on one Redis, a Cluster or Sentinel",
    )
}
