//! An immediate crash (kill -9 of the whole server) and a restart: tokens keep rising and live
//! leases keep blocking until their TTL — because grants are committed durably even where the
//! server's default is `synchronous_commit = off`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::PostgresServerOptions;
use fencelock_conformance::settle;
use fencelock_core::{LeaseStore, LockName};
use fencelock_postgres::PgLeaseStore;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_keeps_tokens_rising_and_live_leases_blocking() {
    let server = support::own_server(PostgresServerOptions {
        durable: true,
        // The server default is asynchronous commit; the store must override it for grants.
        settings: vec![("synchronous_commit".into(), "off".into())],
        ..PostgresServerOptions::default()
    })
    .await;
    assert_eq!(
        server.psql("SHOW synchronous_commit").await.unwrap().trim(),
        "off"
    );
    let store = PgLeaseStore::connect(&server.url()).await.unwrap();

    let cycled = LockName::new("crash/cycled").unwrap();
    let mut last = None;
    for _ in 0..20 {
        let lease = store
            .try_acquire(&cycled, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(last < Some(lease.token()));
        last = Some(lease.token());
        store.release(&lease).await.unwrap();
    }
    // The last grants before the crash, acknowledged just before the kill.
    let cycled_last = store
        .try_acquire(&cycled, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let held_ttl = Duration::from_secs(6);
    let held = LockName::new("crash/held").unwrap();
    let live = store.try_acquire(&held, held_ttl).await.unwrap().unwrap();
    let granted_at = Instant::now();
    server.kill().unwrap();
    server.restart().await.unwrap();
    let restarted_in = granted_at.elapsed();
    assert!(
        restarted_in < held_ttl - Duration::from_secs(1),
        "restart took {restarted_in:?}; the test needs the lease still live"
    );

    // A fresh store, as a process started after the crash would have. Calls after the crash
    // are settled: a statement may meet a connection the crash broke.
    let after = PgLeaseStore::connect(&server.url()).await.unwrap();
    let info = settle::inspect(&after, &held)
        .await
        .expect("the acknowledged grant survived the crash");
    assert_eq!(info.token, live.token());
    assert!(info.remaining <= held_ttl, "{info:?}");
    let other = settle::try_acquire(&after, &held, held_ttl, Some(live.token())).await;
    assert!(
        other.is_none(),
        "a live lease still blocks after the crash, yet: {other:?}"
    );
    let other = settle::try_acquire(&after, &cycled, held_ttl, Some(cycled_last.token())).await;
    assert!(other.is_none(), "{other:?}");

    // The old store's pool recovers by itself (dead connections are replaced).
    let renewed =
        settle::definite("renew after the restart", || store.renew(&live, held_ttl)).await;
    settle::release(&store, &renewed).await;
    settle::release(&store, &cycled_last).await;

    let next = settle::grant(
        &after,
        &cycled,
        Duration::from_secs(60),
        Some(cycled_last.token()),
    )
    .await;
    assert!(
        next.token() > cycled_last.token(),
        "token {} after the crash must exceed {}",
        next.token(),
        cycled_last.token()
    );
    settle::release(&after, &next).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_lease_blocks_until_its_ttl_after_a_crash() {
    let server = support::own_server(PostgresServerOptions {
        durable: true,
        settings: vec![("synchronous_commit".into(), "off".into())],
        ..PostgresServerOptions::default()
    })
    .await;
    let store = PgLeaseStore::connect(&server.url()).await.unwrap();
    let name = LockName::new("crash/ttl").unwrap();
    let ttl = Duration::from_secs(3);
    let sent = Instant::now();
    let lease = store.try_acquire(&name, ttl).await.unwrap().unwrap();
    server.kill().unwrap();
    server.restart().await.unwrap();
    let store = PgLeaseStore::connect(&server.url()).await.unwrap();
    // Poll until the name is free: never before the TTL ran out, promptly after.
    let next = loop {
        let attempt =
            settle::try_acquire(&store, &name, Duration::from_secs(60), Some(lease.token()));
        if let Some(next) = attempt.await {
            break next;
        }
        assert!(
            sent.elapsed() < ttl + Duration::from_secs(2),
            "still blocked long after the TTL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let freed_after = sent.elapsed();
    assert!(
        freed_after >= ttl - Duration::from_millis(50),
        "freed after {freed_after:?}, before the {ttl:?} TTL"
    );
    assert!(next.token() > lease.token());
}

/// The control for the tests above: with durable grants turned off on a server whose default is
/// `synchronous_commit = off`, the same crash forgets acknowledged grants (measured: every time).
/// So the tests above would catch a store that stopped forcing durable commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_grants_the_same_crash_forgets_grants() {
    let server = support::own_server(PostgresServerOptions {
        durable: true,
        settings: vec![("synchronous_commit".into(), "off".into())],
        ..PostgresServerOptions::default()
    })
    .await;
    let mut forgotten = 0;
    for round in 0..3 {
        let store = PgLeaseStore::builder()
            .with_url(server.url())
            .with_durable_grants(false)
            .connect()
            .await
            .unwrap();
        let name = LockName::new(format!("crash/async/{round}")).unwrap();
        let lease = store
            .try_acquire(&name, Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
        server.kill().unwrap();
        server.restart().await.unwrap();
        let after = PgLeaseStore::connect(&server.url()).await.unwrap();
        if settle::inspect(&after, &name).await.map(|i| i.token) != Some(lease.token()) {
            forgotten += 1;
        }
    }
    assert!(
        forgotten > 0,
        "asynchronous commits all survived kill -9; the control proves nothing here"
    );
}
