//! The whole conformance suite and the semaphore tier against a real redis-server started by the harness (or the
//! server named by `FENCELOCK_REDIS_URL`).

#![allow(clippy::panic)]

use fencelock_conformance::Fixture;
use fencelock_conformance::harness::shared_redis;
use fencelock_redis::RedisLeaseStore;

async fn redis() -> Fixture {
    let target = shared_redis()
        .await
        .unwrap_or_else(|e| panic!("a redis-server for the conformance suite: {e}"));
    let store = RedisLeaseStore::connect(target.url())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", target.url()));
    Fixture::new(store)
}

fencelock_conformance::conformance_suite!(redis);

mod semaphore_tier {
    use super::redis;
    fencelock_conformance::semaphore_suite!(redis);
}
