//! Renewing a batch of grants: every keepalive on the shared stream at once, then the
//! ownership of every key checked in as few read-only txns as possible.

use std::collections::HashMap;
use std::time::Duration;

use etcd_client::{Txn, TxnOp, TxnOpResponse};
use fencelock_core::backend::fail_each;
use fencelock_core::{Error, Lease, Operation};
use futures::future::join_all;
use tokio::time::Instant;

use crate::EtcdLeaseStore;
use crate::classify::{STORE, classify, classify_for};
use crate::keys::LockKeys;
use crate::queue_snapshot::{QueueSnapshot, queue_range};
use crate::renew_release::{ids_of, renewed_in};

/// Range reads per txn: etcd refuses txns of more than 128 operations by default.
const READS_PER_TXN: usize = 100;

/// [`fencelock_core::LeaseStore::renew_many`]: answers exactly as
/// [`fencelock_core::LeaseStore::renew`] would for each lease, in order.
pub(crate) async fn renew_many(
    store: &EtcdLeaseStore,
    leases: &[Lease],
    ttl: Duration,
) -> Vec<Result<Lease, Error>> {
    if let Err(error) = store.ttl_limits_checked(ttl) {
        // The same `InvalidInput` for every lease; nothing is sent.
        return fail_each(error, leases.len());
    }
    let ids: Vec<Result<(i64, i64), Error>> = leases.iter().map(ids_of).collect();
    // Every keepalive is queued on the stream before the first answer is awaited; the send
    // instant taken before all of them is conservative for each.
    let sent_at = Instant::now();
    let alive = join_all(ids.iter().map(|ids| async move {
        match ids {
            Ok((lease_id, _)) => Some(store.keepalives.keep_alive(*lease_id).await),
            Err(_) => None,
        }
    }))
    .await;
    // One read per distinct queue among the leases etcd confirmed (a lease listed twice, or
    // two leases of one name, share it).
    let mut queues: Vec<LockKeys> = Vec::new();
    let mut index: HashMap<LockKeys, usize> = HashMap::new();
    for (lease, alive) in leases.iter().zip(&alive) {
        if let Some(Ok(())) = alive {
            let keys = store.lock_keys(lease.name());
            index.entry(keys.clone()).or_insert_with(|| {
                queues.push(keys);
                queues.len() - 1
            });
        }
    }
    let mut read: Vec<Result<QueueSnapshot, Error>> = Vec::with_capacity(queues.len());
    for chunk in queues.chunks(READS_PER_TXN) {
        match read_queues(store, chunk).await {
            Ok(got) => read.extend(got.into_iter().map(Ok)),
            Err(failure) => read.extend(fail_each(failure, chunk.len())),
        }
    }
    leases
        .iter()
        .zip(ids)
        .zip(alive)
        .map(|((lease, ids), alive)| {
            let ids = ids?;
            match alive {
                Some(Ok(())) => {
                    let keys = store.lock_keys(lease.name());
                    let i = index.get(&keys).copied().ok_or_else(lost_track)?;
                    match read.get(i).ok_or_else(lost_track)? {
                        Ok(queue) => renewed_in(queue, &keys, lease, ids, sent_at),
                        Err(e) => Err(e.clone()),
                    }
                }
                Some(Err(e)) => Err(classify_for(lease, Operation::Renew, e)),
                None => Err(lost_track()),
            }
        })
        .collect()
}

fn lost_track() -> Error {
    Error::backend(
        STORE,
        Operation::Renew,
        "a batch renewal lost track of one of its leases",
    )
}

/// The queues of `chunk`, in order, read in one read-only txn (each read like
/// [`EtcdLeaseStore::read_queue`]'s). A failure is classified once, as `renew`'s own read
/// would be, and answers every lease of the chunk.
async fn read_queues(
    store: &EtcdLeaseStore,
    chunk: &[LockKeys],
) -> Result<Vec<QueueSnapshot>, Error> {
    let txn = Txn::new().and_then(
        chunk
            .iter()
            .map(|keys| TxnOp::get(keys.prefix(), Some(queue_range())))
            .collect::<Vec<_>>(),
    );
    let resp = store
        .rpc
        .txn(txn)
        .await
        .map_err(|e| classify(Operation::Renew, e))?;
    let ops = resp.op_responses();
    if ops.len() != chunk.len() {
        return Err(Error::backend(
            STORE,
            Operation::Renew,
            format!(
                "etcd answered a txn of {} reads with {} results",
                chunk.len(),
                ops.len()
            ),
        ));
    }
    Ok(chunk
        .iter()
        .zip(ops)
        .map(|(keys, op)| match op {
            TxnOpResponse::Get(get) => QueueSnapshot::from_kvs(keys, get.kvs()),
            _ => QueueSnapshot::default(),
        })
        .collect())
}
