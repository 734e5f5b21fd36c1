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

/// `renew_many` over a batch mixing a held lock, held permits, a released permit and a permit
/// with a forged holder, on `store` (one pipeline on one server, one call per lease on a
/// cluster): exactly the held ones are renewed, in order, and each other one is `LeaseLost`.
pub async fn mixed_batch_renews_exactly_the_held<S: fencelock_core::LeaseStore>(store: &S) {
    use fencelock_core::backend::{granted_lease, permit};
    use fencelock_core::{ErrorKind, HolderId, PermitLimit};

    let ttl = Duration::from_secs(60);
    let limit = PermitLimit::new(3).unwrap();
    let lock_name = name("batch-lock");
    let sem = name("batch-sem");
    let lock = store.try_acquire(&lock_name, ttl).await.unwrap().unwrap();
    // A lock of the semaphore's own name: the batch must not touch it for the permits.
    let same_name_lock = store.try_acquire(&sem, ttl).await.unwrap().unwrap();
    let held = store
        .try_acquire_permit(&sem, limit, ttl, None)
        .await
        .unwrap()
        .unwrap();
    let released = store
        .try_acquire_permit(&sem, limit, ttl, None)
        .await
        .unwrap()
        .unwrap();
    store.release(&released).await.unwrap();
    let forged = permit(
        granted_lease(
            sem.clone(),
            held.token(),
            HolderId::random(),
            ttl,
            Instant::now(),
        ),
        limit,
    );
    let longer = Duration::from_secs(120);
    let batch = [
        lock.clone(),
        held.clone(),
        released,
        forged,
        same_name_lock.clone(),
    ];
    let answers = store.renew_many(&batch, longer).await;
    assert_eq!(answers.len(), batch.len());
    let kinds: Vec<Option<ErrorKind>> = answers
        .iter()
        .map(|a| a.as_ref().err().map(fencelock_core::Error::kind))
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            None,
            Some(ErrorKind::LeaseLost),
            Some(ErrorKind::LeaseLost),
            None
        ],
        "{answers:?}"
    );
    let renewed = answers[1].as_ref().unwrap();
    assert_eq!(renewed.permit_limit(), Some(limit), "still a permit");
    let shown = store.inspect_permits(&sem).await.unwrap();
    assert_eq!(shown.holders.len(), 1, "{shown:?}");
    assert!(
        shown.holders[0].remaining > ttl,
        "renewed to {longer:?}: {shown:?}"
    );
    let lock_left = store.inspect(&sem).await.unwrap().unwrap();
    assert_eq!(lock_left.token, same_name_lock.token());
    assert!(
        lock_left.remaining > ttl,
        "the lock of the same name was renewed as a lock"
    );
    for lease in [&lock, &held, &same_name_lock] {
        store.release(lease).await.unwrap();
    }
}
