//! etcd's own leases (not fencelock's [`fencelock_core::Lease`], which a grant of a lock is):
//! whole-second TTLs, granting one, revoking one (also in the background). Keepalives go
//! through the store's shared stream ([`crate::keepalive`]).

use std::time::Duration;

use fencelock_core::{Error, Operation};
use tokio::time::Instant;

use crate::EtcdLeaseStore;
use crate::classify::{classify, is_lease_gone};
use crate::rpc::Rpc;

/// An etcd lease granted to us: its id, granted TTL, and the instant its grant was sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EtcdLease {
    pub(crate) id: i64,
    /// The TTL etcd granted: whole seconds, at least its minimum.
    pub(crate) ttl: Duration,
    /// When the grant request left this process: the lease cannot expire before this + `ttl`.
    pub(crate) sent_at: Instant,
}

/// `ttl` in whole seconds, rounded up: etcd leases have one-second granularity.
pub(crate) fn ttl_seconds(ttl: Duration) -> i64 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Grants a fresh lease for `ttl` (rounded up to whole seconds).
pub(crate) async fn grant(
    store: &EtcdLeaseStore,
    ttl: Duration,
    op: Operation,
) -> Result<EtcdLease, Error> {
    let sent_at = Instant::now();
    let resp = store
        .rpc
        .call(|mut c| async move { c.lease_grant(ttl_seconds(ttl), None).await })
        .await
        .map_err(|e| classify(op, e))?;
    let granted = u64::try_from(resp.ttl())
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            Error::backend(
                crate::classify::STORE,
                op,
                format!("etcd granted lease {:x} with TTL {}", resp.id(), resp.ttl()),
            )
        })?;
    Ok(EtcdLease {
        id: resp.id(),
        ttl: Duration::from_secs(granted),
        sent_at,
    })
}

/// Revokes lease `id` (and with it every key attached to it). A lease that is already gone
/// counts as revoked.
pub(crate) async fn revoke(rpc: &Rpc, id: i64) -> Result<(), etcd_client::Error> {
    match rpc
        .call(|mut c| async move { c.lease_revoke(id).await })
        .await
    {
        Err(e) if !is_lease_gone(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Revokes lease `id` in the background, retrying a few times; if that never succeeds the lease
/// still expires after its TTL. Needs a tokio runtime; without one only the TTL is left.
pub(crate) fn spawn_revoke(rpc: Rpc, id: i64) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            lease = id,
            "no tokio runtime to revoke the lease on; it expires after its TTL"
        );
        return;
    };
    runtime.spawn(async move {
        let mut pause = Duration::from_millis(50);
        for attempt in 1..=5 {
            match revoke(&rpc, id).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(lease = id, attempt, error = %e, "revoking a lease failed");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        tracing::warn!(
            lease = id,
            "could not revoke the lease; its key stays queued until the lease's TTL runs out"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        for (ttl, secs) in [
            (Duration::from_millis(1), 1),
            (Duration::from_millis(999), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(60), 60),
            (Duration::MAX, i64::MAX),
        ] {
            assert_eq!(ttl_seconds(ttl), secs, "{ttl:?}");
        }
    }
}
