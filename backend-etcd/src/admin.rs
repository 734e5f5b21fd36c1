//! Looking at and breaking a lock: the owner is the oldest key of the queue, whoever put it
//! (fencelock, `etcdctl lock`, a Go `concurrency.Mutex`).

use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use fencelock_core::backend::stored_label;
use fencelock_core::{Error, FencingToken, LeaseInfo, LockName, Operation, OwnerLabel};

use crate::EtcdLeaseStore;
use crate::classify::classify;
use crate::etcd_lease;
use crate::keys::{holder_of, token_of};
use crate::queue_snapshot::QueuedKey;

/// How often force-release re-reads the queue when its owner changed under it.
const FORCE_ATTEMPTS: usize = 5;

/// [`fencelock_core::LeaseStore::inspect`]: the owner's create revision, lease id, the lease's
/// remaining TTL (whole seconds, see [`remaining_of`]) and the key's value as its label.
pub(crate) async fn inspect(
    store: &EtcdLeaseStore,
    name: &LockName,
) -> Result<Option<LeaseInfo>, Error> {
    let keys = store.lock_keys(name);
    let (queue, _) = store.read_queue(&keys, Operation::Inspect).await?;
    let Some(owner) = queue.owner() else {
        return Ok(None);
    };
    // The queue read is keys only (it is on every waiter's path); read the owner's value.
    let value = store
        .rpc
        .call(|mut c| {
            let key = owner.key.clone();
            async move { c.get(key, None).await }
        })
        .await
        .map_err(|e| classify(Operation::Inspect, e))?;
    let value = value
        .kvs()
        .iter()
        .find(|kv| kv.create_revision() == owner.create_revision)
        .map(etcd_client::KeyValue::value);
    owner_info(store, owner, value, Operation::Inspect)
        .await
        .map(Some)
}

/// What `inspect` and `list` report about a queue's owner whose key holds `value`.
pub(crate) async fn owner_info(
    store: &EtcdLeaseStore,
    owner: &QueuedKey,
    value: Option<&[u8]>,
    op: Operation,
) -> Result<LeaseInfo, Error> {
    let token = token_of(owner.create_revision, op)?;
    let label = value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(stored_label);
    lease_info(store, token, owner.lease, label, op).await
}

/// A holder with `token` on etcd lease `lease` (0: a key without a lease, which never
/// expires) and `label`: the lease's remaining TTL looked up (see [`remaining_of`]).
pub(crate) async fn lease_info(
    store: &EtcdLeaseStore,
    token: FencingToken,
    lease: i64,
    label: Option<OwnerLabel>,
    op: Operation,
) -> Result<LeaseInfo, Error> {
    if lease == 0 {
        // A key without a lease (not put by a lock client) never expires.
        return Ok(LeaseInfo {
            token,
            holder: None,
            remaining: Duration::MAX,
            label,
        });
    }
    let ttl = store
        .rpc
        .call(|mut c| async move { c.lease_time_to_live(lease, None).await })
        .await
        .map_err(|e| classify(op, e))?;
    Ok(LeaseInfo {
        token,
        holder: Some(holder_of(lease)),
        remaining: remaining_of(ttl.ttl(), ttl.granted_ttl()),
        label,
    })
}

/// The time left on a lease of which etcd says `ttl` whole seconds are left (rounded down;
/// -1 when it is gone) out of `granted`: rounded up, never above the granted TTL. An upper
/// bound errs on the side of "still held", and a lease in its last second does not read as
/// over (a 1 s lease always would), so a reader waiting for it to run out waits that second
/// instead of asking again at once.
fn remaining_of(ttl: i64, granted: i64) -> Duration {
    if ttl < 0 {
        return Duration::ZERO;
    }
    let secs = ttl.saturating_add(1).min(granted).max(ttl);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// [`fencelock_core::LeaseStore::force_release`]: deletes the owner's key iff it is still the
/// same key (txn on its create revision), then revokes the owner's lease so that its holder
/// learns of the loss at its next keepalive. Note that a Go session shares one lease across all
/// its mutexes: breaking a Go holder ends its whole session.
pub(crate) async fn force_release(
    store: &EtcdLeaseStore,
    name: &LockName,
) -> Result<Option<FencingToken>, Error> {
    let keys = store.lock_keys(name);
    for _ in 0..FORCE_ATTEMPTS {
        let (queue, _) = store.read_queue(&keys, Operation::ForceRelease).await?;
        let Some(owner) = queue.owner() else {
            return Ok(None);
        };
        let token = token_of(owner.create_revision, Operation::ForceRelease)?;
        let txn = Txn::new()
            .when([Compare::create_revision(
                owner.key.clone(),
                CompareOp::Equal,
                owner.create_revision,
            )])
            .and_then([TxnOp::delete(owner.key.clone(), None)]);
        let resp = store
            .rpc
            .txn(txn)
            .await
            .map_err(|e| classify(Operation::ForceRelease, e))?;
        if !resp.succeeded() {
            continue; // released or broken meanwhile: look again
        }
        if owner.lease != 0 {
            etcd_lease::revoke(&store.rpc, owner.lease)
                .await
                .map_err(|e| classify(Operation::ForceRelease, e))?;
        }
        return Ok(Some(token));
    }
    Err(Error::backend(
        crate::classify::STORE,
        Operation::ForceRelease,
        format!(
            "the owner of `{name}` changed {FORCE_ATTEMPTS} times while breaking it; try again"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_is_etcds_whole_seconds_rounded_up_within_the_grant() {
        let secs = Duration::from_secs;
        for (ttl, granted, remaining) in [
            (0, 1, secs(1)),   // a 1 s lease, always in its last second
            (9, 10, secs(10)), // just granted or renewed
            (10, 10, secs(10)),
            (4, 10, secs(5)),
            (0, 10, secs(1)),
            (-1, 10, Duration::ZERO), // gone
            (5, 0, secs(5)),          // a granted TTL etcd did not say: etcd's own answer
        ] {
            assert_eq!(
                remaining_of(ttl, granted),
                remaining,
                "ttl {ttl}, granted {granted}"
            );
        }
    }
}
