//! A frozen server (SIGSTOP) and a dead one: operations fail with transient errors within the
//! operation timeout, the wake-up listener falls back to polling and comes back with the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::PostgresServerOptions;
use fencelock_conformance::settle;
use fencelock_core::{ErrorKind, LeaseStore, LockName};
use fencelock_postgres::PgLeaseStore;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_a_transient_error_within_the_op_timeout() {
    let server = support::own_server(PostgresServerOptions::default()).await;
    let store = PgLeaseStore::builder()
        .with_url(server.url())
        .with_op_timeout(Duration::from_millis(500))
        .with_connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let name = LockName::new("outage/frozen").unwrap();
    // 500 ms per statement is tight on a loaded machine: calls around the freeze are settled.
    let lease = settle::grant(&store, &name, Duration::from_secs(60), None).await;
    server.pause().unwrap();
    let started = Instant::now();
    let err = store
        .renew(&lease, Duration::from_secs(60))
        .await
        .unwrap_err();
    let took = started.elapsed();
    server.resume().unwrap();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::OutcomeUnknown | ErrorKind::Unavailable
        ),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(took < Duration::from_secs(2), "gave up after {took:?}");
    // Back to normal once the server runs again (the timed-out connection is not reused).
    let renewed = settle::definite("renew after the freeze", || {
        store.renew(&lease, Duration::from_secs(60))
    })
    .await;
    settle::release(&store, &renewed).await;
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_falls_back_to_polling_and_returns_with_the_server() {
    let server = support::own_server(PostgresServerOptions::default()).await;
    let store = PgLeaseStore::connect(&server.url()).await.unwrap();
    let name = LockName::new("outage/listen").unwrap();
    let mut before = store
        .watch_released(&name)
        .await
        .unwrap()
        .expect("push wake-ups");
    assert!(store.is_listening());

    server.kill().unwrap();
    // The old subscription closes (its waiter polls) and new waiters are told to poll.
    assert!(
        !tokio::time::timeout(Duration::from_secs(10), before.notified())
            .await
            .expect("the subscription ends when the listener cannot reconnect"),
        "closed, not notified"
    );
    until("listener down", || !store.is_listening()).await;
    assert!(store.watch_released(&name).await.unwrap().is_none());

    server.restart().await.unwrap();
    until("listener back", || store.is_listening()).await;
    let mut after = store
        .watch_released(&name)
        .await
        .unwrap()
        .expect("push again");
    // The first statements may meet connections the crash broke.
    let lease = settle::grant(&store, &name, Duration::from_secs(60), None).await;
    settle::release(&store, &lease).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), after.notified())
            .await
            .expect("notified after the listener came back")
    );
}
