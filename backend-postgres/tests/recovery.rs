//! `pg_terminate_backend` of every connection the store has, mid-use: the store recovers by
//! itself, wake-ups come back, and a lease lost meanwhile is reported as lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::PostgresServerOptions;
use fencelock_conformance::settle;
use fencelock_core::backend::WaitPolicy;
use fencelock_core::{AcquireOptions, ErrorKind, LeaseStore, LockName, Locker, LossReason};
use fencelock_postgres::PgLeaseStore;
use fencelock_postgres::sqlx::{self, PgPool};
use tokio::time::Instant;

/// Terminates every client connection except the admin pool's own; returns how many.
async fn terminate_others(admin: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
           AND application_name <> 'fencelock-admin'",
    )
    .fetch_one(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_recover_and_lost_leases_are_reported() {
    // A server of its own: terminating "every other connection" must not hit other tests.
    let server = support::own_server(PostgresServerOptions::default()).await;
    let url = server.url();
    let admin_url = format!("{url}?application_name=fencelock-admin");
    let admin = support::admin_pool(&admin_url).await;
    let store = PgLeaseStore::connect(&url).await.unwrap();
    let other = PgLeaseStore::connect(&url).await.unwrap();
    let locker = Locker::new(store.clone());

    // A guarded lease with a watchdog, and a waiter that keeps the listener busy.
    let kept = LockName::new("recovery/kept").unwrap();
    let lost = LockName::new("recovery/lost").unwrap();
    let ttl = Duration::from_millis(900);
    let kept_guard = locker
        .acquire(&kept, AcquireOptions::new().with_ttl(ttl).with_no_wait())
        .await
        .unwrap();
    let lost_guard = locker
        .acquire(&lost, AcquireOptions::new().with_ttl(ttl).with_no_wait())
        .await
        .unwrap();
    let held = other
        .try_acquire(
            &LockName::new("recovery/wait").unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap()
        .unwrap();
    let waiter = {
        let (store, floor) = (store.clone(), held.token());
        tokio::spawn(async move {
            let name = LockName::new("recovery/wait").unwrap();
            let policy = WaitPolicy {
                until: Some(Instant::now() + Duration::from_secs(30)),
                poll_interval: Duration::from_secs(60),
            };
            // Its sessions die too: a wait that fails transiently is waited again.
            settle::acquire(&store, &name, Some(floor), || {
                store.acquire_waiting(&name, Duration::from_secs(60), None, policy)
            })
            .await
        })
    };
    let started = Instant::now();
    while !store.is_listening() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Traffic in flight while the sessions die: every failure must be a transient error.
    let busy = {
        let store = store.clone();
        tokio::spawn(async move {
            let name = LockName::new("recovery/busy").unwrap();
            let (mut ok, mut transient) = (0_u32, 0_u32);
            let until = Instant::now() + Duration::from_millis(600);
            while Instant::now() < until {
                match store.try_acquire(&name, Duration::from_secs(5)).await {
                    Ok(Some(lease)) => match store.release(&lease).await {
                        Ok(()) => ok += 1,
                        Err(e) if e.is_transient() || e.is_lease_lost() => transient += 1,
                        Err(e) => panic!("release during termination: {e}"),
                    },
                    // A release whose reply was lost leaves the name held until its TTL.
                    Ok(None) => {
                        if let Some(info) = store.inspect(&name).await.ok().flatten() {
                            let _ = store.force_release(&name).await;
                            assert!(info.remaining <= Duration::from_secs(5));
                        }
                    }
                    Err(e) if e.is_transient() => transient += 1,
                    Err(e) => panic!("acquire during termination: {e}"),
                }
            }
            (ok, transient)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Kill every session: both stores' pools and the listener.
    let killed = terminate_others(&admin).await;
    assert!(killed >= 3, "terminated {killed} sessions");
    // While the holder's connections are gone, an operator breaks one of its leases.
    let broken = settle::force_release(&other, &lost).await;
    assert!(
        broken.broke(lost_guard.token()),
        "{broken:?}, held by {}",
        lost_guard.token()
    );
    let (ok, transient) = busy.await.unwrap();
    println!("busy loop: {ok} cycles ok, {transient} transient errors");
    assert!(ok > 10, "the store kept working: {ok} cycles");

    // The watchdog's next renewal runs on fresh connections: the broken lease is reported lost,
    // the other one is kept alive across several TTLs.
    let reason = tokio::time::timeout(ttl * 2, lost_guard.lost())
        .await
        .expect("the loss is signalled within the TTL");
    assert_eq!(reason, LossReason::NotHeld);
    assert!(!lost_guard.is_valid());
    assert_eq!(lost_guard.check().unwrap_err().kind(), ErrorKind::LeaseLost);
    tokio::time::sleep(ttl * 2).await;
    assert!(
        kept_guard.is_valid(),
        "the kept lease survived: {:?}",
        kept_guard.loss_reason()
    );
    assert_eq!(
        settle::inspect(&store, &kept).await.map(|i| i.token),
        Some(kept_guard.token())
    );

    // Wake-ups came back: the waiter gets the lock promptly after the release.
    let released_at = Instant::now();
    settle::release(&other, &held).await;
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken after the listener reconnected, not by the 60 s poll")
        .unwrap()
        .expect("granted");
    println!("wake-up after reconnect: {:?}", released_at.elapsed());
    settle::release(&store, &got).await;
    settle::release_guard(&store, kept_guard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sessions_between_calls_are_invisible_to_callers() {
    let server = support::own_server(PostgresServerOptions::default()).await;
    let url = server.url();
    let admin = support::admin_pool(&format!("{url}?application_name=fencelock-admin")).await;
    let store = PgLeaseStore::connect(&url).await.unwrap();
    let name = LockName::new("recovery/idle").unwrap();
    for round in 0..3 {
        let lease = store
            .try_acquire(&name, Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(terminate_others(&admin).await >= 1, "round {round}");
        // Pooled connections are checked before use, so the dead ones are replaced.
        store.release(&lease).await.unwrap();
    }
}
