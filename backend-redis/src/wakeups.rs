//! Push wake-ups: one subscriber connection per store, subscribed to the release channels of
//! the names that have waiters, and to no others.
//!
//! Release and force-release `PUBLISH` the lock name on that lock's own channel
//! ([`KeyLayout::release_channel`]). The first waiter opens the store's one subscriber
//! connection; the first waiter of a name `SUBSCRIBE`s to its channel there, and once the last
//! waiter of a name is gone the subscriber `UNSUBSCRIBE`s within [`SWEEP_EVERY`], so it never
//! hears the releases of names nobody waits on. If the subscription breaks, every watch is
//! closed (waiters fall back to polling at the holder's TTL and their poll interval) and the
//! next waiter subscribes again, at most once per [`RESUBSCRIBE_AFTER`].
//!
//! Semaphores share the connection: a permit release is announced on the semaphore's own
//! channel ([`KeyLayout::permit_channel`]) and wakes only that semaphore's waiters, which wait in
//! a hub of their own ([`Hubs`]), never a lock's waiters of the same name.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use fencelock_core::backend::{ReleaseWatch, WakeupHub};
use fencelock_core::{Error, LockName, Operation};
use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::classify::{STORE, classify};
use crate::keys::KeyLayout;

/// The least time between two attempts to open the subscriber after one failed.
pub(crate) const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// How often the subscriber drops the channels of names that no longer have waiters.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// What a subscription announces: a lock's releases or a semaphore's permit releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    Lock,
    Permits,
}

impl Topic {
    /// The channel this topic of `name` is announced on.
    pub(crate) fn channel(self, layout: &KeyLayout, name: &LockName) -> String {
        match self {
            Self::Lock => layout.release_channel(name),
            Self::Permits => layout.permit_channel(name),
        }
    }
}

/// The waiters of one subscriber: of locks, and of semaphores' permits.
#[derive(Default)]
pub(crate) struct Hubs {
    pub(crate) locks: Arc<WakeupHub>,
    pub(crate) permits: WakeupHub,
}

impl Hubs {
    pub(crate) fn of(&self, topic: Topic) -> &WakeupHub {
        match topic {
            Topic::Lock => &self.locks,
            Topic::Permits => &self.permits,
        }
    }

    /// Wakes the waiters an announcement of `name` on `channel` is for.
    pub(crate) fn deliver(&self, channel: &str, name: &str) {
        if KeyLayout::is_permit_channel(channel, name) {
            self.permits.notify(name);
        } else {
            self.locks.notify(name);
        }
    }

    /// Wakes every waiter (announcements may have been missed).
    pub(crate) fn notify_all(&self) {
        self.locks.notify_all();
        self.permits.notify_all();
    }

    /// Closes every watch: its waiter polls.
    pub(crate) fn close_all(&self) {
        self.locks.close_all();
        self.permits.close_all();
    }

    pub(crate) fn watched_names(&self) -> usize {
        self.locks.watched_names() + self.permits.watched_names()
    }
}

/// The subscriber of one store (shared by its clones).
pub(crate) struct Wakeups {
    client: redis::Client,
    layout: KeyLayout,
    connect_timeout: Duration,
    waiters: Arc<Hubs>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    subscriber: Option<Subscriber>,
    failed_at: Option<Instant>,
}

/// One open subscriber connection.
struct Subscriber {
    /// Sends `SUBSCRIBE`/`UNSUBSCRIBE` while the task reads the messages.
    sink: PubSubSink,
    /// The channels (topic and name) the server confirmed on this connection.
    names: HashSet<(Topic, LockName)>,
    /// Feeds the waiters and sweeps idle channels; ends when the connection does.
    task: JoinHandle<()>,
}

