//! Push wake-ups: one LISTEN connection per store feeding a [`WakeupHub`].
//!
//! Release and force-release call `pg_notify(channel, name)` in the same statement, so the
//! notification is delivered exactly when the release commits. One background task per store
//! owns a [`PgListener`] on its own single-connection pool (it never takes a slot of the
//! store's pool) and fans payloads out to the waiters of each name.
//!
//! A permit's release notifies on the same channel with the payload [`PERMIT_PREFIX`] + name.
//! No lock name holds that control character, so the listener tells the two apart for sure and
//! feeds the permit waiters from a hub of their own: the release of a permit of `x` never
//! takes a turn from a waiter for the lock `x`, nor the other way round. One LISTEN serves
//! both.
//!
//! If the connection drops, notifications may have been missed: after sqlx reconnects, every
//! waiter is woken to try again. If reconnecting fails, every subscription is closed so that
//! waiters fall back to polling, and new waiters poll until the listener is back.
//!
//! # A LISTEN through a transaction-mode pooler
//!
//! It succeeds, and then hears nothing: the pooler lent it a server connection for that one
//! statement. Worse, that server connection keeps listening after it went back to the pool, and
//! hands each notification to whichever client it serves next (sqlx fails that client's
//! statement: "unexpected message: NotificationResponse"), until the pooler closes it as dirty.
//! So after connecting the listener tests itself: it sends a NOTIFY on its channel through the
//! store's pool and expects to hear it within [`PROBE_TIMEOUT`]. If it hears nothing — or the
//! test NOTIFY itself comes back with the stray notification — the listener is **stopped for
//! good** (no more LISTENs through the pooler), a warning says to point `listen_url` straight at
//! PostgreSQL, and waiters poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fencelock_core::backend::{ReleaseWatch, WakeupHub};
use fencelock_core::{Error, LockName, Operation};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{Notify, OnceCell};
use tokio::task::JoinHandle;

use crate::Ident;
use crate::classify::{classify, is_stray_notification};
use crate::statements::{Arg, Statement};

/// The longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What starts the payload of a permit's release (`chr(1)` in `permit_release.sql`): a control
/// character, which a [`LockName`] never holds.
pub(crate) const PERMIT_PREFIX: char = '\u{1}';

/// How long the listener waits to hear its own test NOTIFY before it calls itself deaf.
/// Generous: a false alarm only makes waiters poll.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) struct Wakeups {
    channel: Ident,
    pool: PgPool,
    probe: Probe,
    shared: Arc<Shared>,
    task: OnceCell<AbortOnDrop>,
}

/// What the listener needs to test itself: the store's pool and its NOTIFY statement.
#[derive(Clone)]
struct Probe {
    pool: PgPool,
    notify: Statement,
}

#[derive(Debug, Default)]
struct Shared {
    hub: WakeupHub,
    /// The permit waiters (semaphores), apart from the lock waiters.
    permit_hub: WakeupHub,
    /// Whether the LISTEN connection is believed to be up (and not deaf).
    listening: AtomicBool,
    /// Notifications received so far.
    heard: AtomicU64,
    /// How many times the LISTEN connection was (re)established: a self-test that spans a
    /// reconnect proves nothing (its NOTIFY may have fallen into the gap).
    connections: AtomicU64,
    /// Whether the self-test found the listener deaf (it is then stopped for good).
    deaf: AtomicBool,
    /// Stops the listener task.
    stop: Notify,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("channel", &self.channel)
            .field("started", &self.task.initialized())
            .field("listening", &self.shared.listening.load(Ordering::Relaxed))
            .field("deaf", &self.shared.deaf.load(Ordering::Relaxed))
            .field("watched_names", &self.shared.hub.watched_names())
            .field(
                "watched_semaphores",
                &self.shared.permit_hub.watched_names(),
            )
            .finish()
    }
}

impl Wakeups {
    pub(crate) fn new(
        channel: Ident,
        options: PgConnectOptions,
        timeout: Duration,
        store_pool: PgPool,
        notify: Statement,
    ) -> Self {
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
            probe: Probe {
                pool: store_pool,
                notify,
            },
            shared: Arc::default(),
            task: OnceCell::new(),
        }
    }

    /// A subscription for the lock `name`, starting the listener on first use. `Ok(None)` while
    /// the listener is down (or found deaf): the waiter polls.
    pub(crate) async fn subscribe(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.subscribe_to(Hub::Locks, name).await
    }

    /// A subscription for the permits of the semaphore `name`, as [`Wakeups::subscribe`].
    pub(crate) async fn subscribe_permits(
        &self,
        name: &LockName,
    ) -> Result<Option<ReleaseWatch>, Error> {
        self.subscribe_to(Hub::Permits, name).await
    }

    async fn subscribe_to(&self, hub: Hub, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        if self.shared.deaf.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.task
            .get_or_try_init(|| async {
                let listener = listen(&self.pool, &self.channel).await?;
                self.shared.listening.store(true, Ordering::SeqCst);
                let task = tokio::spawn(run(
                    listener,
                    self.pool.clone(),
                    self.channel.clone(),
                    self.probe.clone(),
                    Arc::clone(&self.shared),
                ));
                Ok::<_, Error>(AbortOnDrop(task))
            })
            .await?;
        if !self.shared.listening.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let hub = match hub {
            Hub::Locks => &self.shared.hub,
            Hub::Permits => &self.shared.permit_hub,
        };
        Ok(Some(hub.subscribe(name)))
    }

    /// Whether the LISTEN connection is up (for tests and health checks).
    pub(crate) fn is_listening(&self) -> bool {
        self.task.initialized() && self.shared.listening.load(Ordering::SeqCst)
    }

    /// Whether the self-test found the listener deaf (it is then stopped for good).
    pub(crate) fn is_deaf(&self) -> bool {
        self.shared.deaf.load(Ordering::SeqCst)
    }

    /// What the LISTEN connection connects with (for `diagnose()`'s pooler probe).
    pub(crate) fn connect_options(&self) -> Arc<PgConnectOptions> {
        self.pool.connect_options()
    }
}

