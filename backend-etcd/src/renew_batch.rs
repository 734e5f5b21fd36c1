//! Renewing a batch of grants: every keepalive on the shared stream at once, then the
//! ownership of every key checked in as few read-only txns as possible: a lock's queue, or a
//! permit's own key (a permit never looks at the lock of its name).

use std::collections::HashMap;
use std::time::Duration;

use etcd_client::{KeyValue, Txn, TxnOp, TxnOpResponse};
use fencelock_core::backend::fail_each;
use fencelock_core::{Error, Lease, Operation};
use futures::future::join_all;
use tokio::time::Instant;

use crate::EtcdLeaseStore;
use crate::classify::{STORE, classify, classify_for};
use crate::keys::LockKeys;
use crate::permits::renewed_permit;
use crate::queue_snapshot::{QueueSnapshot, queue_range};
use crate::renew_release::{ids_of, renewed_in};

/// What a renewal reads to check its grant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Check {
    /// A lock's queue: the grant's key must be its owner.
    Queue(LockKeys),
    /// A permit's own key: it must still be the grant.
    Permit(Vec<u8>),
}

/// What such a read found.
enum Seen {
    Queue(QueueSnapshot),
    Permit(Option<KeyValue>),
}

fn check_of(store: &EtcdLeaseStore, lease: &Lease, lease_id: i64) -> Check {
    if lease.permit_limit().is_some() {
        Check::Permit(store.permit_keys(lease.name()).holder_key(lease_id))
    } else {
        Check::Queue(store.lock_keys(lease.name()))
    }
}

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
    // One read per distinct queue or permit key among the leases etcd confirmed (a lease
    // listed twice, or two leases of one name, share it).
    let mut checks: Vec<Check> = Vec::new();
    let mut index: HashMap<Check, usize> = HashMap::new();
    for ((lease, ids), alive) in leases.iter().zip(&ids).zip(&alive) {
        if let (Some(Ok(())), Ok((lease_id, _))) = (alive, ids) {
            let check = check_of(store, lease, *lease_id);
            index.entry(check.clone()).or_insert_with(|| {
                checks.push(check);
                checks.len() - 1
            });
        }
    }
    let mut read: Vec<Result<Seen, Error>> = Vec::with_capacity(checks.len());
    for chunk in checks.chunks(READS_PER_TXN) {
        match read_checks(store, chunk).await {
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
                    let check = check_of(store, lease, ids.0);
                    let i = index.get(&check).copied().ok_or_else(lost_track)?;
                    match (read.get(i).ok_or_else(lost_track)?, &check) {
                        (Ok(Seen::Queue(queue)), Check::Queue(keys)) => {
                            renewed_in(queue, keys, lease, ids, sent_at)
                        }
                        (Ok(Seen::Permit(kv)), Check::Permit(_)) => {
                            renewed_permit(kv.as_ref(), lease, ids.1, sent_at)
                        }
                        (Ok(_), _) => Err(lost_track()),
                        (Err(e), _) => Err(e.clone()),
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

/// The reads of `chunk`, in order, in one read-only txn (a queue read like
/// [`EtcdLeaseStore::read_queue`]'s, a permit key read whole). A failure is classified once,
/// as `renew`'s own read would be, and answers every lease of the chunk.
async fn read_checks(store: &EtcdLeaseStore, chunk: &[Check]) -> Result<Vec<Seen>, Error> {
    let txn = Txn::new().and_then(
        chunk
            .iter()
            .map(|check| match check {
                Check::Queue(keys) => TxnOp::get(keys.prefix(), Some(queue_range())),
                Check::Permit(key) => TxnOp::get(key.clone(), None),
            })
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
        .map(|(check, op)| match (check, op) {
            (Check::Queue(keys), TxnOpResponse::Get(get)) => {
                Seen::Queue(QueueSnapshot::from_kvs(keys, get.kvs()))
            }
            (Check::Permit(_), TxnOpResponse::Get(get)) => Seen::Permit(get.kvs().first().cloned()),
            (Check::Queue(_), _) => Seen::Queue(QueueSnapshot::default()),
            (Check::Permit(_), _) => Seen::Permit(None),
        })
        .collect())
}
