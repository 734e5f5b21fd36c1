//! Push for election observers ([`fencelock_core::LeaseStore::watch_holder`]): one etcd watch per
//! observed name, on the range of its queue, feeding a [`WakeupHub`] that only observers use.
//!
//! On etcd the holder changes without any write when its key goes (a release, a revoke, the
//! lease running out): the next key in line is the owner from that revision on. So a delete of
//! a member key wakes the observers, and so does a put of one (a grant to an empty queue, a
//! waiter queueing, `etcdctl elect` proclaiming): they re-read the owner either way. Keys of
//! nested names (`NAME/sub/…`) share the range and are ignored, as `inspect` ignores them.
//!
//! A background task per observed name holds the watch. It starts with the first observer and
//! ends — dropping its watch stream, which cancels the watch in etcd — at the first check after
//! the last observer of the name is gone. When a live watch breaks it wakes the name's observers
//! (they re-read: events may have been missed) and opens a new watch; once the new one is
//! created it wakes them again, which also covers the first observer's read racing the first
//! watch's creation. Waiters do not use any of this: they watch their predecessor's key
//! (`wait.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{WatchOptions, WatchStream};
use fencelock_core::backend::{ReleaseWatch, WakeupHub, lock_unpoisoned};
use fencelock_core::{Error, LockName, Operation};
use tokio::time::{MissedTickBehavior, interval, sleep};

use crate::classify::classify;
use crate::keys::LockKeys;
use crate::rpc::Rpc;

/// How often an idle watch task checks whether its name still has observers.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// The first pause before opening a watch again after it broke; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// The observers of one store (shared by its clones) and the watch task of each observed name.
#[derive(Debug, Default)]
pub(crate) struct Observers {
    hub: WakeupHub,
    /// The names with a watch task, each with the id of that task.
    tasks: std::sync::Mutex<HashMap<LockName, u64>>,
    next_task: std::sync::atomic::AtomicU64,
}

impl Observers {
    /// How many names have a watch task right now.
    pub(crate) fn watched(&self) -> usize {
        lock_unpoisoned(&self.tasks).len()
    }

    /// An observer's subscription to `name`, starting the name's watch task if it has none.
    pub(crate) fn observe(
        self: &Arc<Self>,
        rpc: &Rpc,
        keys: LockKeys,
        name: &LockName,
    ) -> ReleaseWatch {
        let mut tasks = lock_unpoisoned(&self.tasks);
        // Registered before the task can look, so it never ends under a new observer.
        let watch = self.hub.observe(name);
        if !tasks.contains_key(name) {
            let id = self
                .next_task
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tasks.insert(name.clone(), id);
            let task = WatchTask {
                observers: Arc::clone(self),
                rpc: rpc.clone(),
                keys,
                name: name.clone(),
                id,
            };
            tokio::spawn(task.run());
        }
        watch
    }
}

/// The task forwarding one name's etcd watch to its observers.
struct WatchTask {
    observers: Arc<Observers>,
    rpc: Rpc,
    keys: LockKeys,
    name: LockName,
    id: u64,
}

/// Why a watch stopped.
enum Stopped {
    /// The name has no observer left: the task ends.
    Unobserved,
    /// The stream broke or etcd cancelled the watch: open another.
    Broken {
        error: Error,
        /// Whether etcd had created the watch (it may have missed changes since).
        was_live: bool,
    },
}

impl WatchTask {
    async fn run(self) {
        let mut retry = FIRST_RETRY;
        loop {
            match self.open().await {
                Ok(stream) => match self.forward(stream).await {
                    Stopped::Unobserved => return,
                    Stopped::Broken { error, was_live } => {
                        tracing::debug!(election = %self.name, %error, "observer watch broke; watching again");
                        if was_live {
                            // Whatever happens until the next watch is created goes unseen:
                            // let the observers look now (and again once it is created).
                            self.observers.hub.notify_observers(self.name.as_str());
                            retry = FIRST_RETRY;
                        }
                    }
                },
                Err(error) => {
                    tracing::debug!(election = %self.name, %error, "observer watch not opened; trying again");
                }
            }
            tokio::select! {
                () = sleep(retry) => {}
                () = self.until_unobserved() => return,
            }
            if self.ends_if_unobserved() {
                return;
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    async fn open(&self) -> Result<WatchStream, Error> {
        let options = WatchOptions::new().with_prefix();
        self.rpc
            .call(|mut c| {
                let (prefix, options) = (self.keys.prefix().to_vec(), options.clone());
                async move { c.watch(prefix, Some(options)).await }
            })
            .await
            .map_err(|e| classify(Operation::Watch, e))
    }

    /// Wakes the observers at each change of the queue until the stream breaks or nobody
    /// observes any more (then dropping the stream cancels the watch in etcd).
    async fn forward(&self, mut stream: WatchStream) -> Stopped {
        // One ticker for the whole stream, so that a busy queue does not put the check off.
        let mut check = interval(IDLE_CHECK);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        check.tick().await;
        let mut was_live = false;
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                _ = check.tick() => if self.ends_if_unobserved() {
                    return Stopped::Unobserved;
                } else {
                    continue;
                },
            };
            let broken = |error| Stopped::Broken { error, was_live };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return broken(classify(
                        Operation::Watch,
                        etcd_client::Error::WatchError("the watch stream ended".into()),
                    ));
                }
                Err(e) => return broken(classify(Operation::Watch, e)),
            };
            if resp.canceled() {
                return broken(classify(
                    Operation::Watch,
                    etcd_client::Error::WatchError(format!(
                        "etcd cancelled the watch: {}",
                        resp.cancel_reason()
                    )),
                ));
            }
            if resp.created() {
                was_live = true;
                // Changes before this revision were not watched: a read now sees them.
                self.observers.hub.notify_observers(self.name.as_str());
            }
            // Puts and deletes alike: every change of the queue may change its owner. (Only
            // observers use this hub, so no waiter's turn is involved; and a member's key is
            // read off the event without asking its type.)
            if resp
                .events()
                .iter()
                .any(|e| e.kv().is_some_and(|kv| self.keys.is_member(kv.key())))
            {
                self.observers.hub.notify_observers(self.name.as_str());
            }
        }
    }

    /// Resolves once the name has no observer left (checked every [`IDLE_CHECK`]), having
    /// given up the name's task slot.
    async fn until_unobserved(&self) {
        loop {
            sleep(IDLE_CHECK).await;
            if self.ends_if_unobserved() {
                return;
            }
        }
    }

    /// Whether the name has no observer left; if so this task gives up its slot, in the same
    /// critical section as [`Observers::observe`] takes one, so a new observer starts a task.
    fn ends_if_unobserved(&self) -> bool {
        let mut tasks = lock_unpoisoned(&self.observers.tasks);
        if self.observers.hub.is_watched(&self.name) {
            return false;
        }
        if tasks.get(&self.name) == Some(&self.id) {
            tasks.remove(&self.name);
        }
        true
    }
}

impl Drop for WatchTask {
    /// A task dropped with its runtime gives up its slot, so that observers on another runtime
    /// start a task of their own.
    fn drop(&mut self) {
        let mut tasks = lock_unpoisoned(&self.observers.tasks);
        if tasks.get(&self.name) == Some(&self.id) {
            tasks.remove(&self.name);
        }
    }
}
