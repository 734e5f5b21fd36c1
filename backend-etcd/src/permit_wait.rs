//! Waiting for a permit ([`fencelock_core::LeaseStore::acquire_permit_waiting`]) in line, as a
//! lock's waiter does ([`crate::wait`]): keep the key queued, watch the semaphore's range for
//! the deletes of the keys ahead, and read the queue again once enough of them went for ours to
//! be among the first `limit`. FIFO (a key's place is its create revision), no polling; every
//! waiter's watch sees each delete, but only those it may let in read the queue again.

use std::collections::HashSet;
use std::time::Duration;

use etcd_client::WatchOptions;
use fencelock_core::backend::WaitPolicy;
use fencelock_core::{Error, Lease, LockName, Operation, OwnerLabel, PermitLimit};

use crate::EtcdLeaseStore;
use crate::keys::LockKeys;
use crate::permits::{Grant, State, Verdict, enqueue, grant, permit_of, permit_value, read};
use crate::wait::{Pass, Turn, Waiting, join_queue, wait_in_line, watch_deletes};

/// [`fencelock_core::LeaseStore::acquire_permit_waiting`] with the semaphore's queue.
pub(crate) async fn acquire_permit_waiting(
    store: &EtcdLeaseStore,
    name: &LockName,
    limit: PermitLimit,
    ttl: Duration,
    label: Option<&OwnerLabel>,
    policy: WaitPolicy,
) -> Result<Option<Lease>, Error> {
    let ttl = store.ttl_limits_checked(ttl)?;
    let keys = store.permit_keys(name);
    let asked = Asked {
        name,
        keys: &keys,
        limit,
        label,
    };
    wait_in_line(name, policy, |spares| {
        pass(store, &asked, ttl, policy, spares)
    })
    .await
}

/// What is asked for.
struct Asked<'a> {
    name: &'a LockName,
    keys: &'a LockKeys,
    limit: PermitLimit,
    label: Option<&'a OwnerLabel>,
}

async fn pass(
    store: &EtcdLeaseStore,
    asked: &Asked<'_>,
    ttl: Duration,
    policy: WaitPolicy,
    spares: bool,
) -> Result<Pass, Error> {
    let enqueue = |id| enqueue(store, asked.keys, id, asked.limit, asked.label);
    let (contender, enqueued) = match join_queue(store, ttl, spares, enqueue).await? {
        Ok(joined) => joined,
        Err(pass) => return Ok(pass),
    };
    let lease_id = contender.lease().id;
    let mine = enqueued.revision;
    let (mut queue, mut read_at) = (enqueued.queue, enqueued.read_at);
    let mut waiting = Waiting::new(policy);
    loop {
        let (ahead, leave) = match queue.verdict(asked.name, asked.limit, Some(mine)) {
            Err(e) => {
                // Another limit: leave the queue, grant nothing.
                contender.leave().await;
                return Err(e);
            }
            Ok(Verdict::KeyLost) => return Ok(Pass::KeyLost),
            Ok(Verdict::Eligible { head }) => {
                let value = permit_value(State::Held, asked.limit, asked.label);
                match grant(store, asked.keys, lease_id, mine, head, value).await? {
                    Grant::Held(revision) => {
                        return permit_of(
                            asked.name,
                            asked.limit,
                            asked.label,
                            contender,
                            revision,
                        )
                        .map(Pass::Granted);
                    }
                    Grant::Changed(now, at) => {
                        (queue, read_at) = (now, at);
                        continue;
                    }
                }
            }
            Ok(Verdict::Full { ahead, leave }) => (ahead, leave),
        };
        let watched = wait_for_deletes(store, asked.keys, ahead, leave, read_at + 1);
        let reread = || read(store, asked.keys, Operation::Watch);
        match waiting
            .turn(asked.name, &contender, watched, reread)
            .await?
        {
            Turn::Read(q, at) => (queue, read_at) = (q, at),
            Turn::Again => {}
            Turn::KeyLost => return Ok(Pass::KeyLost),
            Turn::Deadline => {
                contender.leave().await;
                return Ok(Pass::TimedOut);
            }
        }
    }
}

/// Resolves once `leave` of the keys `ahead` were deleted at or after revision `from` (or the
/// watch was cancelled by etcd: the caller re-reads the queue either way).
async fn wait_for_deletes(
    store: &EtcdLeaseStore,
    keys: &LockKeys,
    ahead: Vec<Vec<u8>>,
    leave: usize,
    from: i64,
) -> Result<(), Error> {
    let mut ahead: HashSet<Vec<u8>> = ahead.into_iter().collect();
    let mut gone = 0;
    let prefix = keys.prefix().to_vec();
    watch_deletes(
        store,
        prefix,
        WatchOptions::new().with_prefix(),
        from,
        |key| {
            gone += usize::from(ahead.remove(key));
            gone >= leave
        },
    )
    .await
}
