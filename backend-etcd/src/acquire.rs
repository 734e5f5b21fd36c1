//! Taking a lock once: take a spare lease or grant one, then one txn that puts its key iff
//! nothing is queued under the name (the uncontended case: one write), else reads the queue
//! (held: nothing written, the lease is kept as a spare). Only when the prefix holds nothing but
//! keys of nested names does it queue the key the long way: queue and read in one txn, own the
//! lock iff the key is the oldest in the queue — else leave the queue at once.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use fencelock_core::backend::{granted_lease, labeled};
use fencelock_core::{Error, Lease, LockName, Operation, OwnerLabel};

use crate::EtcdLeaseStore;
use crate::classify::{STORE, classify, is_lease_gone};
use crate::contender::Contender;
use crate::etcd_lease::{self, EtcdLease};
use crate::keys::{LockKeys, holder_of, token_of};
use crate::queue_snapshot::{QueueSnapshot, queue_range};

/// This holder's key in the queue, and the queue as the txn saw it (a lock's, or a
/// semaphore's).
pub(crate) struct Enqueued<Q = QueueSnapshot> {
    /// The key's create revision: the token, if it becomes the owner.
    pub(crate) revision: i64,
    /// The revision the queue was read at; watch from the next one.
    pub(crate) read_at: i64,
    pub(crate) queue: Q,
}

/// A lease for a request of `ttl`: a fresh spare if `spares` allows and one exists (then
/// `true`), else a new grant.
pub(crate) async fn lease_for(
    store: &EtcdLeaseStore,
    ttl: Duration,
    spares: bool,
) -> Result<(EtcdLease, bool), Error> {
    if spares && let Some(spare) = store.spares.take(ttl) {
        return Ok((spare, true));
    }
    let granted = etcd_lease::grant(store, ttl, Operation::Acquire).await?;
    store.spares.note_grant(ttl, &granted);
    Ok((granted, false))
}

/// The error for a lease etcd forgot between granting it and our first use of it.
pub(crate) fn vanished(lease_id: i64) -> Error {
    Error::backend(
        STORE,
        Operation::Acquire,
        format!("etcd no longer knew lease {lease_id:x} right after granting it; try again"),
    )
}

/// The value of a holder's key: its owner label, as `etcdctl elect -l LABEL` stores its own
/// (so `etcdctl get` and `etcdctl elect -l` show fencelock's holders); empty without one, as
/// `etcdctl lock` stores it.
pub(crate) fn key_value(label: Option<&OwnerLabel>) -> Vec<u8> {
    label.map_or_else(Vec::new, |label| label.as_str().as_bytes().to_vec())
}

/// Puts the key of lease `lease_id`, with `label` as its value, into the queue (if not there
/// yet) and reads the queue, in one txn — the first step of Go's `Mutex.Lock`. `None` when etcd
/// no longer knows the lease (a spare revoked behind our back): nothing was written.
pub(crate) async fn enqueue(
    store: &EtcdLeaseStore,
    keys: &LockKeys,
    lease_id: i64,
    label: Option<&OwnerLabel>,
) -> Result<Option<Enqueued>, Error> {
    enqueue_with(
        store,
        keys,
        lease_id,
        key_value(label),
        queue_range(),
        |kvs| QueueSnapshot::from_kvs(keys, kvs),
    )
    .await
}

/// [`enqueue`] of any queue: puts the key of lease `lease_id` with `value` (if not there yet)
/// and reads the range with `read`, in one txn; `snapshot` makes the queue of what was read.
pub(crate) async fn enqueue_with<Q>(
    store: &EtcdLeaseStore,
    keys: &LockKeys,
    lease_id: i64,
    value: Vec<u8>,
    read: GetOptions,
    snapshot: impl FnOnce(&[KeyValue]) -> Q,
) -> Result<Option<Enqueued<Q>>, Error> {
    let key = keys.holder_key(lease_id);
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease_id)),
            ),
            TxnOp::get(keys.prefix(), Some(read.clone())),
        ])
        .or_else([TxnOp::get(key, None), TxnOp::get(keys.prefix(), Some(read))]);
    let resp = match store.rpc.txn(txn).await {
        Ok(resp) => resp,
        Err(e) if is_lease_gone(&e) => return Ok(None),
        Err(e) => return Err(classify(Operation::Acquire, e)),
    };
    let read_at = resp.header().map_or(0, |h| h.revision());
    let ops = resp.op_responses();
    let range = |i: usize| match ops.get(i) {
        Some(TxnOpResponse::Get(get)) => Ok(get),
        _ => Err(Error::backend(
            STORE,
            Operation::Acquire,
            "etcd answered the queue txn without its reads",
        )),
    };
    let revision = if resp.succeeded() {
        read_at
    } else {
        range(0)?.kvs().first().map_or(0, |kv| kv.create_revision())
    };
    Ok(Some(Enqueued {
        revision,
        read_at,
        queue: snapshot(range(1)?.kvs()),
    }))
}

