//! Watchdogs: the renewal of every guard of a [`crate::Locker`], driven by one timer queue per
//! tokio runtime instead of one task per guard.
//!
//! Acquire puts the guard's watchdog in the queue of the current runtime; release only flags it
//! stopped. Neither spawns a task nor wakes one: a stopped watchdog is dropped when it comes due,
//! or swept out when the queue grows. So an uncontended acquire + release costs no cross-thread
//! wake-up, where a task per guard cost two (its spawn, and its wake at release). When
//! watchdogs come due, the queue's driver task reports those past their deadline and hands
//! those due to renew (batched: also those due within the next 2 ms) to one renewal task per
//! batch, whose outcome puts each watchdog back in the queue or reports its loss.
//!
//! A watchdog ends in exactly three ways: stopped by its guard, its lease lost (reported), or
//! its renewal panicking (caught and reported as loss). A watchdog dropped any other way (its
//! driver or renewal dropped unfinished because its runtime shut down, or no runtime to run on)
//! records its guard's loss as it goes. Never silently.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::runtime;
use tokio::sync::{Notify, Semaphore};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::guard::{Schedule, Shared, stopped};
use crate::lock;
use crate::metrics::{self, Renewals};
use crate::renewer::{MAX_BATCH, MAX_IN_FLIGHT, MAX_LINGER, Renewed, renew_group, renew_now};
use crate::{Error, ErrorKind, Lease, LeaseStore, LossReason};

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
            // Without a runtime nothing could renew or report: the watchdog, dropped here,
            // records its guard's loss (fail closed).
            Err(_) => tracing::error!(
                lock = %dog.shared.lease().name(),
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
            batching: self.batching,
            slots: Semaphore::new(MAX_IN_FLIGHT),
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

/// One guard's watchdog: a handle on the state it shares with its guard (its schedule lives
/// there), so that its timer queue entry is 32 bytes.
pub(crate) struct Dog {
    shared: Arc<Shared>,
}

impl Drop for Dog {
    /// A watchdog dropped while its guard still holds (its runtime shut down, or there was
    /// none) records the loss: the guard must not believe a lease nobody renews.
    fn drop(&mut self) {
        if !self.shared.is_stopped() && !self.shared.is_ended() {
            tracing::warn!(lock = %self.shared.lease().name(), "watchdog gone; the guard reports loss");
            self.shared.lose(stopped());
        }
    }
}

impl Dog {
    /// The schedule of a watchdog renewing to `ttl` every `every` (never, if `None`), from now.
    pub(crate) fn schedule(ttl: Duration, every: Option<Duration>) -> Schedule {
        Schedule {
            next_renew: every.and_then(|e| Instant::now().checked_add(e)),
            ttl,
            every,
            retry: FIRST_RETRY,
        }
    }

    /// The watchdog of `shared`'s lease, on the schedule stored there.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn is_stopped(&self) -> bool {
        self.shared.is_stopped()
    }

    /// When this watchdog must act next: renew, or report the deadline.
    fn due_at(&self) -> Instant {
        self.shared.with(|lease, schedule| {
            let deadline = lease.deadline();
            schedule.next_renew.map_or(deadline, |at| at.min(deadline))
        })
    }

    /// Takes in the answer to a renewal of `lease` sent at `sent_at`.
    fn answered(self, lease: &Lease, sent_at: Instant, renewed: Renewed, tally: &Renewals) -> Step {
        if self.is_stopped() {
            // Released (or dropped) while the renewal was in flight: its answer is moot.
            return Step::Stopped;
        }
        let deadline = lease.deadline();
        match renewed {
            Renewed::TimedOut if Instant::now() >= deadline => {
                Step::Lost(self, LossReason::DeadlineReached)
            }
            // Another lease of the batch reached its deadline first: this one retries.
            Renewed::TimedOut => {
                self.retry_after(tally, &"no answer before the batch's earliest deadline")
            }
            Renewed::Failed(message) => {
                tally.lost();
                Step::Lost(self, LossReason::WatchdogFailed { message })
            }
            Renewed::Answer(Ok(new)) => {
                tally.ok(deadline.saturating_duration_since(sent_at));
                self.shared.with(|lease, schedule| {
                    *lease = new;
                    schedule.next_renew =
                        schedule.every.and_then(|every| sent_at.checked_add(every));
                    schedule.retry = FIRST_RETRY;
                });
                Step::Again(self)
            }
            Renewed::Answer(Err(error)) if error.is_transient() => self.retry_after(tally, &error),
            Renewed::Answer(Err(error)) => {
                tally.lost();
                Step::Lost(self, loss_reason(error))
            }
        }
    }

    /// Tries again after the retry delay (doubling, up to the renew interval) while the lease
    /// is locally valid.
    fn retry_after(self, tally: &Renewals, error: &dyn fmt::Display) -> Step {
        tally.retry();
        let (name, retry) = self.shared.with(|lease, schedule| {
            let retry = schedule.retry;
            schedule.next_renew = Instant::now().checked_add(retry);
            schedule.retry = schedule.every.map_or(retry, |every| (retry * 2).min(every));
            (lease.name().clone(), retry)
        });
        tracing::warn!(lock = %name, %error, retry_ms = retry.as_millis() as u64, "renewal failed; retrying while the lease is locally valid");
        Step::Again(self)
    }
}

