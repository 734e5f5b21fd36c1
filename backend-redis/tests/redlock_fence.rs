//! What Redlock's fence adds to the fence tier: decisions by majority when servers disagree
//! or are down. Servers are made to disagree by running the per-server script by hand, as a
//! write that reached only some of them would leave them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::{RedisServer, RedisServerOptions};
use fencelock_core::{Error, ErrorKind, Fence, FencedValue, FencingToken};
use fencelock_redis::redis::{AsyncCommands, Value};
use fencelock_redis::scripts::SCRIPTS;
use fencelock_redis::{RedlockFence, RedlockLeaseStore};
use futures::future::join_all;
use support::raw;

fn t(n: u64) -> FencingToken {
    FencingToken::new(n)
}

async fn three() -> (Vec<RedisServer>, RedlockFence) {
    let servers: Vec<RedisServer> =
        join_all((0..3).map(|_| RedisServer::start(RedisServerOptions::ephemeral())))
            .await
            .into_iter()
            .map(|s| s.unwrap_or_else(|e| panic!("starting redis-server: {e}")))
            .collect();
    let store = RedlockLeaseStore::builder()
        .with_urls(servers.iter().map(RedisServer::url))
        .with_op_timeout(Duration::from_millis(500))
        .with_push_wakeups(false)
        .connect()
        .await
        .unwrap();
    (servers, store.fence())
}

/// Runs the per-server fenced write on `server` alone.
async fn on_one(server: &RedisServer, key: &str, token: u64, stamp: u64, value: &str) -> Value {
    let mut conn = raw(server).await;
    SCRIPTS
        .redlock_fenced_set
        .key(key)
        .arg(token)
        .arg(stamp)
        .arg(value)
        .invoke_async(&mut conn)
        .await
        .unwrap()
}

async fn mark_on(server: &RedisServer, key: &str) -> Option<u64> {
    let mut conn = raw(server).await;
    conn.hget(key, "fence_token").await.unwrap()
}

/// A minority that admitted a lower token neither makes the write admitted nor wins a read;
/// the error names the highest mark the majority answered with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_rejection_is_stale_and_a_minority_never_wins() {
    let (servers, fence) = three().await;
    let key = "minority";
    fence.write(key, t(7), b"seven").await.unwrap();
    on_one(&servers[0], key, 9, 1, "nine").await;
    on_one(&servers[1], key, 9, 1, "nine").await;
    // Servers 0 and 1 reject 8; server 2 (mark 7) admits it.
    match fence.write(key, t(8), b"eight").await {
        Err(Error::StaleToken {
            presented,
            high_water,
            ..
        }) => assert_eq!((presented, high_water), (t(8), t(9))),
        other => panic!("expected StaleToken(8 < 9), got {other:?}"),
    }
    assert_eq!(
        mark_on(&servers[2], key).await,
        Some(8),
        "the minority admitted 8"
    );
    for _ in 0..5 {
        assert_eq!(
            fence.read(key).await.unwrap(),
            Some(FencedValue::new(b"nine".to_vec(), t(9)))
        );
    }
}

/// A newer write that reached one server is unknown until a read sees it; once a read returned
/// it, every later read does too (the read wrote it back to a majority).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_writes_back_what_it_returns() {
    let (servers, fence) = three().await;
    let key = "write-back";
    fence.write(key, t(9), b"nine").await.unwrap();
    on_one(&servers[0], key, 12, 1, "twelve").await;
    // With server 2 paused, the majority that answers is {0, 1}: the newest answer is 12.
    servers[2].pause().unwrap();
    assert_eq!(
        fence.read(key).await.unwrap(),
        Some(FencedValue::new(b"twelve".to_vec(), t(12)))
    );
    assert_eq!(mark_on(&servers[1], key).await, Some(12), "written back");
    servers[2].resume().unwrap();
    // Now {1, 2} answers: without the write-back this read would go back to 9.
    servers[0].pause().unwrap();
    assert_eq!(
        fence.read(key).await.unwrap(),
        Some(FencedValue::new(b"twelve".to_vec(), t(12)))
    );
    servers[0].resume().unwrap();
}

/// Among writes of one token the later one wins, also when a server missed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_later_write_of_one_token_wins() {
    let (servers, fence) = three().await;
    let key = "same-token";
    fence.write(key, t(5), b"first").await.unwrap();
    servers[2].pause().unwrap();
    fence.write(key, t(5), b"second").await.unwrap();
    servers[2].resume().unwrap();
    // Server 2 may hold "first" (the second write reached it late, or not yet): whichever two
    // servers answer, the stamp says which write is newer.
    servers[0].pause().unwrap();
    assert_eq!(
        fence.read(key).await.unwrap(),
        Some(FencedValue::new(b"second".to_vec(), t(5)))
    );
    servers[0].resume().unwrap();
    // An older stamp of the same token is admitted but never replaces a newer one.
    assert_eq!(
        on_one(&servers[1], key, 5, 1, "old stamp").await,
        Value::Array(vec![Value::Int(1)])
    );
    assert_eq!(
        fence.read(key).await.unwrap(),
        Some(FencedValue::new(b"second".to_vec(), t(5)))
    );
}

/// One server down: writes and reads go on. Two down: nothing is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_down_is_fine_a_majority_down_never_admits() {
    let (servers, fence) = three().await;
    let key = "down";
    servers[0].kill().unwrap();
    fence.write(key, t(3), b"three").await.unwrap();
    assert_eq!(
        fence.read(key).await.unwrap(),
        Some(FencedValue::new(b"three".to_vec(), t(3)))
    );
    servers[1].kill().unwrap();
    for token in [3, 4] {
        let err = fence.write(key, t(token), b"v").await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
            ),
            "{err}"
        );
    }
    assert!(fence.read(key).await.unwrap_err().is_transient());
}
