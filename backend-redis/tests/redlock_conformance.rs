//! The whole conformance suite against Redlock stores over 3 and over 5 redis-server processes
//! started by the harness (shared by the cases of each module; every case uses its own names).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use fencelock_conformance::Fixture;
use fencelock_conformance::harness::{RedisServer, RedisServerOptions};
use fencelock_redis::RedlockLeaseStore;

/// `n` servers for this test process, started on first use.
async fn servers(cell: &'static OnceLock<Vec<RedisServer>>, n: usize) -> Vec<String> {
    let servers = tokio::task::spawn_blocking(move || {
        cell.get_or_init(|| {
            (0..n)
                .map(|_| {
                    RedisServer::start_blocking(RedisServerOptions::ephemeral())
                        .unwrap_or_else(|e| panic!("starting redis-server: {e}"))
                })
                .collect()
        })
    })
    .await
    .unwrap();
    servers.iter().map(RedisServer::url).collect()
}

async fn redlock(cell: &'static OnceLock<Vec<RedisServer>>, n: usize) -> Fixture {
    let urls = servers(cell, n).await;
    let store = RedlockLeaseStore::connect(urls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {n} servers: {e}"));
    assert_eq!(store.servers(), n);
    Fixture::new(store)
}

mod three {
    use super::*;

    static SERVERS: OnceLock<Vec<RedisServer>> = OnceLock::new();

    async fn redlock3() -> Fixture {
        redlock(&SERVERS, 3).await
    }

    fencelock_conformance::conformance_suite!(redlock3);
}

mod five {
    use super::*;

    static SERVERS: OnceLock<Vec<RedisServer>> = OnceLock::new();

    async fn redlock5() -> Fixture {
        redlock(&SERVERS, 5).await
    }

    fencelock_conformance::conformance_suite!(redlock5);
}

/// Redlock has no semaphores: every semaphore operation is `Unsupported`, saying why and what
/// to use instead, and grants nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphores_are_unsupported_with_the_reason() {
    use std::time::Duration;

    use fencelock_core::{AcquireOptions, ErrorKind, LeaseStore, LockName, Locker, PermitLimit};

    static SERVERS: OnceLock<Vec<RedisServer>> = OnceLock::new();
    let store = RedlockLeaseStore::connect(servers(&SERVERS, 3).await)
        .await
        .unwrap();
    let name = LockName::new("redlock-semaphore").unwrap();
    let limit = PermitLimit::new(2).unwrap();
    let acquired = store
        .try_acquire_permit(&name, limit, Duration::from_secs(10), None)
        .await;
    let inspected = store.inspect_permits(&name).await;
    let locker = Locker::new(store.clone());
    let waited = locker
        .semaphore(name.clone(), 2)
        .unwrap()
        .acquire(AcquireOptions::new().with_timeout(Duration::from_secs(1)))
        .await;
    for error in [
        acquired.unwrap_err(),
        inspected.unwrap_err(),
        waited.unwrap_err(),
    ] {
        assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
        let text = error.to_string();
        assert!(
            text.contains("no semaphores") && text.contains("majority") && text.contains("Cluster"),
            "the error says why and what to use: {text}"
        );
    }
    assert!(
        store.inspect(&name).await.unwrap().is_none(),
        "no lock was taken"
    );
}
