//! Push wake-ups for waiters: one hub per store, one FIFO queue of waiters per waited-on name.
//!
//! A release wakes **one** waiter of the name (the one waiting longest), not all of them: the
//! lock can go to one holder anyway, and waking the whole herd makes every waiter's acquire
//! queue behind the others' (measured in BENCHMARKS.md). A woken waiter that is dropped before
//! it acts passes its turn to the next one, and a waiter that wakes but loses the race goes back
//! to the end of the queue until the next release.
//!
//! Observers (an election's [`crate::LeaderWatch`]) ride on the same subscriptions without
//! taking a turn: every notification of a name wakes all of its observers.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use crate::LockName;
use crate::lock;

/// The waiters of one name.
#[derive(Debug, Default)]
struct NameWaiters {
    notify: Arc<Notify>,
    /// Observers: woken by every notification, never taking a waiter's turn.
    observers: Arc<Notify>,
    /// Set when the backend's push channel broke: waiters fall back to polling.
    closed: AtomicBool,
}

impl NameWaiters {
    /// A place in the queue, registered at once so that no later notification is missed.
    fn join(&self, observer: bool) -> Pin<Box<OwnedNotified>> {
        let notify = if observer {
            &self.observers
        } else {
            &self.notify
        };
        let mut place = Box::pin(Arc::clone(notify).notified_owned());
        place.as_mut().enable();
        place
    }

    /// Wakes the longest waiter and every observer.
    fn wake_one(&self) {
        self.notify.notify_one();
        self.observers.notify_waiters();
    }

    /// Wakes every waiter and every observer.
    fn wake_all(&self) {
        self.notify.notify_waiters();
        self.observers.notify_waiters();
    }
}

/// A subscription to "this name may be free now" notifications.
///
/// Created by [`WakeupHub::subscribe`]. A notification sent after the subscription was made is
/// never missed, even if it arrives before [`ReleaseWatch::notified`] is awaited.
#[derive(Debug)]
pub struct ReleaseWatch {
    queue: Arc<NameWaiters>,
    place: Pin<Box<OwnedNotified>>,
    observer: bool,
}

impl ReleaseWatch {
    /// Waits for this waiter's turn. Returns `false` when the source closed (the backend's
    /// subscription broke): the waiter should fall back to polling.
    pub async fn notified(&mut self) -> bool {
        if self.queue.closed.load(Ordering::Acquire) {
            return false;
        }
        self.place.as_mut().await;
        // Back in line before the caller tries again, so a release after this point is seen.
        self.place = self.queue.join(self.observer);
        !self.queue.closed.load(Ordering::Acquire)
    }

    /// Turns this waiter into an observer of the name: woken by every notification, it takes
    /// no waiter's turn (a turn it was already given passes to the next waiter). What
    /// [`crate::LeaseStore::watch_holder`] returns by default.
    #[must_use]
    pub fn into_observer(self) -> Self {
        let Self { queue, place, .. } = self;
        // Registered before the old place is dropped, so nothing sent in between is missed.
        let place_now = queue.join(true);
        drop(place);
        Self {
            queue,
            place: place_now,
            observer: true,
        }
    }

    /// Whether this is an observer's subscription (see [`ReleaseWatch::into_observer`]).
    pub fn is_observer(&self) -> bool {
        self.observer
    }
}

/// Fans notifications out to the waiters of each name. Backends feed it from their push channel
/// (Redis pub/sub, PostgreSQL NOTIFY, an in-process release).
#[derive(Debug, Default)]
pub struct WakeupHub {
    queues: Mutex<HashMap<LockName, Arc<NameWaiters>>>,
}

impl WakeupHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<LockName, Arc<NameWaiters>>> {
        lock(&self.queues)
    }

    /// Subscribes to notifications for `name`.
    pub fn subscribe(&self, name: &LockName) -> ReleaseWatch {
        let mut queues = self.queues();
        if queues.len() >= 1024 {
            queues.retain(|_, q| has_waiters(q));
        }
        let queue = Arc::clone(queues.entry(name.clone()).or_default());
        let place = queue.join(false);
        ReleaseWatch {
            queue,
            place,
            observer: false,
        }
    }

    /// Subscribes an observer of `name`: woken by every notification of the name, taking no
    /// waiter's turn.
    pub fn observe(&self, name: &LockName) -> ReleaseWatch {
        self.subscribe(name).into_observer()
    }

    /// Tells the longest-waiting waiter of `name` that it may be free, and every observer that
    /// its holder may have changed.
    pub fn notify(&self, name: &str) {
        let mut queues = self.queues();
        if let Some(queue) = queues.get(name) {
            if has_waiters(queue) {
                queue.wake_one();
            } else {
                queues.remove(name);
            }
        }
    }

    /// Tells only the observers of `name` that its holder changed (a grant, which frees
    /// nothing for waiters).
    pub fn notify_observers(&self, name: &str) {
        if let Some(queue) = self.queues().get(name) {
            queue.observers.notify_waiters();
        }
    }

    /// Wakes every waiter of every name, e.g. after the push channel reconnected and may have
    /// missed messages.
    pub fn notify_all(&self) {
        let mut queues = self.queues();
        queues.retain(|_, q| has_waiters(q));
        for queue in queues.values() {
            queue.wake_all();
        }
    }

    /// Closes every subscription: waiters fall back to polling. Later subscriptions work again.
    pub fn close_all(&self) {
        for (_, queue) in self.queues().drain() {
            queue.closed.store(true, Ordering::Release);
            queue.wake_all();
        }
    }

    /// Whether `name` has a live subscription. A name without one is forgotten, so a backend
    /// that asks about every name it listens for (to drop idle channels) keeps the hub small.
    pub fn is_watched(&self, name: &LockName) -> bool {
        let mut queues = self.queues();
        let watched = queues.get(name).is_some_and(has_waiters);
        if !watched {
            queues.remove(name);
        }
        watched
    }

    /// How many names currently have a live subscription.
    pub fn watched_names(&self) -> usize {
        self.queues().values().filter(|q| has_waiters(q)).count()
    }
}

