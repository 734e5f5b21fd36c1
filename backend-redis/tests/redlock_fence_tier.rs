//! The fence tier against a Redlock store over 3 redis-server processes started by the
//! harness (shared by the cases; every case uses its own keys), with a dead twin whose three
//! servers were killed after it connected.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;
use std::time::Duration;

use fencelock_conformance::FenceFixture;
use fencelock_conformance::harness::{RedisServer, RedisServerOptions};
use fencelock_redis::RedlockLeaseStore;

/// Three servers for this test process, started on first use.
async fn servers() -> Vec<String> {
    static SERVERS: OnceLock<Vec<RedisServer>> = OnceLock::new();
    let servers = tokio::task::spawn_blocking(|| SERVERS.get_or_init(|| start(3)))
        .await
        .unwrap();
    servers.iter().map(RedisServer::url).collect()
}

fn start(n: usize) -> Vec<RedisServer> {
    (0..n)
        .map(|_| {
            RedisServer::start_blocking(RedisServerOptions::ephemeral())
                .unwrap_or_else(|e| panic!("starting redis-server: {e}"))
        })
        .collect()
}

async fn redlock() -> FenceFixture {
    // A loaded machine can take more than the default 100 ms per server for a 1 MiB value.
    let store = RedlockLeaseStore::builder()
        .with_urls(servers().await)
        .with_op_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to 3 servers: {e}"));
    FenceFixture::new(store.fence()).with_dead(dead().await.fence())
}

/// A store that connected to three servers which were then killed.
async fn dead() -> RedlockLeaseStore {
    let doomed = tokio::task::spawn_blocking(|| start(3)).await.unwrap();
    let store = RedlockLeaseStore::builder()
        .with_urls(doomed.iter().map(RedisServer::url))
        .with_op_timeout(Duration::from_millis(300))
        .with_connect_timeout(Duration::from_millis(300))
        .with_push_wakeups(false)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to 3 servers: {e}"));
    tokio::task::spawn_blocking(move || drop(doomed))
        .await
        .unwrap();
    store
}

fencelock_conformance::fence_suite!(redlock);
