//! Watchdogs: the renewal of every guard of a [`crate::Locker`], driven by one timer queue per
//! tokio runtime instead of one task per guard.
//!
//! Acquire puts the guard's watchdog in the queue of the current runtime; release only flags it
//! stopped. Neither spawns a task nor wakes one: a stopped watchdog is dropped when it comes due,
//! or swept out when the queue grows. So an uncontended acquire + release costs no cross-thread
//! wake-up, where a task per guard cost two (its spawn, and its wake at release). When a
//! watchdog comes due, the queue's driver task either reports its deadline or spawns one
//! renewal, whose outcome puts the watchdog back in the queue or reports the loss.
//!
//! A watchdog ends in exactly three ways: stopped by its guard, its lease lost (reported), or
//! its renewal panicking (caught and reported as loss). If the driver or a renewal is dropped
//! unfinished (its runtime shut down), the guard's state channel closes and the guard reports
//! the watchdog gone. Never silently.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::FutureExt;
use tokio::runtime;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::guard::GuardState;
use crate::lock;
use crate::metrics;
use crate::renewer::{Renewed, Renewer, panic_message};
use crate::{Error, ErrorKind, LeaseStore, LossReason};

/// The first retry delay after a transient renewal error; doubles up to the renew interval.
const FIRST_RETRY: Duration = Duration::from_millis(20);
/// A queue sweeps out stopped watchdogs once it holds this many entries (or twice as many as
/// after its last sweep, whichever is more), so released guards never pile up.
const MIN_SWEEP: usize = 64;

/// The watchdogs of one `Locker` (shared by its clones).
pub(crate) struct Watchdogs {
    store: Arc<dyn LeaseStore>,
    batching: bool,
    /// One queue per runtime that took a lock through this locker; an entry leaves when its
    /// driver ends.
    queues: Mutex<HashMap<runtime::Id, Arc<TimerQueue>>>,
}

impl fmt::Debug for Watchdogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchdogs")
            .field("batching", &self.batching)
            .field("runtimes", &lock(&self.queues).len())
            .finish_non_exhaustive()
    }
}

impl Watchdogs {
    pub(crate) fn new(store: Arc<dyn LeaseStore>, batching: bool) -> Self {
        Self {
            store,
            batching,
            queues: Mutex::default(),
        }
    }

    pub(crate) fn batching(&self) -> bool {
        self.batching
    }

    /// Starts watching `dog`'s lease, on the current runtime's queue.
    pub(crate) fn start(self: &Arc<Self>, dog: Dog) {
        match runtime::Handle::try_current() {
            Ok(runtime) => self.queue_on(&runtime).schedule(dog),
            // Without a runtime nothing could renew or report: dropping the watchdog closes the
            // guard's state channel, and the guard reports itself lost (fail closed).
            Err(_) => tracing::error!(
                lock = %dog.state.borrow().lease.name(),
                "acquired outside a tokio runtime: no watchdog can run; the guard reports loss"
            ),
        }
    }

    /// The queue of `runtime`, starting its driver there if it has none.
    fn queue_on(self: &Arc<Self>, runtime: &runtime::Handle) -> Arc<TimerQueue> {
        let id = runtime.id();
        let mut queues = lock(&self.queues);
        if let Some(queue) = queues.get(&id) {
            return Arc::clone(queue);
        }
        let queue = Arc::new(TimerQueue {
            store: Arc::clone(&self.store),
            renewer: Renewer::new(Arc::clone(&self.store), self.batching),
            timers: Mutex::new(Timers::default()),
            wake: Notify::new(),
        });
        queues.insert(id, Arc::clone(&queue));
        let alive = Alive {
            owner: Arc::downgrade(self),
            runtime: id,
            queue: Arc::clone(&queue),
        };
        runtime.spawn(drive(Arc::clone(&queue), alive));
        queue
    }
}

impl Drop for Watchdogs {
    fn drop(&mut self) {
        // The locker is gone: each driver ends once its guards have.
        for queue in lock(&self.queues).values() {
            lock(&queue.timers).closed = true;
            queue.wake.notify_one();
        }
    }
}

