//! Renewing and releasing one exact grant: the holder key of this lease, with this create
//! revision.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use fencelock_core::backend::{lost_or_superseded, renewed_lease};
use fencelock_core::{Error, Lease, Operation};
use tokio::time::Instant;

use crate::EtcdLeaseStore;
use crate::classify::{classify, classify_for};
use crate::keys::{LockKeys, lease_id_of, revision_of, token_of};
use crate::queue_snapshot::{QueueSnapshot, queue_range};

/// The etcd lease id and create revision a lease stands for; `LeaseLost` if it cannot stand
/// for any (a forged holder id or token).
pub(crate) fn ids_of(lease: &Lease) -> Result<(i64, i64), Error> {
    match (lease_id_of(lease.holder()), revision_of(lease.token())) {
        (Some(id), Some(rev)) => Ok((id, rev)),
        _ => Err(lost_or_superseded(lease, None)),
    }
}

/// The error for `lease` (created at `revision`), which is not the owner of `queue`: `LeaseLost`,
/// superseded iff the owner is newer. Only a newer owner's create revision must be a token.
fn loss_in(queue: &QueueSnapshot, lease: &Lease, revision: i64, op: Operation) -> Error {
    let newer = queue
        .owner()
        .map(|owner| owner.create_revision)
        .filter(|rev| *rev > revision);
    match newer.map(|rev| token_of(rev, op)).transpose() {
        Ok(current) => lost_or_superseded(lease, current),
        Err(e) => e,
    }
}

/// [`fencelock_core::LeaseStore::renew`]: one keepalive of the lease, then a check that its key
/// still exists with the same create revision (a force-release deletes the key but may leave the
/// lease alive).
///
/// etcd cannot change a lease's TTL: a keepalive restores the TTL granted at acquire, so the
/// renewed lease reports that TTL whatever `ttl` asks (which is still validated).
pub(crate) async fn renew(
    store: &EtcdLeaseStore,
    lease: &Lease,
    ttl: Duration,
) -> Result<Lease, Error> {
    let (lease_id, revision, sent_at) = keep_alive(store, lease, ttl).await?;
    // The key was attached to the lease before this keepalive was sent, so if it still exists
    // now, it lives at least until `sent_at` + TTL (unless deleted explicitly).
    let keys = store.lock_keys(lease.name());
    let (queue, _) = store.read_queue(&keys, Operation::Renew).await?;
    renewed_in(&queue, &keys, lease, (lease_id, revision), sent_at)
}

/// The first step of every renewal (a lock's or a permit's): validates `ttl`, then one
/// keepalive of `lease`'s etcd lease. Its lease id, the revision its token stands for, and the
/// instant the keepalive was sent; a lease etcd no longer knows is `LeaseLost`.
pub(crate) async fn keep_alive(
    store: &EtcdLeaseStore,
    lease: &Lease,
    ttl: Duration,
) -> Result<(i64, i64, Instant), Error> {
    store.ttl_limits_checked(ttl)?;
    let (lease_id, revision) = ids_of(lease)?;
    let sent_at = Instant::now();
    store
        .keepalives
        .keep_alive(lease_id)
        .await
        .map_err(|e| classify_for(lease, Operation::Renew, e))?;
    Ok((lease_id, revision, sent_at))
}

/// `lease` renewed by a keepalive sent at `sent_at`, if `queue` (read after that keepalive was
/// confirmed) still has its key, with its create revision, as the owner.
pub(crate) fn renewed_in(
    queue: &QueueSnapshot,
    keys: &LockKeys,
    lease: &Lease,
    (lease_id, revision): (i64, i64),
    sent_at: Instant,
) -> Result<Lease, Error> {
    let key = keys.holder_key(lease_id);
    let held = queue
        .owner()
        .is_some_and(|owner| owner.key == key && owner.create_revision == revision);
    if !held {
        return Err(loss_in(queue, lease, revision, Operation::Renew));
    }
    Ok(renewed_lease(lease, lease.ttl(), sent_at))
}

/// [`fencelock_core::LeaseStore::release`]: deletes the holder key iff its create revision
/// still matches (one txn), then keeps the bare lease as a spare for the next acquire (or
/// revokes it in the background, see [`crate::spare`]). Waiters watch that delete; nothing
/// else is published.
pub(crate) async fn release(store: &EtcdLeaseStore, lease: &Lease) -> Result<(), Error> {
    let (lease_id, revision) = ids_of(lease)?;
    let keys: LockKeys = store.lock_keys(lease.name());
    let key = keys.holder_key(lease_id);
    let txn = Txn::new()
        .when([Compare::create_revision(
            key.clone(),
            CompareOp::Equal,
            revision,
        )])
        .and_then([TxnOp::delete(key, None)])
        .or_else([TxnOp::get(keys.prefix(), Some(queue_range()))]);
    let resp = store
        .rpc
        .txn(txn)
        .await
        .map_err(|e| classify(Operation::Release, e))?;
    if !resp.succeeded() {
        let queue = match resp.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => QueueSnapshot::from_kvs(&keys, get.kvs()),
            _ => QueueSnapshot::default(),
        };
        return Err(loss_in(&queue, lease, revision, Operation::Release));
    }
    // Our txn deleted the key, so the lock is free and waiters are already woken: the bare
    // lease holds nothing. Keep it for the next acquire, or revoke it off the caller's path.
    store.spares.put(lease, lease_id);
    Ok(())
}
