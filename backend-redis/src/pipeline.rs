//! Batched renewal: the renew script for every lease of a batch in one [`Batch`] — one write and
//! one read on the connection for N leases; a batch may mix locks and semaphores' permits (each
//! lease gets its own kind's script, [`renew_call`]). On a Redis Cluster, where a pipeline may not span
//! slots, each lease's call is sent on its own, all of them at once.

use std::time::Duration;

use fencelock_core::backend::{fail_each, renewed_lease, ttl_millis};
use fencelock_core::{Error, Lease, Operation};
use redis::aio::ConnectionLike;
use tokio::time::Instant;

use crate::classify::classify;
use crate::permits::renew_call;
use crate::reply::{self, Compared};
use crate::scripts::Batch;
use crate::store::{Shared, loss};

/// [`fencelock_core::LeaseStore::renew_many`] on Redis.
pub(crate) async fn renew_many<C>(
    conn: &C,
    shared: &Shared,
    leases: &[Lease],
    ttl: Duration,
) -> Vec<Result<Lease, Error>>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let ttl_ms = match shared.limits.check(ttl) {
        Ok(ttl) => ttl_millis(ttl),
        Err(error) => return every(error, leases),
    };
    if leases.is_empty() {
        return Vec::new();
    }
    if shared.is_cluster() {
        return renew_each(conn, shared, leases, ttl_ms).await;
    }
    let mut batch = Batch::with_capacity(leases.len());
    for lease in leases {
        batch.push(renew_call(shared, lease, ttl_ms));
    }
    let mut conn = conn.clone();
    // As for one renewal, the deadline counts from the first send, also for a lease whose
    // script had to be loaded and sent again.
    let sent_at = Instant::now();
    let answers = match batch.run(&mut conn).await {
        Ok(answers) => answers,
        Err(e) => return every(classify(Operation::Renew, e), leases),
    };
    leases
        .iter()
        .zip(answers)
        .map(|(lease, answer)| {
            let value = answer.map_err(|e| classify(Operation::Renew, e))?;
            match reply::compared(Operation::Renew, value)? {
                Compared::Done => Ok(renewed_lease(lease, Duration::from_millis(ttl_ms), sent_at)),
                Compared::Lost(current) => Err(loss(lease, current)),
            }
        })
        .collect()
}

/// One renew call per lease, all in flight at once (a cluster routes each to its slot's
/// primary).
async fn renew_each<C>(
    conn: &C,
    shared: &Shared,
    leases: &[Lease],
    ttl_ms: u64,
) -> Vec<Result<Lease, Error>>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let sent_at = Instant::now();
    let renewals = leases.iter().map(|lease| {
        let call = renew_call(shared, lease, ttl_ms);
        let mut conn = conn.clone();
        async move {
            let value = call
                .run(&mut conn)
                .await
                .map_err(|e| classify(Operation::Renew, e))?;
            match reply::compared(Operation::Renew, value)? {
                Compared::Done => Ok(renewed_lease(lease, Duration::from_millis(ttl_ms), sent_at)),
                Compared::Lost(current) => Err(loss(lease, current)),
            }
        }
    });
    futures::future::join_all(renewals).await
}

/// The same failure for every lease of the batch.
fn every(error: Error, leases: &[Lease]) -> Vec<Result<Lease, Error>> {
    fail_each(error, leases.len())
}
