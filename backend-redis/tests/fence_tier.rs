//! The fence tier against a real redis-server started by the harness (or the server named by
//! `FENCELOCK_REDIS_URL`), with a dead twin on a port nothing listens on.

#![allow(clippy::panic)]

use std::time::Duration;

use fencelock_conformance::FenceFixture;
use fencelock_conformance::harness::{free_port, shared_redis};
use fencelock_redis::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use fencelock_redis::{RedisFence, RedisLeaseStore, redis};

async fn redis() -> FenceFixture {
    let target = shared_redis()
        .await
        .unwrap_or_else(|e| panic!("a redis-server for the fence tier: {e}"));
    let store = RedisLeaseStore::connect(target.url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", target.url()));
    FenceFixture::new(store.fence()).with_dead(dead())
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

fencelock_conformance::fence_suite!(redis);
