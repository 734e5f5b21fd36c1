//! Push wake-ups: one LISTEN connection per store feeding a [`WakeupHub`].
//!
//! Release and force-release call `pg_notify(channel, name)` in the same statement, so the
//! notification is delivered exactly when the release commits. One background task per store
//! owns a [`PgListener`] on its own single-connection pool (it never takes a slot of the
//! store's pool) and fans payloads out to the waiters of each name.
//!
//! If the connection drops, notifications may have been missed: after sqlx reconnects, every
//! waiter is woken to try again. If reconnecting fails, every subscription is closed so that
//! waiters fall back to polling, and new waiters poll until the listener is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fencelock_core::backend::{ReleaseWatch, WakeupHub};
use fencelock_core::{Error, LockName, Operation};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::Ident;
use crate::classify::classify;

/// The longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

pub(crate) struct Wakeups {
    channel: Ident,
    pool: PgPool,
    shared: Arc<Shared>,
    task: OnceCell<AbortOnDrop>,
}

#[derive(Debug, Default)]
struct Shared {
    hub: WakeupHub,
    /// Whether the LISTEN connection is believed to be up.
    listening: AtomicBool,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("channel", &self.channel)
            .field("started", &self.task.initialized())
            .field("listening", &self.shared.listening.load(Ordering::Relaxed))
            .field("watched_names", &self.shared.hub.watched_names())
            .finish()
    }
}

impl Wakeups {
    pub(crate) fn new(channel: Ident, options: PgConnectOptions, timeout: Duration) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options);
        Self {
            channel,
            pool,
            shared: Arc::default(),
            task: OnceCell::new(),
        }
    }

    /// A subscription for `name`, starting the listener on first use. `Ok(None)` while the
    /// listener is down: the waiter polls.
    pub(crate) async fn subscribe(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.task
            .get_or_try_init(|| async {
                let listener = listen(&self.pool, &self.channel).await?;
                self.shared.listening.store(true, Ordering::SeqCst);
                let task = tokio::spawn(run(
                    listener,
                    self.pool.clone(),
                    self.channel.clone(),
                    Arc::clone(&self.shared),
                ));
                Ok::<_, Error>(AbortOnDrop(task))
            })
            .await?;
        if !self.shared.listening.load(Ordering::SeqCst) {
            return Ok(None);
        }
        Ok(Some(self.shared.hub.subscribe(name)))
    }

    /// Whether the LISTEN connection is up (for tests and health checks).
    pub(crate) fn is_listening(&self) -> bool {
        self.task.initialized() && self.shared.listening.load(Ordering::SeqCst)
    }
}

async fn listen(pool: &PgPool, channel: &Ident) -> Result<PgListener, Error> {
    let fail = |e| classify(Operation::Watch, e);
    let mut listener = PgListener::connect_with(pool).await.map_err(fail)?;
    // sqlx quotes the channel itself; it is a validated identifier anyway.
    listener.listen(channel.as_str()).await.map_err(fail)?;
    Ok(listener)
}

async fn run(mut listener: PgListener, pool: PgPool, channel: Ident, shared: Arc<Shared>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => shared.hub.notify(notification.payload()),
            Ok(None) => {
                // sqlx lost the connection and already reconnected (and re-listened); anything
                // sent in between is gone, so every waiter re-checks.
                tracing::debug!(%channel, "LISTEN connection was re-established; waking all waiters");
                shared.hub.notify_all();
            }
            Err(error) => {
                tracing::warn!(%channel, %error, "LISTEN connection lost; waiters poll until it is back");
                shared.listening.store(false, Ordering::SeqCst);
                shared.hub.close_all();
                drop(listener);
                listener = reconnect(&pool, &channel).await;
                shared.listening.store(true, Ordering::SeqCst);
                shared.hub.notify_all();
                tracing::info!(%channel, "LISTEN connection is back");
            }
        }
    }
}

async fn reconnect(pool: &PgPool, channel: &Ident) -> PgListener {
    let mut backoff = Duration::from_millis(20);
    loop {
        tokio::time::sleep(fencelock_core::backend::with_jitter(backoff)).await;
        match listen(pool, channel).await {
            Ok(listener) => return listener,
            Err(error) => {
                tracing::debug!(%channel, %error, "LISTEN reconnect failed");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Stops the listener task (and closes its connection) when the store goes away.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