/// How a claim on a free queue went.
enum Claim {
    /// The queue was empty; our key is in it now and owns the lock at this create revision.
    Owned(i64),
    /// Someone holds the lock or waits for it: nothing was written.
    Held,
    /// Only keys of nested names (`NAME/sub/…`) are under the prefix: queue the usual way.
    Nested,
    /// etcd no longer knows the lease: nothing was written.
    LeaseGone,
}

/// Puts our key iff nothing at all is under the queue's prefix, else reads the queue — one
/// txn, and the only write of an uncontended acquire. A held lock costs no write and no
/// revoke: the caller keeps its lease.
async fn claim(
    store: &EtcdLeaseStore,
    keys: &LockKeys,
    lease_id: i64,
    label: Option<&OwnerLabel>,
) -> Result<Claim, Error> {
    let txn = Txn::new()
        // A range compare: true iff no key in the range exists (etcd 3.3+).
        .when([Compare::create_revision(keys.prefix(), CompareOp::Equal, 0).with_prefix()])
        .and_then([TxnOp::put(
            keys.holder_key(lease_id),
            key_value(label),
            Some(PutOptions::new().with_lease(lease_id)),
        )])
        .or_else([TxnOp::get(keys.prefix(), Some(queue_range()))]);
    let resp = match store.rpc.txn(txn).await {
        Ok(resp) => resp,
        Err(e) if is_lease_gone(&e) => return Ok(Claim::LeaseGone),
        Err(e) => return Err(classify(Operation::Acquire, e)),
    };
    if resp.succeeded() {
        // The txn's only write created our key: its create revision is the txn's revision.
        return Ok(Claim::Owned(resp.header().map_or(0, |h| h.revision())));
    }
    match resp.op_responses().first() {
        Some(TxnOpResponse::Get(get))
            if QueueSnapshot::from_kvs(keys, get.kvs()).owner().is_some() =>
        {
            Ok(Claim::Held)
        }
        Some(TxnOpResponse::Get(_)) => Ok(Claim::Nested),
        _ => Err(Error::backend(
            STORE,
            Operation::Acquire,
            "etcd answered the claim txn without its read",
        )),
    }
}

/// [`fencelock_core::LeaseStore::try_acquire_as`].
pub(crate) async fn try_acquire(
    store: &EtcdLeaseStore,
    name: &LockName,
    ttl: Duration,
    label: Option<&OwnerLabel>,
) -> Result<Option<Lease>, Error> {
    let ttl = store.ttl_limits_checked(ttl)?;
    let keys = store.lock_keys(name);
    let mut spares = true;
    loop {
        let (granted, spare) = lease_for(store, ttl, spares).await?;
        // From here on, every way out but a grant or a claim that wrote nothing (error,
        // contention after queueing, cancellation) revokes it.
        let contender = Contender::new(store, granted);
        // The create revision of our key if it owns the lock; `None` if etcd no longer knew
        // the lease (nothing was written).
        let owned = match claim(store, &keys, granted.id, label).await? {
            Claim::Owned(revision) => Some(revision),
            Claim::Held => {
                // Nothing was written: the lease is as good as before, keep it for later.
                contender.forget();
                store.spares.restore(granted);
                return Ok(None);
            }
            Claim::Nested => match enqueue(store, &keys, granted.id, label).await? {
                Some(queued)
                    if queued.queue.owner().map(|m| m.create_revision) == Some(queued.revision) =>
                {
                    Some(queued.revision)
                }
                Some(_) => {
                    contender.leave().await;
                    return Ok(None);
                }
                None => None,
            },
            Claim::LeaseGone => None,
        };
        let Some(revision) = owned else {
            contender.forget();
            if spare {
                // Revoked behind our back while spare; grant a new one.
                spares = false;
                continue;
            }
            return Err(vanished(granted.id));
        };
        return grant_of(name, revision, contender, label).map(Some);
    }
}

/// The grant of `name` with token `revision` on `contender`'s lease, with `label`: a lock
/// owned, or (marked by the caller) a permit. The contender becomes the grant only once the
/// token is valid; on an error it is dropped, which revokes its lease. A spare's deadline counts
/// from its last confirmed keepalive, not from now.
pub(crate) fn grant_of(
    name: &LockName,
    revision: i64,
    contender: Contender,
    label: Option<&OwnerLabel>,
) -> Result<Lease, Error> {
    let token = token_of(revision, Operation::Acquire)?;
    let lease = contender.lease();
    let sent_at = contender.into_grant();
    Ok(labeled(
        granted_lease(name.clone(), token, holder_of(lease.id), lease.ttl, sent_at),
        label,
    ))
}
