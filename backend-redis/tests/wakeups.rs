//! Push wake-ups over pub/sub: fast, one subscriber connection per store subscribed only to the
//! channels of names with waiters, and a fallback to polling when the subscription breaks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::{RedisServer, RedisServerOptions};
use fencelock_core::backend::WaitPolicy;
use fencelock_core::{LeaseStore, LockName};
use fencelock_redis::RedisLeaseStore;
use fencelock_redis::redis::aio::MultiplexedConnection;
use support::{eventually, name, raw, server, store};
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(60);
/// A poll interval no test waits out: a waiter woken sooner was woken by a push.
const SLOW_POLL: Duration = Duration::from_secs(30);

async fn subscribers(conn: &mut MultiplexedConnection, channel: &str) -> u64 {
    let (_, n): (String, u64) = fencelock_redis::redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .unwrap();
    n
}

/// The `field=` values of each line of a `CLIENT LIST`.
fn client_field(client_list: &str, field: &str) -> Vec<u64> {
    let prefix = format!("{field}=");
    client_list
        .lines()
        .map(|line| {
            let value = line
                .split(' ')
                .find_map(|f| f.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no {prefix} in {line}"));
            value.parse().unwrap()
        })
        .collect()
}

/// The channel subscriptions (`sub=`) of each line of a `CLIENT LIST`.
fn subscriptions(client_list: &str) -> Vec<u64> {
    client_field(client_list, "sub")
}

async fn pubsub_clients(conn: &mut MultiplexedConnection) -> String {
    fencelock_redis::redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(conn)
        .await
        .unwrap()
}

async fn channels(conn: &mut MultiplexedConnection) -> Vec<String> {
    let mut channels: Vec<String> = fencelock_redis::redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(conn)
        .await
        .unwrap();
    channels.sort();
    channels
}

/// How many subscribers a `PUBLISH` on `channel` reaches.
async fn publish(conn: &mut MultiplexedConnection, channel: &str) -> u64 {
    fencelock_redis::redis::cmd("PUBLISH")
        .arg(channel)
        .arg("probe")
        .query_async(conn)
        .await
        .unwrap()
}

/// Spawns a waiting acquire of `name` on `store`; the task returns when it got the lock.
fn spawn_waiter(
    store: &RedisLeaseStore,
    name: &LockName,
    poll_interval: Duration,
) -> tokio::task::JoinHandle<Instant> {
    let store = store.clone();
    let name = name.clone();
    tokio::spawn(async move {
        let policy = WaitPolicy {
            until: Some(Instant::now() + Duration::from_secs(20)),
            poll_interval,
        };
        let lease = store
            .acquire_waiting(&name, LONG, None, policy)
            .await
            .unwrap()
            .expect("granted before the wait's 20 s deadline");
        let at = Instant::now();
        store.release(&lease).await.unwrap();
        at
    })
}

async fn wait_for_subscribers(server: &RedisServer, channel: &str, n: u64) {
    let mut conn = raw(server).await;
    eventually(Duration::from_secs(5), "subscribed", || {
        let mut conn = conn.clone();
        async move { subscribers(&mut conn, channel).await == n }
    })
    .await;
    // Let the waiter finish its attempt and go to sleep on the 30 s poll interval.
    let _ = subscribers(&mut conn, channel).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_is_woken_by_release_within_milliseconds() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let holder_store = store(&server).await;
    let waiter_store = store(&server).await;
    let mut latencies = Vec::new();
    for round in 0..5 {
        let n = name("handoff");
        let channel = waiter_store.layout().release_channel(&n);
        let held = holder_store.try_acquire(&n, LONG).await.unwrap().unwrap();
        let waiter = spawn_waiter(&waiter_store, &n, SLOW_POLL);
        wait_for_subscribers(&server, &channel, 1).await;
        let released_at = Instant::now();
        holder_store.release(&held).await.unwrap();
        let acquired_at = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap_or_else(|_| panic!("round {round}: not woken by the release"))
            .unwrap();
        latencies.push(acquired_at - released_at);
    }
    latencies.sort();
    eprintln!("release → waiter granted: {latencies:?}");
    let worst = *latencies.last().unwrap();
    // The waiter slept on a 30 s poll interval and a 60 s holder TTL; only the push can have
    // woken it this soon.
    assert!(
        worst < Duration::from_millis(100),
        "slowest hand-off {worst:?} (poll interval {SLOW_POLL:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_share_one_subscriber_connection_per_store() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let holder_store = store(&server).await;
    let waiter_store = store(&server).await;
    let names: Vec<LockName> = (0..8).map(|_| name("many")).collect();
    let mut held = Vec::new();
    let mut waiters = Vec::new();
    for n in &names {
        held.push(holder_store.try_acquire(n, LONG).await.unwrap().unwrap());
        waiters.push(spawn_waiter(&waiter_store, n, SLOW_POLL));
    }
    for n in &names {
        wait_for_subscribers(&server, &waiter_store.layout().release_channel(n), 1).await;
    }
    let mut conn = raw(&server).await;
    let pubsub_clients = pubsub_clients(&mut conn).await;
    assert_eq!(
        pubsub_clients.lines().count(),
        1,
        "8 waiters, one subscriber: {pubsub_clients}"
    );
    assert_eq!(
        subscriptions(&pubsub_clients),
        [8],
        "one channel per waited-on name"
    );
    for lease in &held {
        holder_store.release(lease).await.unwrap();
    }
    for waiter in waiters {
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("every waiter woken by its release")
            .unwrap();
    }
    // A store without push wake-ups says so, and its waiters poll.
    let polling = RedisLeaseStore::builder()
        .with_url(server.url())
        .with_push_wakeups(false)
        .connect()
        .await
        .unwrap();
    assert!(polling.watch_released(&names[0]).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_subscription_falls_back_to_polling_then_resubscribes() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let holder_store = store(&server).await;
    let waiter_store = store(&server).await;
    let mut conn = raw(&server).await;

    let first = name("fallback");
    let channel = waiter_store.layout().release_channel(&first);
    let held = holder_store
        .try_acquire(&first, LONG)
        .await
        .unwrap()
        .unwrap();
    let poll = Duration::from_millis(300);
    let waiter = spawn_waiter(&waiter_store, &first, poll);
    wait_for_subscribers(&server, &channel, 1).await;
    let killed: u64 = fencelock_redis::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    assert_eq!(subscribers(&mut conn, &channel).await, 0);
    holder_store.release(&held).await.unwrap();
    // No push can arrive now; the waiter finds the free name by polling.
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter polls once its subscription broke")
        .unwrap();

    // The next waiter subscribes again and is woken by push.
    let second = name("resubscribed");
    let held = holder_store
        .try_acquire(&second, LONG)
        .await
        .unwrap()
        .unwrap();
    let waiter = spawn_waiter(&waiter_store, &second, SLOW_POLL);
    wait_for_subscribers(&server, &waiter_store.layout().release_channel(&second), 1).await;
    let released_at = Instant::now();
    holder_store.release(&held).await.unwrap();
    let acquired_at = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken by push after resubscribing")
        .unwrap();
    assert!(acquired_at - released_at < Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_hears_only_names_with_waiters_and_unsubscribes_when_they_leave() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let holder_store = store(&server).await;
    let waiter_store = store(&server).await;
    let layout = waiter_store.layout().clone();
    let mut conn = raw(&server).await;
    let a = name("a");
    let others: Vec<LockName> = (0..20).map(|_| name("other")).collect();

    let held = holder_store.try_acquire(&a, LONG).await.unwrap().unwrap();
    let waiter = spawn_waiter(&waiter_store, &a, SLOW_POLL);
    wait_for_subscribers(&server, &layout.release_channel(&a), 1).await;
    assert_eq!(channels(&mut conn).await, [layout.release_channel(&a)]);
    let subscriber = pubsub_clients(&mut conn).await;
    assert_eq!(subscriptions(&subscriber), [1]);
    let subscriber_id = client_field(&subscriber, "id");
    // Other locks come and go; their announcements reach nobody.
    for n in &others {
        let lease = holder_store.try_acquire(n, LONG).await.unwrap().unwrap();
        holder_store.release(&lease).await.unwrap();
        assert_eq!(publish(&mut conn, &layout.release_channel(n)).await, 0);
    }
    assert_eq!(
        subscribers(&mut conn, &format!("{}released", layout.prefix())).await,
        0,
        "nobody listens on the old prefix-wide channel"
    );

    // The waiter gets `a` and leaves; the subscriber drops `a`'s channel but stays connected.
    holder_store.release(&held).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken by the release")
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "unsubscribed from a's channel",
        || {
            let mut conn = conn.clone();
            async move { channels(&mut conn).await.is_empty() }
        },
    )
    .await;
    // With no channel left, the connection is no longer a pub/sub client at all.
    assert_eq!(pubsub_clients(&mut conn).await, "");
    assert_eq!(publish(&mut conn, &layout.release_channel(&a)).await, 0);

    // A new waiter on `a` subscribes again on the same connection and is woken by push.
    let held = holder_store.try_acquire(&a, LONG).await.unwrap().unwrap();
    let waiter = spawn_waiter(&waiter_store, &a, SLOW_POLL);
    wait_for_subscribers(&server, &layout.release_channel(&a), 1).await;
    let subscriber = pubsub_clients(&mut conn).await;
    assert_eq!(subscriptions(&subscriber), [1]);
    assert_eq!(client_field(&subscriber, "id"), subscriber_id);
    let released_at = Instant::now();
    holder_store.release(&held).await.unwrap();
    let acquired_at = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken by push after resubscribing")
        .unwrap();
    assert!(acquired_at - released_at < Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_get_channels_of_their_own() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let holder_store = store(&server).await;
    let waiter_store = store(&server).await;
    let layout = waiter_store.layout().clone();
    let mut conn = raw(&server).await;
    let hostile: Vec<LockName> = [
        "{a}".to_owned(),
        "}{".to_owned(),
        "with  spaces and a\\ backslash".to_owned(),
        "glob*?[x]".to_owned(),
        "*".to_owned(),
        "ünï{çødé}".to_owned(),
        "z".repeat(LockName::MAX_LEN),
    ]
    .into_iter()
    .map(|n| LockName::new(n).unwrap())
    .collect();
    let channels_of: Vec<String> = hostile.iter().map(|n| layout.release_channel(n)).collect();
    let mut distinct = channels_of.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), hostile.len());

    let mut held = Vec::new();
    let mut waiters = Vec::new();
    for n in &hostile {
        held.push(holder_store.try_acquire(n, LONG).await.unwrap().unwrap());
        waiters.push(spawn_waiter(&waiter_store, n, SLOW_POLL));
    }
    for channel in &channels_of {
        wait_for_subscribers(&server, channel, 1).await;
    }
    assert_eq!(channels(&mut conn).await, distinct);
    // Glob characters are plain text: a name the glob would match is not heard.
    let matching = LockName::new("globAB x").unwrap();
    assert_eq!(
        publish(&mut conn, &layout.release_channel(&matching)).await,
        0
    );

    for ((lease, waiter), n) in held.iter().zip(waiters).zip(&hostile) {
        let released_at = Instant::now();
        holder_store.release(lease).await.unwrap();
        let acquired_at = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap_or_else(|_| panic!("{n:?}: not woken by its release"))
            .unwrap();
        // Only the push can wake a waiter on a 30 s poll interval this soon.
        let took = acquired_at - released_at;
        assert!(
            took < Duration::from_secs(1),
            "{n:?}: hand-off took {took:?}"
        );
    }
}
