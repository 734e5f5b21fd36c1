//! Push wake-ups: one subscriber connection per store, fanned out to waiters by name.
//!
//! Release and force-release `PUBLISH` the lock name on the prefix's release channel. The first
//! waiter starts a task that holds one `SUBSCRIBE` connection and feeds a [`WakeupHub`]; later
//! waiters only add a watch. If the subscription breaks, every watch is closed (waiters fall
//! back to polling at the holder's TTL and their poll interval) and the next waiter subscribes
//! again, at most once per [`RESUBSCRIBE_AFTER`].

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::{Error, LockName, Operation, ReleaseWatch, WakeupHub};
use futures::StreamExt;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::classify::{STORE, classify};

/// The least time between two attempts to open the subscriber after one failed.
pub(crate) const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// The subscriber of one store (shared by its clones).
pub(crate) struct Wakeups {
    client: redis::Client,
    channel: String,
    connect_timeout: Duration,
    hub: Arc<WakeupHub>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    task: Option<JoinHandle<()>>,
    failed_at: Option<Instant>,
}

impl Wakeups {
    pub(crate) fn new(client: redis::Client, channel: String, connect_timeout: Duration) -> Self {
        Self::with_hub(client, channel, connect_timeout, Arc::new(WakeupHub::new()))
    }

    /// A subscriber that feeds `hub`, which several subscribers may share (one per server of a
    /// Redlock store: any server's announcement wakes the waiter).
    pub(crate) fn with_hub(
        client: redis::Client,
        channel: String,
        connect_timeout: Duration,
        hub: Arc<WakeupHub>,
    ) -> Self {
        Self {
            client,
            channel,
            connect_timeout,
            hub,
            state: Mutex::new(State::default()),
        }
    }

    /// A watch on `name`, once the subscription is confirmed by the server; `Ok(None)` while
    /// a recent attempt to subscribe failed.
    pub(crate) async fn watch(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        // Subscribe the waiter before the subscriber task can deliver anything.
        let watch = self.hub.subscribe(name);
        Ok(self.ensure_subscribed().await?.then_some(watch))
    }

    /// Makes sure the subscriber connection is up, opening it if needed. `Ok(true)` once the
    /// server confirmed the subscription, `Ok(false)` while a recent attempt failed.
    pub(crate) async fn ensure_subscribed(&self) -> Result<bool, Error> {
        let mut state = self.state.lock().await;
        if state.task.as_ref().is_some_and(|task| !task.is_finished()) {
            return Ok(true);
        }
        if state
            .failed_at
            .is_some_and(|at| at.elapsed() < RESUBSCRIBE_AFTER)
        {
            return Ok(false);
        }
        match self.subscribe().await {
            Ok(stream) => {
                state.failed_at = None;
                state.task = Some(tokio::spawn(deliver(stream, Arc::clone(&self.hub))));
                tracing::debug!(channel = %self.channel, "subscribed to release announcements");
                Ok(true)
            }
            Err(error) => {
                state.failed_at = Some(Instant::now());
                Err(error)
            }
        }
    }

    /// Opens the subscriber connection and waits for the server to confirm `SUBSCRIBE`.
    async fn subscribe(&self) -> Result<redis::aio::PubSubStream, Error> {
        let op = Operation::Watch;
        let subscribe = async {
            let mut pubsub = self
                .client
                .get_async_pubsub()
                .await
                .map_err(|e| classify(Operation::Connect, e))?;
            pubsub
                .subscribe(&self.channel)
                .await
                .map_err(|e| classify(op, e))?;
            Ok::<_, Error>(pubsub.into_on_message())
        };
        tokio::time::timeout(self.connect_timeout, subscribe)
            .await
            .map_err(|_| {
                Error::unavailable(
                    STORE,
                    op,
                    format!(
                        "subscribing to release announcements took longer than {:?}",
                        self.connect_timeout
                    ),
                )
            })?
    }
}

/// Feeds announcements to the hub until the connection ends, then closes every watch.
async fn deliver(mut stream: redis::aio::PubSubStream, hub: Arc<WakeupHub>) {
    while let Some(message) = stream.next().await {
        match std::str::from_utf8(message.get_payload_bytes()) {
            Ok(name) => hub.notify(name),
            Err(_) => tracing::debug!("ignoring a non-UTF-8 release announcement"),
        }
    }
    tracing::warn!(
        "release announcements stopped (connection lost); waiters poll until a new one subscribes"
    );
    hub.close_all();
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        if let Some(task) = self.state.get_mut().task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("channel", &self.channel)
            .field("watched_names", &self.hub.watched_names())
            .finish_non_exhaustive()
    }
}
