//! Waiting for a lock ([`fencelock_core::LeaseStore::acquire_waiting`]) in line, the way Go's
//! `concurrency.Mutex.Lock` does: keep the key queued, watch the delete of the predecessor (the
//! newest key older than ours), re-check, repeat. FIFO, one watcher per release, no polling.

use std::time::Duration;

use etcd_client::{EventType, WatchFilterType, WatchOptions};
use fencelock_core::backend::WaitPolicy;
use fencelock_core::{Error, Lease, LockName, Operation, OwnerLabel};
use tokio::time::{Instant, sleep, sleep_until};

use crate::EtcdLeaseStore;
use crate::acquire::{enqueue, grant_of, lease_for, vanished};
use crate::classify::classify;
use crate::contender::Contender;
use crate::keys::LockKeys;

/// The first pause after a transient error while waiting; doubles up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_millis(20);

/// How one pass through the queue ended.
enum Pass {
    Granted(Lease),
    TimedOut,
    /// Our queued key vanished (its lease expired while we could not keep it alive): queue again.
    KeyLost,
    /// The spare lease we took was revoked behind our back: queue again with a new grant.
    SpareGone,
}

/// [`fencelock_core::LeaseStore::acquire_waiting`] with etcd's native queue.
pub(crate) async fn acquire_waiting(
    store: &EtcdLeaseStore,
    name: &LockName,
    ttl: Duration,
    label: Option<&OwnerLabel>,
    policy: WaitPolicy,
) -> Result<Option<Lease>, Error> {
    let ttl = store.ttl_limits_checked(ttl)?;
    let keys = store.lock_keys(name);
    let mut spares = true;
    loop {
        match pass(store, name, &keys, ttl, label, policy, spares).await? {
            Pass::SpareGone => spares = false,
            Pass::Granted(lease) => return Ok(Some(lease)),
            Pass::TimedOut => return Ok(None),
            Pass::KeyLost if policy.until.is_some_and(|u| Instant::now() >= u) => return Ok(None),
            Pass::KeyLost => tracing::debug!(lock = %name, "queued key lost; queueing again"),
        }
    }
}

async fn pass(
    store: &EtcdLeaseStore,
    name: &LockName,
    keys: &LockKeys,
    ttl: Duration,
    label: Option<&OwnerLabel>,
    policy: WaitPolicy,
    spares: bool,
) -> Result<Pass, Error> {
    let (granted, spare) = lease_for(store, ttl, spares).await?;
    // Dropping the contender (cancellation, error) revokes the lease and so dequeues the key.
    let mut contender = Contender::new(store, granted);
    contender.keep_alive_while_waiting();
    let Some(enqueued) = enqueue(store, keys, granted.id, label).await? else {
        contender.forget();
        return if spare {
            Ok(Pass::SpareGone)
        } else {
            Err(vanished(granted.id))
        };
    };
    let mine = enqueued.revision;
    let (mut queue, mut read_at) = (enqueued.queue, enqueued.read_at);
    let mut retry = FIRST_RETRY;
    loop {
        if !queue.contains(mine) {
            return Ok(Pass::KeyLost);
        }
        if queue.owner().map(|m| m.create_revision) == Some(mine) {
            return grant_of(name, mine, contender, label).map(Pass::Granted);
        }
        let predecessor = queue.predecessor(mine).map(|m| m.key.clone());
        let woke = tokio::select! {
            biased;
            () = contender.lost() => Woke::KeyLost,
            () = until(policy.until) => Woke::Deadline,
            done = wait_deleted(store, predecessor, read_at + 1) => Woke::Watched(done),
            // A safety net only: a lost watch event costs at most one poll interval.
            () = sleep(policy.poll_interval) => Woke::Watched(Ok(())),
        };
        let waited = match woke {
            Woke::KeyLost => return Ok(Pass::KeyLost),
            Woke::Deadline => {
                contender.leave().await;
                return Ok(Pass::TimedOut);
            }
            Woke::Watched(done) => done,
        };
        let reread = match waited {
            Ok(()) => store.read_queue(keys, Operation::Watch).await,
            Err(e) => Err(e),
        };
        match reread {
            Ok((q, at)) => {
                (queue, read_at) = (q, at);
                retry = FIRST_RETRY;
            }
            Err(e) if e.is_transient() => {
                tracing::debug!(lock = %name, error = %e, "waiting in the queue; retrying");
                let gave_up = tokio::select! {
                    () = until(policy.until) => true,
                    () = sleep(retry) => false,
                };
                if gave_up {
                    contender.leave().await;
                    return Ok(Pass::TimedOut);
                }
                retry = (retry * 2).min(policy.poll_interval);
            }
            Err(e) => return Err(e),
        }
    }
}

/// What woke a waiter.
enum Woke {
    KeyLost,
    Deadline,
    Watched(Result<(), Error>),
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once `key` is deleted at or after revision `from` (or the watch was cancelled by
/// etcd, e.g. compacted: the caller re-reads the queue either way).
async fn wait_deleted(
    store: &EtcdLeaseStore,
    key: Option<Vec<u8>>,
    from: i64,
) -> Result<(), Error> {
    let Some(key) = key else { return Ok(()) };
    let options = WatchOptions::new()
        .with_start_revision(from)
        .with_filters([WatchFilterType::NoPut]);
    let mut stream = store
        .rpc
        .call(|mut c| {
            let (key, options) = (key.clone(), options.clone());
            async move { c.watch(key, Some(options)).await }
        })
        .await
        .map_err(|e| classify(Operation::Watch, e))?;
    loop {
        let Some(resp) = stream
            .message()
            .await
            .map_err(|e| classify(Operation::Watch, e))?
        else {
            return Err(classify(
                Operation::Watch,
                etcd_client::Error::WatchError("the watch stream ended".into()),
            ));
        };
        if resp.canceled()
            || resp
                .events()
                .iter()
                .any(|e| e.event_type() == EventType::Delete)
        {
            return Ok(());
        }
    }
}
