//! Waiting for a lock ([`fencelock_core::LeaseStore::acquire_waiting`]) in line, the way Go's
//! `concurrency.Mutex.Lock` does: keep the key queued, watch the delete of the predecessor (the
//! newest key older than ours), re-check, repeat. FIFO, one watcher per release, no polling.

use std::future::Future;
use std::time::Duration;

use etcd_client::{EventType, WatchFilterType, WatchOptions};
use fencelock_core::backend::WaitPolicy;
use fencelock_core::{Error, Lease, LockName, Operation, OwnerLabel};
use tokio::time::{Instant, sleep, sleep_until};

use crate::EtcdLeaseStore;
use crate::acquire::{Enqueued, enqueue, grant_of, lease_for, vanished};
use crate::classify::classify;
use crate::contender::Contender;
use crate::keys::LockKeys;

/// The first pause after a transient error while waiting; doubles up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_millis(20);

/// How one pass through a queue (a lock's or a semaphore's) ended.
pub(crate) enum Pass {
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
    wait_in_line(name, policy, |spares| {
        pass(store, name, &keys, ttl, label, policy, spares)
    })
    .await
}

/// Runs passes (`pass(spares)`: may it take a spare lease) until one grants, times out or
/// fails: a pass whose spare lease was gone goes again with a fresh one, one whose key was lost
/// queues again unless the deadline passed.
pub(crate) async fn wait_in_line<F, Fut>(
    name: &LockName,
    policy: WaitPolicy,
    mut pass: F,
) -> Result<Option<Lease>, Error>
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = Result<Pass, Error>>,
{
    let mut spares = true;
    loop {
        match pass(spares).await? {
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
    let joined = join_queue(store, ttl, spares, |id| enqueue(store, keys, id, label)).await?;
    let (contender, enqueued) = match joined {
        Ok(joined) => joined,
        Err(pass) => return Ok(pass),
    };
    let mine = enqueued.revision;
    let (mut queue, mut read_at) = (enqueued.queue, enqueued.read_at);
    let mut waiting = Waiting::new(policy);
    loop {
        if !queue.contains(mine) {
            return Ok(Pass::KeyLost);
        }
        if queue.owner().map(|m| m.create_revision) == Some(mine) {
            return grant_of(name, mine, contender, label).map(Pass::Granted);
        }
        let predecessor = queue.predecessor(mine).map(|m| m.key.clone());
        let watched = wait_deleted(store, predecessor, read_at + 1);
        let read = || store.read_queue(keys, Operation::Watch);
        match waiting.turn(name, &contender, watched, read).await? {
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

/// The start of a pass: a lease (a spare, if `spares` allows), kept alive while it waits, and
/// its key queued by `enqueue(lease id)`. Dropping the contender (cancellation, error) revokes
/// the lease and so dequeues the key. `Err(SpareGone)` when the spare had been revoked.
pub(crate) async fn join_queue<Q, F, Fut>(
    store: &EtcdLeaseStore,
    ttl: Duration,
    spares: bool,
    enqueue: F,
) -> Result<Result<(Contender, Enqueued<Q>), Pass>, Error>
where
    F: FnOnce(i64) -> Fut,
    Fut: Future<Output = Result<Option<Enqueued<Q>>, Error>>,
{
    let (granted, spare) = lease_for(store, ttl, spares).await?;
    let mut contender = Contender::new(store, granted);
    contender.keep_alive_while_waiting();
    match enqueue(granted.id).await? {
        Some(enqueued) => Ok(Ok((contender, enqueued))),
        None if spare => {
            contender.forget();
            Ok(Err(Pass::SpareGone))
        }
        None => {
            contender.forget();
            Err(vanished(granted.id))
        }
    }
}

/// How a waiter's turn between two reads of its queue ended.
pub(crate) enum Turn<Q> {
    /// The queue read again, and the revision it was read at.
    Read(Q, i64),
    /// A transient error, waited out: look at the same queue again.
    Again,
    /// The contender's key is gone: queue again.
    KeyLost,
    /// The deadline passed: leave the queue.
    Deadline,
}

/// A waiter's turns: the backoff after transient errors, and its policy.
pub(crate) struct Waiting {
    policy: WaitPolicy,
    retry: Duration,
}

impl Waiting {
    pub(crate) fn new(policy: WaitPolicy) -> Self {
        Self {
            policy,
            retry: FIRST_RETRY,
        }
    }

    /// Waits until `watched` resolves (or the poll interval passes: a safety net only, so a
    /// lost watch event costs at most that), the contender's key is lost, or the deadline; then
    /// reads the queue with `read`. A transient error is waited out with a doubling pause.
    pub(crate) async fn turn<Q, W, R, RF>(
        &mut self,
        name: &LockName,
        contender: &Contender,
        watched: W,
        read: R,
    ) -> Result<Turn<Q>, Error>
    where
        W: Future<Output = Result<(), Error>>,
        R: FnOnce() -> RF,
        RF: Future<Output = Result<(Q, i64), Error>>,
    {
        let woke = tokio::select! {
            biased;
            () = contender.lost() => Woke::KeyLost,
            () = until(self.policy.until) => Woke::Deadline,
            done = watched => Woke::Watched(done),
            () = sleep(self.policy.poll_interval) => Woke::Watched(Ok(())),
        };
        let reread = match woke {
            Woke::KeyLost => return Ok(Turn::KeyLost),
            Woke::Deadline => return Ok(Turn::Deadline),
            Woke::Watched(Ok(())) => read().await,
            Woke::Watched(Err(e)) => Err(e),
        };
        match reread {
            Ok((queue, at)) => {
                self.retry = FIRST_RETRY;
                Ok(Turn::Read(queue, at))
            }
            Err(e) if e.is_transient() => {
                tracing::debug!(lock = %name, error = %e, "waiting in the queue; retrying");
                let gave_up = tokio::select! {
                    () = until(self.policy.until) => true,
                    () = sleep(self.retry) => false,
                };
                if gave_up {
                    return Ok(Turn::Deadline);
                }
                self.retry = (self.retry * 2).min(self.policy.poll_interval);
                Ok(Turn::Again)
            }
            Err(e) => Err(e),
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
    watch_deletes(store, key, WatchOptions::new(), from, |_| true).await
}

/// Watches the deletes of `key` (with `options`, e.g. a prefix) from revision `from` until
/// `enough` says so of one (in order, each deleted key once), or etcd cancels the watch (e.g.
/// compacted: the caller re-reads its queue either way).
pub(crate) async fn watch_deletes(
    store: &EtcdLeaseStore,
    key: Vec<u8>,
    options: WatchOptions,
    from: i64,
    mut enough: impl FnMut(&[u8]) -> bool,
) -> Result<(), Error> {
    let options = options
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
        if resp.canceled() {
            return Ok(());
        }
        let deleted = resp
            .events()
            .iter()
            .filter(|e| e.event_type() == EventType::Delete)
            .filter_map(|e| e.kv().map(etcd_client::KeyValue::key));
        for key in deleted {
            if enough(key) {
                return Ok(());
            }
        }
    }
}