/// One guard's watchdog: the sending half of its state, and when to renew.
pub(crate) struct Dog {
    state: watch::Sender<GuardState>,
    ttl: Duration,
    every: Option<Duration>,
    stop: CancellationToken,
    ended: CancellationToken,
    next_renew: Option<Instant>,
    retry: Duration,
}

impl Dog {
    /// A watchdog renewing to `ttl` every `every` (never, if `None`), from now.
    pub(crate) fn new(
        state: watch::Sender<GuardState>,
        ttl: Duration,
        every: Option<Duration>,
        stop: CancellationToken,
        ended: CancellationToken,
    ) -> Self {
        Self {
            next_renew: every.and_then(|e| Instant::now().checked_add(e)),
            state,
            ttl,
            every,
            stop,
            ended,
            retry: FIRST_RETRY,
        }
    }

    fn deadline(&self) -> Instant {
        self.state.borrow().lease.deadline()
    }

    /// When this watchdog must act next: renew, or report the deadline.
    fn due_at(&self) -> Instant {
        let deadline = self.deadline();
        self.next_renew.map_or(deadline, |at| at.min(deadline))
    }

    /// Sends one renewal and takes in its answer.
    async fn renew(mut self, renewer: &Renewer, backend: &'static str) -> Step {
        let lease = self.state.borrow().lease.clone();
        let deadline = lease.deadline();
        let Some(every) = self.every else {
            return Step::Again(self);
        };
        let sent_at = Instant::now();
        let span =
            tracing::debug_span!("fencelock.renew", lock = %lease.name(), token = %lease.token());
        let renewed = tokio::select! {
            biased;
            () = self.stop.cancelled() => return Step::Stopped,
            r = timeout_at(deadline, renewer.renew(&lease, self.ttl)) => r,
        };
        let _entered = span.enter();
        if self.stop.is_cancelled() {
            // Released (or dropped) while the renewal was in flight: its answer is moot.
            return Step::Stopped;
        }
        match renewed {
            Err(_elapsed) => Step::Lost(LossReason::DeadlineReached),
            Ok(Renewed::Failed(message)) => {
                metrics::renewal(backend, "lost");
                Step::Lost(LossReason::WatchdogFailed { message })
            }
            Ok(Renewed::Answer(Ok(new))) => {
                metrics::renewal(backend, "ok");
                let left = deadline.saturating_duration_since(sent_at);
                metrics::renew_lag(backend, left);
                tracing::trace!(left_ms = left.as_millis() as u64, "renewed");
                self.state.send_modify(|s| s.lease = new);
                self.next_renew = sent_at.checked_add(every);
                self.retry = FIRST_RETRY;
                Step::Again(self)
            }
            Ok(Renewed::Answer(Err(error))) if error.is_transient() => {
                metrics::renewal(backend, "retry");
                tracing::warn!(%error, retry_ms = self.retry.as_millis() as u64, "renewal failed; retrying while the lease is locally valid");
                self.next_renew = Instant::now().checked_add(self.retry);
                self.retry = (self.retry * 2).min(every);
                Step::Again(self)
            }
            Ok(Renewed::Answer(Err(error))) => {
                metrics::renewal(backend, "lost");
                Step::Lost(loss_reason(error))
            }
        }
    }
}

/// What a renewal leaves to do.
enum Step {
    /// Watch on: back in the queue.
    Again(Dog),
    /// The guard stopped it.
    Stopped,
    /// The lease is lost: report it.
    Lost(LossReason),
}

/// The timer queue of one runtime, and what its driver and renewals need.
struct TimerQueue {
    store: Arc<dyn LeaseStore>,
    /// This runtime's renewal batcher: renewals of one runtime's guards are batched together,
    /// and a runtime that shuts down takes no other runtime's renewals with it.
    renewer: Renewer,
    timers: Mutex<Timers>,
    /// Wakes the driver when a watchdog comes due before it planned to look again.
    wake: Notify,
}

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<Due>>,
    next_seq: u64,
    /// The driver looks at the queue again by then at the latest; `None` while it waits for a
    /// wake-up only. A watchdog due later needs no wake-up.
    looks_by: Option<Instant>,
    /// Entries at which to sweep out stopped watchdogs (0: the first sweep at [`MIN_SWEEP`]).
    sweep_at: usize,
    /// Renewals spawned and not yet back.
    in_flight: usize,
    /// The locker is gone: the driver ends when no watchdog is left.
    closed: bool,
    /// The driver is gone (its runtime shut down): nothing here will run again.
    dead: bool,
}