/// Which waiters a subscription is for.
#[derive(Clone, Copy)]
enum Hub {
    Locks,
    Permits,
}

impl Shared {
    /// Hands a release's payload to the waiters of its name: a permit's (after
    /// [`PERMIT_PREFIX`]) or a lock's.
    fn notify(&self, payload: &str) {
        match payload.strip_prefix(PERMIT_PREFIX) {
            Some(semaphore) => self.permit_hub.notify(semaphore),
            None => self.hub.notify(payload),
        }
    }

    /// Wakes every waiter, of locks and of permits, to re-check.
    fn notify_all(&self) {
        self.hub.notify_all();
        self.permit_hub.notify_all();
    }

    /// Closes every subscription: the waiters poll.
    fn close_all(&self) {
        self.hub.close_all();
        self.permit_hub.close_all();
    }
}

async fn listen(pool: &PgPool, channel: &Ident) -> Result<PgListener, Error> {
    let fail = |e| classify(Operation::Watch, e);
    let mut listener = PgListener::connect_with(pool).await.map_err(fail)?;
    // sqlx quotes the channel itself; it is a validated identifier anyway.
    listener.listen(channel.as_str()).await.map_err(fail)?;
    Ok(listener)
}

async fn run(
    mut listener: PgListener,
    pool: PgPool,
    channel: Ident,
    probe: Probe,
    shared: Arc<Shared>,
) {
    // Dropped (and the test stopped) with this task.
    let mut _test = self_test(&probe, &channel, &shared);
    loop {
        let received = tokio::select! {
            // The listener is being thrown away: no need to finish a read.
            () = shared.stop.notified() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => {
                shared.heard.fetch_add(1, Ordering::SeqCst);
                shared.notify(notification.payload());
            }
            Ok(None) => {
                // sqlx lost the connection and already reconnected (and re-listened); anything
                // sent in between is gone, so every waiter re-checks.
                tracing::debug!(%channel, "LISTEN connection was re-established; waking all waiters");
                shared.connections.fetch_add(1, Ordering::SeqCst);
                shared.notify_all();
                _test = self_test(&probe, &channel, &shared);
            }
            Err(error) => {
                tracing::warn!(%channel, %error, "LISTEN connection lost; waiters poll until it is back");
                shared.listening.store(false, Ordering::SeqCst);
                shared.connections.fetch_add(1, Ordering::SeqCst);
                shared.close_all();
                drop(listener);
                listener = tokio::select! {
                    () = shared.stop.notified() => return,
                    listener = reconnect(&pool, &channel) => listener,
                };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                shared.listening.store(true, Ordering::SeqCst);
                shared.notify_all();
                tracing::info!(%channel, "LISTEN connection is back");
                _test = self_test(&probe, &channel, &shared);
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

/// Starts the listener's self-test: NOTIFY through the store's pool, then check that the
/// listener heard anything within [`PROBE_TIMEOUT`]; if not, stop it for good.
fn self_test(probe: &Probe, channel: &Ident, shared: &Arc<Shared>) -> AbortOnDrop {
    let (probe, channel, shared) = (probe.clone(), channel.clone(), Arc::clone(shared));
    AbortOnDrop(tokio::spawn(async move {
        let before = shared.heard.load(Ordering::SeqCst);
        let connection = shared.connections.load(Ordering::SeqCst);
        // The empty payload is no lock name, so it wakes nobody.
        let sent = probe
            .notify
            .execute(
                vec![Arg::Text(channel.as_str()), Arg::Text("")],
                &probe.pool,
            )
            .await;
        match sent {
            Ok(()) => {
                tokio::time::sleep(PROBE_TIMEOUT).await;
                // Lost or re-established meanwhile: the NOTIFY may have fallen into the gap, so
                // silence proves nothing (the reconnect starts a test of its own).
                let same_connection = shared.connections.load(Ordering::SeqCst) == connection
                    && shared.listening.load(Ordering::SeqCst);
                if same_connection && shared.heard.load(Ordering::SeqCst) == before {
                    stop_deaf(
                        &channel,
                        &shared,
                        "heard nothing of a NOTIFY on its own channel",
                    );
                }
            }
            // The NOTIFY ran on a server connection that LISTENs on this channel for another
            // client: the listener's, lent back to the pool by a transaction-mode pooler.
            Err(error) if is_stray_notification(&error) => stop_deaf(
                &channel,
                &shared,
                "left a LISTEN on a pooled server connection (the test NOTIFY came back to the store's pool)",
            ),
            // Nothing learned (the store is unreachable, or a standby refuses NOTIFY).
            Err(error) => {
                tracing::debug!(%channel, %error, "LISTEN self-test could not send its NOTIFY");
            }
        }
    }))
}

fn stop_deaf(channel: &Ident, shared: &Shared, finding: &str) {
    if shared.deaf.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::warn!(
        %channel,
        "the LISTEN connection {finding}: it goes through a transaction-mode pooler, which lends \
         LISTEN a server connection only for that statement. Wake-ups are off for this store and \
         waiters poll (up to their poll interval late); point listen_url straight at PostgreSQL \
         (or at a session-mode pool) to have them back"
    );
    shared.listening.store(false, Ordering::SeqCst);
    shared.close_all();
    shared.stop.notify_one();
}

/// Stops the listener task (and closes its connection) when the store goes away.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
