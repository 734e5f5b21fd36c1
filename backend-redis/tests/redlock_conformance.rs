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