impl Timers {
    /// Drops the watchdogs whose guards stopped them.
    fn drop_stopped(&mut self) {
        self.heap
            .retain(|Reverse(due)| !due.dog.stop.is_cancelled());
    }
}

/// A watchdog in the queue: due at `at`; `seq` keeps equal instants in insertion order.
struct Due {
    at: Instant,
    seq: u64,
    dog: Dog,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl TimerQueue {
    /// Puts `dog` in the queue, waking the driver only if it is due before the driver's next look.
    fn schedule(&self, dog: Dog) {
        let at = dog.due_at();
        let mut timers = lock(&self.timers);
        if timers.dead {
            // The runtime is shutting down: dropping the watchdog closes the guard's state
            // channel, which the guard reports as loss.
            return;
        }
        if timers.heap.len() >= timers.sweep_at.max(MIN_SWEEP) {
            timers.drop_stopped();
            timers.sweep_at = timers.heap.len() * 2;
        }
        let seq = timers.next_seq;
        timers.next_seq += 1;
        timers.heap.push(Reverse(Due { at, seq, dog }));
        let wake = timers.looks_by.is_none_or(|by| at < by);
        if wake {
            timers.looks_by = Some(at);
        }
        drop(timers);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Takes out the live watchdogs due by `now` and says when to look again (`None`: when
    /// woken); `None` when the driver should end.
    fn take_due(&self, now: Instant) -> Option<(Vec<Dog>, Option<Instant>)> {
        let mut timers = lock(&self.timers);
        let mut due = Vec::new();
        while let Some(top) = timers.heap.peek_mut() {
            if top.0.at > now {
                break;
            }
            let Reverse(Due { dog, .. }) = std::collections::binary_heap::PeekMut::pop(top);
            if !dog.stop.is_cancelled() {
                due.push(dog);
            }
        }
        if timers.closed {
            timers.drop_stopped();
            if timers.heap.is_empty() && timers.in_flight == 0 && due.is_empty() {
                return None;
            }
        }
        timers.looks_by = timers.heap.peek().map(|Reverse(due)| due.at);
        Some((due, timers.looks_by))
    }

    /// Acts on a watchdog that came due: reports its deadline, or spawns its renewal.
    fn fire(self: &Arc<Self>, dog: Dog) {
        if dog.stop.is_cancelled() {
            return;
        }
        let now = Instant::now();
        if now >= dog.deadline() {
            report(
                self.store.backend(),
                &dog.state,
                &dog.ended,
                LossReason::DeadlineReached,
            );
            return;
        }
        if dog.next_renew.is_none_or(|at| at > now) {
            return self.schedule(dog);
        }
        lock(&self.timers).in_flight += 1;
        tokio::spawn(renewal(Arc::clone(self), dog));
    }
}

/// The driver of one runtime's queue: sleeps until the earliest watchdog is due (or a new one
/// is due earlier) and fires every due one.
async fn drive(queue: Arc<TimerQueue>, _alive: Alive) {
    loop {
        let Some((due, looks_by)) = queue.take_due(Instant::now()) else {
            return;
        };
        for dog in due {
            queue.fire(dog);
        }
        match looks_by {
            Some(at) => tokio::select! {
                () = sleep_until(at) => {}
                () = queue.wake.notified() => {}
            },
            None => queue.wake.notified().await,
        }
    }
}

/// One renewal of one watchdog, a panic in it caught and reported.
async fn renewal(queue: Arc<TimerQueue>, dog: Dog) {
    let _flight = InFlight(Arc::clone(&queue));
    let backend = queue.store.backend();
    let (state, ended) = (dog.state.clone(), dog.ended.clone());
    let step = AssertUnwindSafe(dog.renew(&queue.renewer, backend))
        .catch_unwind()
        .await;
    match step {
        Ok(Step::Again(dog)) => queue.schedule(dog),
        Ok(Step::Stopped) => {}
        Ok(Step::Lost(reason)) => report(backend, &state, &ended, reason),
        Err(panic) => report(
            backend,
            &state,
            &ended,
            LossReason::WatchdogFailed {
                message: panic_message(panic.as_ref()),
            },
        ),
    }
}

/// Counts a renewal in flight (so that a closed queue's driver waits for it), even if the
/// renewal is dropped unfinished.
struct InFlight(Arc<TimerQueue>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut timers = lock(&self.0.timers);
        timers.in_flight = timers.in_flight.saturating_sub(1);
        let closed = timers.closed;
        drop(timers);
        if closed {
            self.0.wake.notify_one();
        }
    }
}

/// Lives as long as a driver: when the driver ends or is dropped (its runtime shut down), the
/// queue leaves its locker, and the watchdogs still in it are dropped, closing their guards'
/// state channels (which the guards report as loss).
struct Alive {
    owner: Weak<Watchdogs>,
    runtime: runtime::Id,
    queue: Arc<TimerQueue>,
}

impl Drop for Alive {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            let mut queues = lock(&owner.queues);
            if queues
                .get(&self.runtime)
                .is_some_and(|queue| Arc::ptr_eq(queue, &self.queue))
            {
                queues.remove(&self.runtime);
            }
        }
        let orphans = {
            let mut timers = lock(&self.queue.timers);
            timers.dead = true;
            std::mem::take(&mut timers.heap)
        };
        drop(orphans);
    }
}

