//! Taking a lock once: grant a lease, queue its key and read the queue in one txn, own the lock
//! iff the key is the oldest in the queue — else leave the queue at once.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use fencelock_core::{Error, Lease, LockName, Operation};

use crate::EtcdLeaseStore;
use crate::classify::{STORE, classify};
use crate::keys::{Queue, QueueKeys, holder_of, token_of};
use crate::leases;
use crate::store::queue_range;
use crate::ticket::QueueTicket;

/// This holder's key in the queue, and the queue as the txn saw it.
pub(crate) struct Enqueued {
    /// The key's create revision: the token, if it becomes the owner.
    pub(crate) revision: i64,
    /// The revision the queue was read at; watch from the next one.
    pub(crate) read_at: i64,
    pub(crate) queue: Queue,
}

/// Puts the key of lease `lease_id` into the queue (if not there yet) and reads the queue, in
/// one txn — the first step of Go's `Mutex.Lock`.
pub(crate) async fn enqueue(
    store: &EtcdLeaseStore,
    keys: &QueueKeys,
    lease_id: i64,
) -> Result<Enqueued, Error> {
    let key = keys.holder_key(lease_id);
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(
                key.clone(),
                Vec::new(),
                Some(PutOptions::new().with_lease(lease_id)),
            ),
            TxnOp::get(keys.prefix(), Some(queue_range())),
        ])
        .or_else([
            TxnOp::get(key, None),
            TxnOp::get(keys.prefix(), Some(queue_range())),
        ]);
    let resp = store
        .rpc
        .call(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
        .map_err(|e| classify(Operation::Acquire, e))?;
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
    Ok(Enqueued {
        revision,
        read_at,
        queue: Queue::from_kvs(keys, range(1)?.kvs()),
    })
}

/// [`fencelock_core::LeaseStore::try_acquire`].
pub(crate) async fn try_acquire(
    store: &EtcdLeaseStore,
    name: &LockName,
    ttl: Duration,
) -> Result<Option<Lease>, Error> {
    let ttl = store.ttl_limits_checked(ttl)?;
    let keys = store.queue_keys(name);
    let granted = leases::grant(store, ttl, Operation::Acquire).await?;
    // From here on, every way out but a grant (error, contention, cancellation) revokes it.
    let ticket = QueueTicket::new(store.rpc.clone(), granted);
    let enqueued = enqueue(store, &keys, granted.id).await?;
    if enqueued.queue.owner().map(|m| m.create_revision) != Some(enqueued.revision) {
        ticket.leave().await;
        return Ok(None);
    }
    let token = token_of(enqueued.revision, Operation::Acquire)?;
    let sent_at = ticket.into_grant();
    Ok(Some(Lease::granted(
        name.clone(),
        token,
        holder_of(granted.id),
        granted.ttl,
        sent_at,
    )))
}
