//! The conformance suite, the semaphore tier and the fence tier behind Sentinel (a primary, a replica, three
//! sentinels) started by the harness, or the deployment named by
//! `FENCELOCK_REDIS_SENTINEL_URL`.

#![allow(clippy::panic)]

use std::time::Duration;

use fencelock_conformance::harness::{free_port, shared_redis_sentinel};
use fencelock_conformance::{FenceFixture, Fixture};
use fencelock_redis::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use fencelock_redis::{RedisFence, RedisLeaseStore, SentinelConnection, redis};

async fn store() -> RedisLeaseStore<SentinelConnection> {
    let target = shared_redis_sentinel()
        .await
        .unwrap_or_else(|e| panic!("a sentinel deployment: {e}"));
    RedisLeaseStore::connect_sentinel(target.url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", target.url()))
}

async fn sentinel() -> Fixture {
    Fixture::new(store().await)
}

async fn sentinel_fence() -> FenceFixture {
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
    use super::sentinel;
    fencelock_conformance::conformance_suite!(sentinel);
}

mod semaphore_tier {
    use super::sentinel;
    fencelock_conformance::semaphore_suite!(sentinel);
}

mod fence_tier {
    use super::sentinel_fence;
    fencelock_conformance::fence_suite!(sentinel_fence);
}