/// Records a loss: metrics, a log line, the guard's state, its cancellation token.
fn report(
    backend: &'static str,
    state: &watch::Sender<GuardState>,
    ended: &CancellationToken,
    reason: LossReason,
) {
    metrics::lease_lost(backend, &reason);
    let lease = state.borrow().lease.clone();
    tracing::warn!(lock = %lease.name(), token = %lease.token(), %reason, "lease lost");
    // Cancel while the state is locked for writing: whoever sees the loss (woken by the state
    // change, or reading it) also sees the cancellation token fired.
    state.send_modify(|s| {
        s.lost = Some(reason);
        ended.cancel();
    });
}

fn loss_reason(error: Error) -> LossReason {
    match error {
        Error::LeaseLost { reason, .. } => reason,
        other if other.kind() == ErrorKind::LeaseLost => LossReason::NotHeld,
        other => LossReason::RenewFailed {
            error: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{FencingToken, HolderId, Lease, LockName, MemoryLeaseStore};

    fn dog(stop: &CancellationToken) -> Dog {
        let ttl = Duration::from_secs(30);
        let lease = Lease::granted(
            LockName::new("n").unwrap(),
            FencingToken::new(1),
            HolderId::random(),
            ttl,
            Instant::now(),
        );
        let (state, _) = watch::channel(GuardState { lease, lost: None });
        let every = Some(ttl / 3);
        Dog::new(state, ttl, every, stop.clone(), CancellationToken::new())
    }

    #[tokio::test(start_paused = true)]
    async fn released_watchdogs_are_swept_out_of_the_queue() {
        let watchdogs = Arc::new(Watchdogs::new(Arc::new(MemoryLeaseStore::new()), true));
        let live: Vec<CancellationToken> = (0..100)
            .map(|_| {
                let stop = CancellationToken::new();
                watchdogs.start(dog(&stop));
                stop
            })
            .collect();
        for _ in 0..10_000 {
            let stop = CancellationToken::new();
            watchdogs.start(dog(&stop));
            stop.cancel();
        }
        let queue = watchdogs.queue_on(&runtime::Handle::current());
        let len = lock(&queue.timers).heap.len();
        assert!(
            (live.len()..=2 * live.len()).contains(&len),
            "{len} entries for {} live watchdogs",
            live.len()
        );
    }
}
