//! The waiters of one store, by name, so the subscriber can tell which names still have any.
//!
//! The core [`WakeupHub`] counts the names with live watches but does not say which; one hub
//! per waited-on name does: a name is watched while its hub has a watched name. Entries of
//! names nobody watches any more are dropped when the subscriber asks, and in bulk once there
//! are [`PRUNE_AT`] of them (names whose channel was never subscribed are never asked about).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use fencelock_core::{LockName, ReleaseWatch, WakeupHub};

/// How many names may be registered before the unwatched ones are dropped.
const PRUNE_AT: usize = 1024;

/// Fans release announcements out to the waiters of each name.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    hubs: Mutex<HashMap<LockName, Arc<WakeupHub>>>,
}

impl Waiters {
    /// A watch on `name`.
    pub(crate) fn subscribe(&self, name: &LockName) -> ReleaseWatch {
        let mut hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        if hubs.len() >= PRUNE_AT {
            hubs.retain(|_, hub| hub.watched_names() > 0);
        }
        hubs.entry(name.clone()).or_default().subscribe(name)
    }

    /// Wakes the waiters of `name`.
    pub(crate) fn notify(&self, name: &str) {
        let hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hub) = hubs.get(name) {
            hub.notify(name);
        }
    }

    /// Whether `name` has a live watch; forgets it when not.
    pub(crate) fn is_watched(&self, name: &LockName) -> bool {
        let mut hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        let watched = hubs.get(name).is_some_and(|hub| hub.watched_names() > 0);
        if !watched {
            hubs.remove(name);
        }
        watched
    }

    /// Closes every watch: waiters fall back to polling. Later watches work again.
    pub(crate) fn close_all(&self) {
        let hubs = std::mem::take(&mut *self.hubs.lock().unwrap_or_else(PoisonError::into_inner));
        for hub in hubs.values() {
            hub.close_all();
        }
    }

    /// How many names have a live watch.
    pub(crate) fn watched_names(&self) -> usize {
        let hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        hubs.values().filter(|hub| hub.watched_names() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> LockName {
        LockName::new(s).unwrap()
    }

    #[tokio::test]
    async fn a_name_is_watched_until_its_last_watch_is_dropped() {
        let waiters = Waiters::default();
        let a = name("a");
        let first = waiters.subscribe(&a);
        let mut second = waiters.subscribe(&a);
        let other = waiters.subscribe(&name("b"));
        assert_eq!(waiters.watched_names(), 2);
        drop(first);
        assert!(waiters.is_watched(&a));
        waiters.notify("a");
        assert!(second.notified().await);
        drop(second);
        assert!(!waiters.is_watched(&a));
        assert!(waiters.is_watched(&name("b")));
        drop(other);
        assert_eq!(waiters.watched_names(), 0);
    }

    #[test]
    fn names_never_asked_about_are_pruned_in_bulk() {
        let waiters = Waiters::default();
        let kept = waiters.subscribe(&name("kept"));
        for i in 0..3 * PRUNE_AT {
            drop(waiters.subscribe(&name(&format!("gone/{i}"))));
        }
        assert!(waiters.hubs.lock().unwrap().len() <= PRUNE_AT);
        assert!(waiters.is_watched(&name("kept")));
        drop(kept);
    }

    #[tokio::test]
    async fn close_all_closes_every_watch() {
        let waiters = Waiters::default();
        let mut w = waiters.subscribe(&name("a"));
        waiters.close_all();
        assert!(!w.notified().await);
        assert!(!waiters.is_watched(&name("a")));
        let _again = waiters.subscribe(&name("a"));
        assert!(waiters.is_watched(&name("a")));
    }
}
