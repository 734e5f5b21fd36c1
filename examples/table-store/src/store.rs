//! [`TableStore`]: the `LeaseStore` contract over the table server, one wire call per method.
//!
//! Each method follows a rule of the contract (see `fencelock_core::backend`): validate before
//! sending, stamp the send, let the server's clock judge expiry, compare the exact grant on
//! renew and release, answer a lost grant with `lost_or_superseded`, and classify every
//! failure in one place.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::backend::{
    ReleaseWatch, WakeupHub, granted_lease, holder_id, labeled, lost_or_superseded, renewed_lease,
    stored_label, ttl_millis,
};
use fencelock_core::{
    Error, FencingToken, HolderId, Lease, LeaseInfo, LeaseStore, LockName, Operation, OwnerLabel,
    TtlLimits, async_trait,
};
use tokio::time::Instant;

use fencelock_example_table_store::STORE;
use fencelock_example_table_store::server::{Down, Grant, TableServer};

/// A lease store over a [`TableServer`]. Clones share the connection and its wake-ups.
#[derive(Clone, Debug)]
pub struct TableStore {
    server: TableServer,
    /// Fed by the server's release notices; waiters subscribe here.
    hub: Arc<WakeupHub>,
    limits: TtlLimits,
}

impl TableStore {
    /// Connects to `server`, subscribing to its release notices.
    pub fn connect(server: &TableServer) -> Self {
        let hub = Arc::new(WakeupHub::new());
        server.subscribe(&hub);
        Self {
            server: server.clone(),
            hub,
            limits: TtlLimits::default(),
        }
    }
}

/// The one place failures are classified. The server refuses a request before applying it
/// when it is stopped, so `Down` is "not applied" (`Unavailable`, worth retrying). A real
/// network would add "sent, no answer" (`Error::outcome_unknown`): the request may have been
/// applied.
fn classify(op: Operation, down: Down) -> Error {
    Error::unavailable(STORE, op, down)
}

#[async_trait]
impl LeaseStore for TableStore {
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
        // Bad input is an error before anything is sent.
        let ttl_ms = ttl_millis(self.limits.check(ttl)?);
        let holder = HolderId::random();
        // The deadline counts from the send: the server starts its TTL no earlier.
        let sent_at = Instant::now();
        let grant = self
            .server
            .acquire(
                name.as_str(),
                holder.as_u128(),
                ttl_ms,
                label.map(OwnerLabel::as_str),
            )
            .map_err(|down| classify(Operation::Acquire, down))?;
        match grant {
            // The lease reports the TTL the server granted, never more, and the label it
            // stored with the grant.
            Grant::Granted(token) => Ok(Some(labeled(
                granted_lease(
                    name.clone(),
                    FencingToken::new(token),
                    holder,
                    Duration::from_millis(ttl_ms),
                    sent_at,
                ),
                label,
            ))),
            // Contention is a value.
            Grant::Held => Ok(None),
            Grant::Exhausted => Err(Error::backend(
                STORE,
                Operation::Acquire,
                format!("the token counter of `{name}` is exhausted"),
            )),
        }
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let ttl_ms = ttl_millis(self.limits.check(ttl)?);
        let sent_at = Instant::now();
        let answer = self
            .server
            .renew(
                lease.name().as_str(),
                lease.holder().as_u128(),
                lease.token().get(),
                ttl_ms,
            )
            .map_err(|down| classify(Operation::Renew, down))?;
        match answer {
            Ok(()) => Ok(renewed_lease(lease, Duration::from_millis(ttl_ms), sent_at)),
            // Gone: expired, released, broken, or someone else's now. Say who, if anyone.
            Err(current) => Err(lost_or_superseded(lease, current.map(FencingToken::new))),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let answer = self
            .server
            .release(
                lease.name().as_str(),
                lease.holder().as_u128(),
                lease.token().get(),
            )
            .map_err(|down| classify(Operation::Release, down))?;
        answer.map_err(|current| lost_or_superseded(lease, current.map(FencingToken::new)))
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        let holder = self
            .server
            .inspect(name.as_str())
            .map_err(|down| classify(Operation::Inspect, down))?;
        Ok(holder.map(|h| LeaseInfo {
            token: FencingToken::new(h.token),
            holder: Some(holder_id(h.holder)),
            remaining: h.remaining,
            label: h.label.as_deref().and_then(stored_label),
        }))
    }

    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        let broken = self
            .server
            .break_lock(name.as_str())
            .map_err(|down| classify(Operation::ForceRelease, down))?;
        Ok(broken.map(FencingToken::new))
    }

    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        // Waiters are woken by the server's release notices, not left to poll.
        Ok(Some(self.hub.subscribe(name)))
    }
}