/// Whether any `ReleaseWatch` still holds the queue (the hub holds one reference itself).
fn has_waiters(queue: &Arc<NameWaiters>) -> bool {
    Arc::strong_count(queue) > 1
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn name(n: &str) -> LockName {
        LockName::new(n).unwrap()
    }

    async fn wakes(w: &mut ReleaseWatch) -> bool {
        tokio::time::timeout(Duration::from_millis(20), w.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn notification_before_await_is_not_missed() {
        let hub = WakeupHub::new();
        let mut w = hub.subscribe(&name("n"));
        hub.notify("n");
        assert!(w.notified().await);
    }

    #[tokio::test]
    async fn other_names_do_not_wake() {
        let hub = WakeupHub::new();
        let mut w = hub.subscribe(&name("a"));
        hub.notify("ab");
        assert!(!wakes(&mut w).await);
    }

    #[tokio::test]
    async fn one_release_wakes_one_waiter_in_arrival_order() {
        let hub = WakeupHub::new();
        let mut first = hub.subscribe(&name("n"));
        let mut second = hub.subscribe(&name("n"));
        hub.notify("n");
        assert!(!wakes(&mut second).await, "the later waiter keeps waiting");
        assert!(wakes(&mut first).await, "the longest waiter goes first");
        hub.notify("n");
        assert!(wakes(&mut second).await);
    }

    #[tokio::test]
    async fn a_dropped_waiter_passes_its_turn_on() {
        let hub = WakeupHub::new();
        let first = hub.subscribe(&name("n"));
        let mut second = hub.subscribe(&name("n"));
        hub.notify("n");
        drop(first);
        assert!(wakes(&mut second).await);
    }

    #[tokio::test]
    async fn notify_all_wakes_everyone() {
        let hub = WakeupHub::new();
        let mut a = hub.subscribe(&name("n"));
        let mut b = hub.subscribe(&name("n"));
        hub.notify_all();
        assert!(wakes(&mut a).await && wakes(&mut b).await);
    }

    #[tokio::test]
    async fn close_all_falls_back_to_polling() {
        let hub = WakeupHub::new();
        let mut w = hub.subscribe(&name("a"));
        hub.close_all();
        assert!(!w.notified().await);
        assert_eq!(hub.watched_names(), 0);
        let mut again = hub.subscribe(&name("a"));
        hub.notify("a");
        assert!(again.notified().await, "later subscriptions work again");
    }

    #[tokio::test]
    async fn a_name_is_watched_until_its_last_watch_is_dropped() {
        let hub = WakeupHub::new();
        let a = name("a");
        let first = hub.subscribe(&a);
        let mut second = hub.subscribe(&a);
        let other = hub.subscribe(&name("b"));
        assert_eq!(hub.watched_names(), 2);
        drop(first);
        assert!(hub.is_watched(&a));
        hub.notify("a");
        assert!(second.notified().await);
        drop(second);
        assert!(!hub.is_watched(&a));
        assert!(
            !hub.queues().contains_key("a"),
            "an unwatched name is forgotten"
        );
        assert!(hub.is_watched(&name("b")));
        assert!(!hub.is_watched(&name("never")));
        drop(other);
        assert_eq!(hub.watched_names(), 0);
    }

    #[test]
    fn names_never_asked_about_are_pruned_in_bulk() {
        let hub = WakeupHub::new();
        let kept = hub.subscribe(&name("kept"));
        for i in 0..3 * 1024 {
            drop(hub.subscribe(&name(&format!("gone/{i}"))));
        }
        assert!(hub.queues().len() <= 1024, "{}", hub.queues().len());
        assert!(hub.is_watched(&name("kept")));
        drop(kept);
    }

    #[test]
    fn dead_subscriptions_are_pruned() {
        let hub = WakeupHub::new();
        drop(hub.subscribe(&name("a")));
        hub.notify("a");
        assert!(hub.queues().is_empty());
    }

    #[tokio::test]
    async fn observers_see_every_release_and_take_no_turn() {
        let hub = WakeupHub::new();
        let mut waiter = hub.subscribe(&name("n"));
        let mut first = hub.observe(&name("n"));
        let mut second = hub.observe(&name("n"));
        assert!(first.is_observer() && !waiter.is_observer());
        hub.notify("n");
        assert!(wakes(&mut first).await, "an observer sees the release");
        assert!(wakes(&mut second).await, "so does every other observer");
        assert!(wakes(&mut waiter).await, "and the waiter keeps its turn");
        hub.notify("n");
        assert!(
            wakes(&mut first).await,
            "an observer sees the next release too"
        );
    }

    #[tokio::test]
    async fn grants_wake_observers_only() {
        let hub = WakeupHub::new();
        let mut waiter = hub.subscribe(&name("n"));
        let mut observer = hub.observe(&name("n"));
        hub.notify_observers("n");
        assert!(wakes(&mut observer).await);
        assert!(
            !wakes(&mut waiter).await,
            "a grant frees nothing for waiters"
        );
    }

    #[tokio::test]
    async fn a_waiter_turned_observer_passes_its_turn_on() {
        let hub = WakeupHub::new();
        let first = hub.subscribe(&name("n"));
        let mut second = hub.subscribe(&name("n"));
        hub.notify("n");
        let mut observer = first.into_observer();
        assert!(wakes(&mut second).await, "the turn went to the next waiter");
        hub.notify("n");
        assert!(wakes(&mut observer).await);
    }
}