impl Subscriber {
    fn is_live(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Wakeups {
    pub(crate) fn new(client: redis::Client, layout: KeyLayout, connect_timeout: Duration) -> Self {
        Self::with_waiters(client, layout, connect_timeout, Arc::default())
    }

    /// A subscriber that feeds lock waiters in `waiters`, which several subscribers may share
    /// (one per server of a Redlock store: any server's announcement wakes the waiter).
    pub(crate) fn with_waiters(
        client: redis::Client,
        layout: KeyLayout,
        connect_timeout: Duration,
        waiters: Arc<WakeupHub>,
    ) -> Self {
        Self {
            client,
            layout,
            connect_timeout,
            waiters: Arc::new(Hubs {
                locks: waiters,
                permits: WakeupHub::default(),
            }),
            state: Arc::default(),
        }
    }

    /// A watch on the `topic` announcements of `name` (a lock's releases or a semaphore's),
    /// once the server confirmed the subscription to its channel; `Ok(None)` while a recent
    /// attempt to subscribe failed.
    pub(crate) async fn watch(
        &self,
        topic: Topic,
        name: &LockName,
    ) -> Result<Option<ReleaseWatch>, Error> {
        // Register the waiter first: the sweep keeps the channel of a watched name.
        let watch = self.waiters.of(topic).subscribe(name);
        Ok(self.ensure_topic(topic, name).await?.then_some(watch))
    }

    /// Makes sure the subscriber connection is up and subscribed to the lock `name`'s release
    /// channel, opening it if needed. `Ok(true)` once the server confirmed, `Ok(false)` while a
    /// recent attempt failed. Register the waiter with the [`WakeupHub`] before calling this.
    pub(crate) async fn ensure_subscribed(&self, name: &LockName) -> Result<bool, Error> {
        self.ensure_topic(Topic::Lock, name).await
    }

    async fn ensure_topic(&self, topic: Topic, name: &LockName) -> Result<bool, Error> {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if !state.subscriber.as_ref().is_some_and(Subscriber::is_live) {
            if state
                .failed_at
                .is_some_and(|at| at.elapsed() < RESUBSCRIBE_AFTER)
            {
                return Ok(false);
            }
            match self.connect().await {
                Ok(subscriber) => {
                    state.failed_at = None;
                    state.subscriber = Some(subscriber);
                    tracing::debug!(prefix = %self.layout.prefix(), "release subscriber connected");
                }
                Err(error) => {
                    state.failed_at = Some(Instant::now());
                    return Err(error);
                }
            }
        }
        let Some(subscriber) = state.subscriber.as_mut() else {
            return Ok(false);
        };
        let key = (topic, name.clone());
        if subscriber.names.contains(&key) {
            return Ok(true);
        }
        let channel = topic.channel(&self.layout, name);
        match within(self.connect_timeout, subscriber.sink.subscribe(&channel)).await {
            Ok(()) => {
                subscriber.names.insert(key);
                tracing::trace!(lock = %name, "subscribed to its release channel");
                Ok(true)
            }
            Err(error) => {
                // A connection that cannot subscribe cannot be trusted to deliver: drop it and
                // let every waiter poll until the next one subscribes again.
                if let Some(broken) = state.subscriber.take() {
                    broken.task.abort();
                }
                self.waiters.close_all();
                state.failed_at = Some(Instant::now());
                Err(error)
            }
        }
    }

    /// Opens the subscriber connection and starts its task.
    async fn connect(&self) -> Result<Subscriber, Error> {
        let open = async {
            self.client
                .get_async_pubsub()
                .await
                .map_err(|e| classify(Operation::Connect, e))
        };
        let (sink, stream) = within(self.connect_timeout, open).await?.split();
        let task = tokio::spawn(run(
            stream,
            Arc::clone(&self.waiters),
            Arc::downgrade(&self.state),
            self.layout.clone(),
            self.connect_timeout,
        ));
        Ok(Subscriber {
            sink,
            names: HashSet::new(),
            task,
        })
    }
}

/// Runs `request`, failing as `Unavailable` when it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    request: impl Future<Output = Result<T, impl Into<RequestError>>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result.map_err(|e| e.into().0),
        Err(_) => Err(Error::unavailable(
            STORE,
            Operation::Watch,
            format!("subscribing to release announcements took longer than {limit:?}"),
        )),
    }
}

/// A failed subscriber request, classified.
struct RequestError(Error);

impl From<Error> for RequestError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl From<redis::RedisError> for RequestError {
    fn from(error: redis::RedisError) -> Self {
        Self(classify(Operation::Watch, error))
    }
}

/// Feeds announcements to the waiters and drops idle channels until the connection ends (or
/// the store is gone), then closes every watch.
async fn run(
    mut stream: PubSubStream,
    waiters: Arc<Hubs>,
    state: Weak<Mutex<State>>,
    layout: KeyLayout,
    limit: Duration,
) {
    let mut sweep = tokio::time::interval_at(Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => match std::str::from_utf8(message.get_payload_bytes()) {
                    Ok(name) => waiters.deliver(message.get_channel_name(), name),
                    Err(_) => tracing::debug!("ignoring a non-UTF-8 release announcement"),
                },
                None => {
                    tracing::warn!(
                        "release announcements stopped (connection lost); waiters poll until a \
                         new one subscribes"
                    );
                    break;
                }
            },
            _ = sweep.tick() => {
                let Some(shared) = state.upgrade() else { break };
                if let Err(error) = unsubscribe_idle(&shared, &waiters, &layout, limit).await {
                    tracing::warn!(%error, "dropping the release subscriber; waiters poll");
                    break;
                }
            }
        }
    }
    waiters.close_all();
}

/// Unsubscribes from the channels of names that no longer have waiters.
async fn unsubscribe_idle(
    state: &Mutex<State>,
    waiters: &Hubs,
    layout: &KeyLayout,
    limit: Duration,
) -> Result<(), Error> {
    let mut state = state.lock().await;
    let Some(subscriber) = state.subscriber.as_mut() else {
        return Ok(());
    };
    let idle: Vec<(Topic, LockName)> = subscriber
        .names
        .iter()
        .filter(|(topic, name)| !waiters.of(*topic).is_watched(name))
        .cloned()
        .collect();
    if idle.is_empty() {
        // Never send a bare UNSUBSCRIBE: it would drop every channel.
        return Ok(());
    }
    let channels: Vec<String> = idle
        .iter()
        .map(|(topic, name)| topic.channel(layout, name))
        .collect();
    within(limit, subscriber.sink.unsubscribe(&channels)).await?;
    for key in &idle {
        subscriber.names.remove(key);
    }
    tracing::trace!(
        count = idle.len(),
        "unsubscribed from idle release channels"
    );
    Ok(())
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        // The task holds the state only weakly and ends by itself at its next sweep; this
        // just makes it prompt.
        if let Ok(mut state) = self.state.try_lock()
            && let Some(subscriber) = state.subscriber.take()
        {
            subscriber.task.abort();
        }
    }
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("key_prefix", &self.layout.prefix())
            .field("watched_names", &self.waiters.watched_names())
            .finish_non_exhaustive()
    }
}