/// What a renewal leaves to do.
enum Step {
    /// Watch on: back in the queue.
    Again(Dog),
    /// The guard stopped it.
    Stopped,
    /// The lease is lost: report it.
    Lost(Dog, LossReason),
}

/// The timer queue of one runtime, and what its driver and renewals need.
struct TimerQueue {
    store: Arc<dyn LeaseStore>,
    /// Whether renewals due together go out together (`renew_many`) or each alone (`renew`).
    batching: bool,
    /// Bounds the batches in flight; further ones wait for a slot.
    slots: Semaphore,
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
    /// Renewal tasks spawned and not yet back.
    in_flight: usize,
    /// The locker is gone: the driver ends when no watchdog is left.
    closed: bool,
    /// The driver is gone (its runtime shut down): nothing here will run again.
    dead: bool,
}

impl Timers {
    /// Drops the watchdogs whose guards stopped them.
    fn drop_stopped(&mut self) {
        self.heap.retain(|Reverse(due)| !due.dog.is_stopped());
    }

    /// Puts `dog` in the heap; whether the driver must be woken (it is due before its next look).
    fn push(&mut self, dog: Dog) -> bool {
        let at = dog.due_at();
        if self.heap.len() >= self.sweep_at.max(MIN_SWEEP) {
            self.drop_stopped();
            self.sweep_at = self.heap.len() * 2;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Due { at, seq, dog }));
        let wake = self.looks_by.is_none_or(|by| at < by);
        if wake {
            self.looks_by = Some(at);
        }
        wake
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
        self.schedule_all(std::iter::once(dog));
    }

    /// Puts every watchdog of `dogs` in the queue under one lock.
    fn schedule_all(&self, dogs: impl IntoIterator<Item = Dog>) {
        let mut timers = lock(&self.timers);
        if timers.dead {
            // The runtime is shutting down: each watchdog, dropped, records its guard's loss.
            return;
        }
        let mut wake = false;
        for dog in dogs {
            wake |= timers.push(dog);
        }
        drop(timers);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Takes out the live watchdogs due by `now` (batched: and those a renewal may take up to
    /// [`MAX_LINGER`] early); `None` when the driver should end.
    fn take_due(&self, now: Instant) -> Option<Vec<Dog>> {
        let horizon = if self.batching {
            now.checked_add(MAX_LINGER).unwrap_or(now)
        } else {
            now
        };
        let mut timers = lock(&self.timers);
        let mut due = Vec::new();
        while let Some(top) = timers.heap.peek_mut() {
            if top.0.at > horizon {
                break;
            }
            let Reverse(Due { dog, .. }) = std::collections::binary_heap::PeekMut::pop(top);
            if !dog.is_stopped() {
                due.push(dog);
            }
        }
        if timers.closed {
            timers.drop_stopped();
            if timers.heap.is_empty() && timers.in_flight == 0 && due.is_empty() {
                return None;
            }
        }
        Some(due)
    }

    /// When the driver looks again: at the earliest watchdog due (`None`: when woken).
    fn next_look(&self) -> Option<Instant> {
        let mut timers = lock(&self.timers);
        timers.looks_by = timers.heap.peek().map(|Reverse(due)| due.at);
        timers.looks_by
    }

    /// Acts on the watchdogs taken out at `now`: reports those past their deadline, puts back
    /// those not yet due, and sends the renewals of the rest, batched or one by one.
    fn fire(self: &Arc<Self>, due: Vec<Dog>, now: Instant) {
        let mut renew = Vec::new();
        let mut later = Vec::new();
        for dog in due {
            let (deadline, next_renew) = dog
                .shared
                .with(|lease, schedule| (lease.deadline(), schedule.next_renew));
            if now >= deadline {
                report(
                    self.store.backend(),
                    &dog.shared,
                    LossReason::DeadlineReached,
                );
            } else if next_renew.is_some_and(|at| renew_now(at, deadline, now, self.batching)) {
                renew.push(dog);
            } else {
                later.push(dog);
            }
        }
        if !later.is_empty() {
            // Due strictly later than `now` (else they would have fired): the driver's next
            // look, computed after this, sleeps until the earliest. No wake-up, so no spin.
            let mut timers = lock(&self.timers);
            for dog in later {
                timers.push(dog);
            }
        }
        if renew.is_empty() {
            return;
        }
        let size = if self.batching { MAX_BATCH } else { 1 };
        while !renew.is_empty() {
            let rest = renew.split_off(renew.len().min(size));
            lock(&self.timers).in_flight += 1;
            let span = tracing::debug_span!("fencelock.renew", leases = renew.len());
            tokio::spawn(renewal(Arc::clone(self), renew).instrument(span));
            renew = rest;
        }
    }
}

/// The driver of one runtime's queue: sleeps until the earliest watchdog is due (or a new one
/// is due earlier) and fires every due one.
async fn drive(queue: Arc<TimerQueue>, _alive: Alive) {
    loop {
        let now = Instant::now();
        let Some(due) = queue.take_due(now) else {
            return;
        };
        if !due.is_empty() {
            queue.fire(due, now);
        }
        match queue.next_look() {
            Some(at) => tokio::select! {
                () = sleep_until(at) => {}
                () = queue.wake.notified() => {}
            },
            None => queue.wake.notified().await,
        }
    }
}

/// One renewal task: renews `dogs` (one TTL group after another, each one store call when
/// batching) and puts each back in the queue or reports its loss. A watchdog dropped here
/// unfinished (a panic, or the runtime shutting down) records its guard's loss.
async fn renewal(queue: Arc<TimerQueue>, dogs: Vec<Dog>) {
    let _flight = InFlight(Arc::clone(&queue));
    let backend = queue.store.backend();
    let tally = Renewals::new(backend);
    let mut due: Vec<(Duration, Lease, Dog)> = dogs
        .into_iter()
        .map(|dog| {
            let (ttl, lease) = dog
                .shared
                .with(|lease, schedule| (schedule.ttl, lease.clone()));
            (ttl, lease, dog)
        })
        .collect();
    due.sort_by_key(|(ttl, ..)| *ttl);
    while let Some(ttl) = due.first().map(|(ttl, ..)| *ttl) {
        let rest = due.split_off(due.partition_point(|(t, ..)| *t == ttl));
        let (leases, dogs): (Vec<Lease>, Vec<Dog>) =
            due.into_iter().map(|(_, lease, dog)| (lease, dog)).unzip();
        let sent_at = Instant::now();
        let answers = renew_group(
            queue.store.as_ref(),
            &queue.slots,
            &leases,
            ttl,
            queue.batching,
        )
        .await;
        let mut again = Vec::with_capacity(dogs.len());
        for ((dog, answer), lease) in dogs.into_iter().zip(answers).zip(&leases) {
            match dog.answered(lease, sent_at, answer, &tally) {
                Step::Again(dog) => again.push(dog),
                Step::Stopped => {}
                Step::Lost(dog, reason) => report(backend, &dog.shared, reason),
            }
        }
        queue.schedule_all(again);
        due = rest;
    }
}

/// Counts a renewal task in flight (so that a closed queue's driver waits for it), even if the
/// task is dropped unfinished.
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
/// queue leaves its locker, and the watchdogs still in it are dropped, each recording its
/// guard's loss.
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

/// Records a loss: metrics, a log line, the guard's state and its cancellation tokens.
fn report(backend: &'static str, shared: &Shared, reason: LossReason) {
    metrics::lease_lost(backend, &reason);
    let lease = shared.lease();
    tracing::warn!(lock = %lease.name(), token = %lease.token(), %reason, "lease lost");
    shared.lose(reason);
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
    use crate::{FencingToken, HolderId, LockName, MemoryLeaseStore};

    fn dog() -> (Dog, Arc<Shared>) {
        let ttl = Duration::from_secs(30);
        let lease = Lease::granted(
            LockName::new("n").unwrap(),
            FencingToken::new(1),
            HolderId::random(),
            ttl,
            Instant::now(),
        );
        let shared = Shared::new(lease, Dog::schedule(ttl, Some(ttl / 3)));
        (Dog::new(Arc::clone(&shared)), shared)
    }

    #[tokio::test(start_paused = true)]
    async fn released_watchdogs_are_swept_out_of_the_queue() {
        let watchdogs = Arc::new(Watchdogs::new(Arc::new(MemoryLeaseStore::new()), true));
        let live: Vec<Arc<Shared>> = (0..100)
            .map(|_| {
                let (dog, shared) = dog();
                watchdogs.start(dog);
                shared
            })
            .collect();
        for _ in 0..10_000 {
            let (dog, shared) = dog();
            watchdogs.start(dog);
            shared.stop();
        }
        let queue = watchdogs.queue_on(&runtime::Handle::current());
        let len = lock(&queue.timers).heap.len();
        assert!(
            (live.len()..=2 * live.len()).contains(&len),
            "{len} entries for {} live watchdogs",
            live.len()
        );
    }

    #[test]
    fn a_watchdog_dropped_while_its_guard_holds_records_the_loss() {
        let (held_dog, held) = dog();
        drop(held_dog);
        assert!(held.is_ended());
        assert!(matches!(
            held.recorded_loss(),
            Some(LossReason::WatchdogFailed { .. })
        ));

        let (released_dog, released) = dog();
        released.stop();
        drop(released_dog);
        assert!(!released.is_ended(), "a stopped watchdog goes quietly");
        assert_eq!(released.recorded_loss(), None);
    }
}
