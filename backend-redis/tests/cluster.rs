//! The conformance suite, the semaphore tier and the fence tier against a real Redis Cluster (three primaries with
//! a replica each) started by the harness, or the one named by `FENCELOCK_REDIS_CLUSTER_URL`.

#![allow(clippy::panic, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::{free_port, shared_redis_cluster};
use fencelock_conformance::{FenceFixture, Fixture};
use fencelock_redis::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use fencelock_redis::redis::cluster_async::ClusterConnection;
use fencelock_redis::{RedisFence, RedisLeaseStore, redis};

async fn store() -> RedisLeaseStore<ClusterConnection> {
    let target = shared_redis_cluster()
        .await
        .unwrap_or_else(|e| panic!("a redis cluster: {e}"));
    RedisLeaseStore::connect_cluster(target.url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", target.url()))
}

async fn cluster() -> Fixture {
    Fixture::new(store().await)
}

async fn cluster_fence() -> FenceFixture {
    FenceFixture::new(store().await.fence()).with_dead(dead())
}

/// A fence whose connection opens lazily to a port nothing listens on, and gives up fast.
fn dead() -> RedisFence {
    let port = free_port().unwrap_or_else(|e| panic!("a free port: {e}"));
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap_or_else(|e| panic!("a client: {e}"));
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(300)))
        .set_response_timeout(Some(Duration::from_millis(300)))
        .set_number_of_retries(0);
    let conn = ConnectionManager::new_lazy_with_config(client, config)
        .unwrap_or_else(|e| panic!("a lazy connection manager: {e}"));
    RedisFence::new(conn)
}

mod lock_tier {
    use super::cluster;
    fencelock_conformance::conformance_suite!(cluster);
}

mod semaphore_tier {
    use super::cluster;
    fencelock_conformance::semaphore_suite!(cluster);
}

mod fence_tier {
    use super::cluster_fence;
    fencelock_conformance::fence_suite!(cluster_fence);
}

/// Waiters are woken by sharded pub/sub: the release is announced with `SPUBLISH` on the lock's
/// own shard, which alone holds the subscription; no node sees a classic subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_through_its_shard() {
    use fencelock_core::{LeaseStore, LockName};

    let store = store().await;
    let name = LockName::new("cluster-wakeup").unwrap();
    let held = store
        .try_acquire(&name, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let mut watch = store
        .watch_released(&name)
        .await
        .unwrap()
        .expect("a cluster store subscribes (push wake-ups are on by default)");
    let channel = store.layout().release_channel(&name);
    only_its_shard_subscribes(&channel, &[]).await;
    let released = tokio::time::Instant::now();
    store.release(&held).await.unwrap();
    // Far below the 60 s TTL a poller would wait: a push woke it.
    let woken = tokio::time::timeout(Duration::from_secs(5), watch.notified())
        .await
        .expect("woken by the release announcement");
    assert!(woken, "the watch was closed instead of notified");
    assert!(released.elapsed() < Duration::from_secs(5));
}

/// A renewal batch mixing locks and permits on a cluster (one call per lease, each routed to
/// its slot) renews exactly the held ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_may_mix_locks_and_permits() {
    support::mixed_batch_renews_exactly_the_held(&store().await).await;
}

/// A permit release is announced with `SPUBLISH` on the semaphore's own channel, which only the
/// shard of the name's slot subscribes to, and wakes the semaphore's waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_release_wakes_a_waiter_through_its_shard() {
    use fencelock_core::{LeaseStore, LockName, PermitLimit};

    let store = store().await;
    let name = LockName::new(format!("cluster-permit-{{{}}}", rand::random::<u32>())).unwrap();
    let held = store
        .try_acquire_permit(
            &name,
            PermitLimit::new(1).unwrap(),
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let mut watch = store
        .watch_permits(&name)
        .await
        .unwrap()
        .expect("a cluster store subscribes (push wake-ups are on by default)");
    let keys = store.layout().permits(&name);
    only_its_shard_subscribes(
        &store.layout().permit_channel(&name),
        &[&keys.permits, &keys.limit, &keys.counter],
    )
    .await;
    store.release(&held).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), watch.notified())
        .await
        .expect("woken by the permit release announcement");
    assert!(woken, "the watch was closed instead of notified");
}

/// On the harness's cluster: the primary owning `channel`'s slot (which owns `keys` too) has
/// the one sharded subscription to it, and no node has a classic one.
async fn only_its_shard_subscribes(channel: &str, keys: &[&str]) {
    let target = shared_redis_cluster().await.unwrap();
    let Some(cluster) = target.server() else {
        return;
    };
    let owner = cluster.primary_of_key(channel).await.unwrap();
    for key in keys {
        assert_eq!(cluster.primary_of_key(key).await.unwrap(), owner, "{key}");
    }
    for node in cluster.nodes() {
        let sharded = node
            .command(&["PUBSUB", "SHARDNUMSUB", channel])
            .await
            .unwrap();
        let classic = node.command(&["PUBSUB", "NUMSUB", channel]).await.unwrap();
        assert!(classic.ends_with(":0\r\n"), "{classic}");
        if node.port() == owner {
            assert!(sharded.ends_with(":1\r\n"), "owner: {sharded}");
        }
    }
}
