//! Looking at and breaking a lock: the owner is the oldest key of the queue, whoever put it
//! (fencelock, `etcdctl lock`, a Go `concurrency.Mutex`).

use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use fencelock_core::{Error, FencingToken, LeaseInfo, LockName, Operation};

use crate::EtcdLeaseStore;
use crate::classify::classify;
use crate::etcd_lease;
use crate::keys::{holder_of, token_of};

/// How often force-release re-reads the queue when its owner changed under it.
const FORCE_ATTEMPTS: usize = 5;

/// [`fencelock_core::LeaseStore::inspect`]: the owner's create revision, lease id and the
/// lease's remaining TTL (whole seconds, as etcd reports it).
pub(crate) async fn inspect(
    store: &EtcdLeaseStore,
    name: &LockName,
) -> Result<Option<LeaseInfo>, Error> {
    let keys = store.lock_keys(name);
    let (queue, _) = store.read_queue(&keys, Operation::Inspect).await?;
    let Some(owner) = queue.owner() else {
        return Ok(None);
    };
    let token = token_of(owner.create_revision, Operation::Inspect)?;
    if owner.lease == 0 {
        // A key without a lease (not put by a lock client) never expires.
        return Ok(Some(LeaseInfo {
            token,
            holder: None,
            remaining: Duration::MAX,
        }));
    }
    let ttl = store
        .rpc
        .call(|mut c| {
            let lease = owner.lease;
            async move { c.lease_time_to_live(lease, None).await }
        })
        .await
        .map_err(|e| classify(Operation::Inspect, e))?
        .ttl();
    Ok(Some(LeaseInfo {
        token,
        holder: Some(holder_of(owner.lease)),
        remaining: Duration::from_secs(u64::try_from(ttl).unwrap_or(0)),
    }))
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
