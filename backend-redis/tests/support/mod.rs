//! Helpers shared by the backend tests: servers from the harness, raw connections, waiting.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::future::Future;
use std::time::Duration;

use fencelock_conformance::harness::{RedisServer, RedisServerOptions};
use fencelock_core::LockName;
use fencelock_redis::RedisLeaseStore;
use fencelock_redis::redis::aio::MultiplexedConnection;
use tokio::time::Instant;

/// A fresh redis-server of its own (tests that kill, pause or flush must not share one).
pub async fn server(options: RedisServerOptions) -> RedisServer {
    RedisServer::start(options)
        .await
        .unwrap_or_else(|e| panic!("starting redis-server: {e}"))
}

/// A store with default options on `server`.
pub async fn store(server: &RedisServer) -> RedisLeaseStore {
    RedisLeaseStore::connect(&server.url()).await.unwrap()
}

/// A plain connection for looking at keys behind the store's back.
pub async fn raw(server: &RedisServer) -> MultiplexedConnection {
    fencelock_redis::redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A unique lock name.
pub fn name(what: &str) -> LockName {
    LockName::new(format!("test/{what}/{:016x}", rand::random::<u64>())).unwrap()
}

/// Waits until `condition` holds, checking every few milliseconds, at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
