//! Tokens never go backwards across a crash (kill -9) and restart of the server, with and
//! without persistence: locks' and semaphores' permits'.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::{RedisServer, RedisServerOptions};
use fencelock_conformance::settle;
use fencelock_core::{FencingToken, LeaseStore};
use fencelock_redis::redis::AsyncCommands;
use support::{name, raw, server, store};

/// Grants and releases `name` a few times, then crashes and restarts the server, and checks
/// that the next grant's token is above every token before. Returns whether the token counter
/// survived the crash.
async fn tokens_rise_across_kill_and_restart(server: &RedisServer) -> bool {
    let store = store(server).await;
    let name = name("crash");
    let counter_key = store.layout().lock(&name).counter;
    let mut before: Vec<FencingToken> = Vec::new();
    for _ in 0..5 {
        let lease = store
            .try_acquire(&name, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        before.push(lease.token());
        store.release(&lease).await.unwrap();
    }
    // The last grant is still held when the server dies.
    let held = store
        .try_acquire(&name, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    before.push(held.token());

    server.kill().unwrap();
    server.restart().await.unwrap();

    let counter_survived = {
        let mut conn = raw(server).await;
        let counter: Option<u64> = conn.get(&counter_key).await.unwrap();
        counter.is_some()
    };
    // The same store reconnects by itself; until it has, calls fail transiently (settled).
    let max_before = before.iter().max().copied().unwrap();
    let after = settle::try_acquire(&store, &name, Duration::from_secs(60), Some(max_before))
        .await
        .map(|l| l.token());
    match after {
        // Without persistence the held grant is gone too, so the name is free.
        Some(token) => assert!(
            token > max_before,
            "token {token} after the restart must exceed every earlier token {before:?}"
        ),
        // With persistence the held grant survived: the old holder still holds it.
        None => {
            let info = settle::inspect(&store, &name).await;
            assert_eq!(info.map(|i| i.token), Some(held.token()));
            settle::release(&store, &held).await;
            let next =
                settle::grant(&store, &name, Duration::from_secs(60), Some(max_before)).await;
            assert!(next.token() > max_before, "{} vs {before:?}", next.token());
        }
    }
    counter_survived
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_restart_without_persistence_keeps_tokens_rising() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let counter_survived = tokens_rise_across_kill_and_restart(&server).await;
    assert!(
        !counter_survived,
        "without persistence the counter is lost, so the server clock floor must have done it"
    );
    let permit_survived = permit_tokens_rise_across_kill_and_restart(&server).await;
    assert!(
        !permit_survived,
        "without persistence the permits and the counter are lost, so the clock floor did it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_restart_with_aof_always_keeps_tokens_rising() {
    let server = server(RedisServerOptions::aof()).await;
    let counter_survived = tokens_rise_across_kill_and_restart(&server).await;
    assert!(
        counter_survived,
        "appendfsync always keeps the counter across kill -9"
    );
    let permit_survived = permit_tokens_rise_across_kill_and_restart(&server).await;
    assert!(
        permit_survived,
        "appendfsync always keeps the held permit across kill -9"
    );
}

/// Tokens come from the server clock floor even for a name never seen: they are µs since the
/// epoch, so a fresh server (or a fresh replica) cannot restart them from 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_token_is_the_server_time_in_microseconds() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = store(&server).await;
    let mut conn = raw(&server).await;
    let (secs, micros): (u64, u64) = fencelock_redis::redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .unwrap();
    let server_now = secs * 1_000_000 + micros;
    let lease = store
        .try_acquire(&name("first"), Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let token = lease.token().get();
    assert!(
        token >= server_now && token < server_now + 60_000_000,
        "token {token} vs server time {server_now}"
    );
    assert!(token <= FencingToken::MAX_EXACT);
}

/// Takes and releases permits of a semaphore, keeps one held, crashes and restarts the server,
/// and checks that the next permit's token is above every earlier one. Returns whether the
/// held permit survived the crash.
async fn permit_tokens_rise_across_kill_and_restart(server: &RedisServer) -> bool {
    use fencelock_core::PermitLimit;

    let store = store(server).await;
    let name = name("permit-crash");
    // Room for permits granted by attempts whose answer was lost while the store reconnects.
    let limit = PermitLimit::new(10).unwrap();
    let ttl = Duration::from_secs(60);
    let mut before: Vec<FencingToken> = Vec::new();
    for _ in 0..5 {
        let permit = store
            .try_acquire_permit(&name, limit, ttl, None)
            .await
            .unwrap()
            .unwrap();
        before.push(permit.token());
        store.release(&permit).await.unwrap();
    }
    let held = store
        .try_acquire_permit(&name, limit, ttl, None)
        .await
        .unwrap()
        .unwrap();
    before.push(held.token());

    server.kill().unwrap();
    server.restart().await.unwrap();

    let after = settle::definite("a permit after the restart", || {
        store.try_acquire_permit(&name, limit, ttl, None)
    })
    .await
    .expect("a place among 10");
    let max_before = before.iter().max().copied().unwrap();
    assert!(
        after.token() > max_before,
        "permit token {} after the restart must exceed every earlier token {before:?}",
        after.token()
    );
    let shown = settle::definite("inspect_permits after the restart", || {
        store.inspect_permits(&name)
    })
    .await;
    shown.holders.iter().any(|h| h.token == held.token())
}
