//! Push wake-ups for waiters: one hub per store, one watch channel per waited-on name.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

use crate::LockName;

/// A subscription to "this name may be free now" notifications.
///
/// Created by [`WakeupHub::subscribe`] (or by a backend's own mechanism). A notification sent
/// after the subscription was made is never missed, even if it arrives before
/// [`ReleaseWatch::notified`] is awaited.
#[derive(Debug)]
pub struct ReleaseWatch {
    rx: watch::Receiver<u64>,
}

impl ReleaseWatch {
    /// Waits for the next notification. Returns `false` when the source closed (the backend's
    /// subscription broke): the waiter should fall back to polling.
    pub async fn notified(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

/// Fans notifications out to the waiters of each name. Backends feed it from their push channel
/// (Redis pub/sub, PostgreSQL NOTIFY, an in-process release).
#[derive(Debug, Default)]
pub struct WakeupHub {
    senders: Mutex<HashMap<LockName, watch::Sender<u64>>>,
}

impl WakeupHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes to notifications for `name`.
    pub fn subscribe(&self, name: &LockName) -> ReleaseWatch {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if senders.len() >= 1024 {
            senders.retain(|_, tx| tx.receiver_count() > 0);
        }
        let tx = senders
            .entry(name.clone())
            .or_insert_with(|| watch::channel(0).0);
        ReleaseWatch { rx: tx.subscribe() }
    }

    /// Tells the waiters of `name` that it may be free.
    pub fn notify(&self, name: &str) {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = senders.get(name) {
            if tx.receiver_count() == 0 {
                senders.remove(name);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Wakes every waiter, e.g. after the push channel reconnected and may have missed messages.
    pub fn notify_all(&self) {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        senders.retain(|_, tx| tx.receiver_count() > 0);
        for tx in senders.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Closes every subscription: waiters fall back to polling. Later subscriptions work again.
    pub fn close_all(&self) {
        self.senders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many names currently have a live subscription.
    pub fn watched_names(&self) -> usize {
        let senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        senders
            .values()
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notification_before_await_is_not_missed() {
        let hub = WakeupHub::new();
        let name = LockName::new("n").unwrap();
        let mut w = hub.subscribe(&name);
        hub.notify("n");
        assert!(w.notified().await);
    }

    #[tokio::test]
    async fn other_names_do_not_wake() {
        let hub = WakeupHub::new();
        let mut w = hub.subscribe(&LockName::new("a").unwrap());
        hub.notify("ab");
        let woke = tokio::time::timeout(std::time::Duration::from_millis(20), w.notified()).await;
        assert!(woke.is_err());
    }

    #[tokio::test]
    async fn close_all_falls_back_to_polling() {
        let hub = WakeupHub::new();
        let mut w = hub.subscribe(&LockName::new("a").unwrap());
        hub.close_all();
        assert!(!w.notified().await);
        assert_eq!(hub.watched_names(), 0);
    }

    #[test]
    fn dead_subscriptions_are_pruned() {
        let hub = WakeupHub::new();
        drop(hub.subscribe(&LockName::new("a").unwrap()));
        hub.notify("a");
        assert!(hub.senders.lock().unwrap().is_empty());
    }
}
