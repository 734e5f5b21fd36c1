//! An immediate crash (kill -9 of the whole server) and a restart: tokens keep rising and live
//! leases keep blocking until their TTL — because grants are committed durably even where the
//! server's default is `synchronous_commit = off`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::PostgresServerOptions;
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

    // A fresh store, as a process started after the crash would have.
    let after = PgLeaseStore::connect(&server.url()).await.unwrap();
    let info = after
        .inspect(&held)
        .await
        .unwrap()
        .expect("the acknowledged grant survived the crash");
    assert_eq!(info.token, live.token());
    assert!(info.remaining <= held_ttl);
    assert!(
        after.try_acquire(&held, held_ttl).await.unwrap().is_none(),
        "a live lease still blocks after the crash"
    );
    assert!(
        after
            .try_acquire(&cycled, held_ttl)
            .await
            .unwrap()
            .is_none()
    );

    // The old store's pool recovers by itself (dead connections are replaced).
    let renewed = store.renew(&live, held_ttl).await;
    let renewed = match renewed {
        Ok(lease) => lease,
        // The first statement may have met a connection the crash had already broken.
        Err(e) if e.is_transient() => store.renew(&live, held_ttl).await.unwrap(),
        Err(e) => panic!("renew after restart: {e}"),
    };
    store.release(&renewed).await.unwrap();
    store.release(&cycled_last).await.unwrap();

    let next = after
        .try_acquire(&cycled, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(
        next.token() > cycled_last.token(),
        "token {} after the crash must exceed {}",
        next.token(),
        cycled_last.token()
    );
    after.release(&next).await.unwrap();
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
        if let Some(next) = store
            .try_acquire(&name, Duration::from_secs(60))
            .await
            .unwrap()
        {
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
            .with_durable_grants(false)
            .connect(&server.url())
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
        if after.inspect(&name).await.unwrap().map(|i| i.token) != Some(lease.token()) {
            forgotten += 1;
        }
    }
    assert!(
        forgotten > 0,
        "asynchronous commits all survived kill -9; the control proves nothing here"
    );
}
