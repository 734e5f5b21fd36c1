//! Push wake-ups on a Redis Cluster: sharded pub/sub.
//!
//! Release and force-release announce with `SPUBLISH` on the lock's own channel, which carries
//! the lock's hash tag, so only the shard owning the lock's slot hears it (classic `PUBLISH`
//! would be broadcast to every node). The store keeps one more cluster connection (RESP3) for
//! its subscriptions; the first waiter of a name `SSUBSCRIBE`s to that name's channel, on the
//! slot's node (the driver routes it and subscribes again after a failover or a slot move).
//! Announcements arrive as pushes and wake the name's waiters. A name's channel stays
//! subscribed once waited on (for the life of the store); waiters also poll at the holder's
//! TTL, so a missed announcement costs time, never safety. Semaphores' permit releases come
//! the same way on their own channels and wake only the semaphore's waiters.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use fencelock_core::backend::ReleaseWatch;
use fencelock_core::{Error, LockName, Operation};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};

use crate::classify::{STORE, classify};
use crate::keys::KeyLayout;
use crate::wakeups::{Hubs, Topic};

/// The subscriber of one cluster store (shared by its clones).
pub(crate) struct ClusterWakeups {
    conn: ClusterConnection,
    layout: KeyLayout,
    connect_timeout: Duration,
    waiters: Arc<Hubs>,
    subscribed: tokio::sync::Mutex<HashSet<(Topic, LockName)>>,
}

impl ClusterWakeups {
    /// Opens the subscriber connection from `builder` (pushes feed the returned hub).
    pub(crate) async fn open(
        builder: redis::cluster::ClusterClientBuilder,
        layout: KeyLayout,
        connect_timeout: Duration,
    ) -> Result<Self, Error> {
        let waiters: Arc<Hubs> = Arc::default();
        let hub = Arc::downgrade(&waiters);
        let client = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(move |push: PushInfo| {
                deliver(&hub, push);
                Ok::<(), std::convert::Infallible>(())
            })
            .build()
            .map_err(|e| classify(Operation::Connect, e))?;
        let conn = tokio::time::timeout(connect_timeout, client.get_async_connection())
            .await
            .map_err(|_| {
                Error::unavailable(
                    STORE,
                    Operation::Connect,
                    "opening the release subscriber took too long",
                )
            })?
            .map_err(|e| classify(Operation::Connect, e))?;
        Ok(Self {
            conn,
            layout,
            connect_timeout,
            waiters,
            subscribed: tokio::sync::Mutex::default(),
        })
    }

    /// A watch on the `topic` announcements of `name` (a lock's releases or a semaphore's),
    /// once the slot's node confirmed the subscription to its channel.
    pub(crate) async fn watch(
        &self,
        topic: Topic,
        name: &LockName,
    ) -> Result<Option<ReleaseWatch>, Error> {
        let watch = self.waiters.of(topic).subscribe(name);
        let mut subscribed = self.subscribed.lock().await;
        let key = (topic, name.clone());
        if !subscribed.contains(&key) {
            let mut conn = self.conn.clone();
            let channel = topic.channel(&self.layout, name);
            match tokio::time::timeout(self.connect_timeout, conn.ssubscribe(&channel)).await {
                Ok(Ok(())) => {
                    subscribed.insert(key);
                }
                Ok(Err(e)) => return Err(classify(Operation::Watch, e)),
                Err(_) => {
                    return Err(Error::unavailable(
                        STORE,
                        Operation::Watch,
                        "subscribing to release announcements took too long",
                    ));
                }
            }
        }
        Ok(Some(watch))
    }
}

/// Wakes the waiters of the name an `smessage` push carries, on the channel it came on.
fn deliver(hub: &Weak<Hubs>, push: PushInfo) {
    let Some(hub) = hub.upgrade() else { return };
    match push.kind {
        PushKind::SMessage => {
            if let [Value::BulkString(channel), Value::BulkString(name), ..] = push.data.as_slice()
            {
                match (std::str::from_utf8(channel), std::str::from_utf8(name)) {
                    (Ok(channel), Ok(name)) => hub.deliver(channel, name),
                    _ => tracing::debug!("ignoring a non-UTF-8 release announcement"),
                }
            }
        }
        // Announcements may have been missed while disconnected: let every waiter look again.
        PushKind::Disconnection => hub.notify_all(),
        _ => {}
    }
}

impl std::fmt::Debug for ClusterWakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterWakeups")
            .field("key_prefix", &self.layout.prefix())
            .field("watched_names", &self.waiters.watched_names())
            .finish_non_exhaustive()
    }
}
