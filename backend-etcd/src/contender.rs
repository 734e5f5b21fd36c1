//! A contender for a lock: the etcd lease an acquire runs on, whose key may be queued. Until it
//! is turned into a grant, dropping it revokes the lease (and so removes the key) in the
//! background, so that a cancelled or failed acquire never leaves a key blocking the queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock_core::backend::lock_unpoisoned;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::EtcdLeaseStore;
use crate::classify::is_lease_gone;
use crate::etcd_lease::{self, EtcdLease};
use crate::keepalive::KeepAlives;
use crate::rpc::Rpc;

/// See the module docs.
pub(crate) struct Contender {
    rpc: Rpc,
    keepalives: KeepAlives,
    lease: EtcdLease,
    /// The send instant of the latest keepalive etcd confirmed (or of the grant; for a reused
    /// spare, its last confirmed keepalive).
    confirmed: Arc<Mutex<Instant>>,
    keepalive: Option<(JoinHandle<()>, CancellationToken)>,
    armed: bool,
}

impl Contender {
    pub(crate) fn new(store: &EtcdLeaseStore, lease: EtcdLease) -> Self {
        Self {
            rpc: store.rpc.clone(),
            keepalives: store.keepalives.clone(),
            confirmed: Arc::new(Mutex::new(lease.sent_at)),
            lease,
            keepalive: None,
            armed: true,
        }
    }

    /// The etcd lease this contender runs on.
    pub(crate) fn lease(&self) -> EtcdLease {
        self.lease
    }

    /// Keeps the lease alive while this contender waits in the queue (every third of its TTL),
    /// so that a long wait does not let the queued key expire. If the waiter dies, keepalives stop
    /// and its key leaves the queue at most one TTL later, like a crashed holder's.
    pub(crate) fn keep_alive_while_waiting(&mut self) {
        let lost = CancellationToken::new();
        let task = tokio::spawn(keep_alive_loop(
            self.keepalives.clone(),
            self.lease,
            Arc::clone(&self.confirmed),
            lost.clone(),
        ));
        self.keepalive = Some((task, lost));
    }

    /// Resolves when the keepalive loop learned the lease is gone (never without the loop).
    pub(crate) async fn lost(&self) {
        match &self.keepalive {
            Some((_, lost)) => lost.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// The lease becomes a grant: stop the waiting keepalives, keep the lease. Returns the send
    /// instant of the latest confirmed keepalive, from which the grant's deadline counts.
    pub(crate) fn into_grant(mut self) -> Instant {
        self.stop_keepalive();
        self.armed = false;
        *lock_unpoisoned(&self.confirmed)
    }

    /// The lease is gone (revoked or expired): nothing to revoke any more.
    pub(crate) fn forget(mut self) {
        self.stop_keepalive();
        self.armed = false;
    }

    /// Leaves the queue now: revokes the lease, which deletes the key. If that fails, the drop
    /// retries in the background.
    pub(crate) async fn leave(mut self) {
        self.stop_keepalive();
        match etcd_lease::revoke(&self.rpc, self.lease.id).await {
            Ok(()) => self.armed = false,
            Err(e) => {
                tracing::debug!(lease = self.lease.id, error = %e, "revoke failed; retrying in the background")
            }
        }
    }

    fn stop_keepalive(&mut self) {
        if let Some((task, _)) = self.keepalive.take() {
            task.abort();
        }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        self.stop_keepalive();
        if self.armed {
            etcd_lease::spawn_revoke(self.rpc.clone(), self.lease.id);
        }
    }
}

async fn keep_alive_loop(
    keepalives: KeepAlives,
    lease: EtcdLease,
    confirmed: Arc<Mutex<Instant>>,
    lost: CancellationToken,
) {
    let every = (lease.ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let sent_at = Instant::now();
        match keepalives.keep_alive(lease.id).await {
            Ok(()) => *lock_unpoisoned(&confirmed) = sent_at,
            Err(e) if is_lease_gone(&e) => {
                tracing::debug!(lease = lease.id, "the waiting lease expired");
                lost.cancel();
                return;
            }
            Err(e) => {
                let last = *lock_unpoisoned(&confirmed);
                if last.elapsed() >= lease.ttl {
                    tracing::debug!(lease = lease.id, error = %e, "no keepalive confirmed for a whole TTL");
                    lost.cancel();
                    return;
                }
                tracing::debug!(lease = lease.id, error = %e, "keepalive while waiting failed; retrying");
            }
        }
    }
}
