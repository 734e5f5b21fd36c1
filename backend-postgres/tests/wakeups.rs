//! Waiters are woken by NOTIFY, not by polling: with a 60 s poll interval and a 60 s holder TTL,
//! a waiter gets the lock within milliseconds of the release.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::backend::WaitPolicy;
use fencelock_core::{LeaseStore, LockName};
use fencelock_postgres::PgLeaseStore;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(60);

/// Holds `name` with `holder`, starts a waiter on `waiter`, releases, and returns how long the
/// waiter took to get the lock after the release returned.
async fn handoff(holder: &PgLeaseStore, waiter: &PgLeaseStore, name: &LockName) -> Duration {
    let lease = holder.try_acquire(name, LONG).await.unwrap().unwrap();
    let task = {
        let (waiter, name) = (waiter.clone(), name.clone());
        tokio::spawn(async move {
            let policy = WaitPolicy {
                until: Some(Instant::now() + Duration::from_secs(30)),
                poll_interval: LONG,
            };
            let lease = waiter.acquire_waiting(&name, LONG, None, policy).await;
            (lease, Instant::now())
        })
    };
    // The waiter has subscribed once the listener is up and it has found the name held.
    let started = Instant::now();
    while !waiter.is_listening() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "listener never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !task.is_finished(),
        "the waiter must be blocked while the name is held"
    );
    let released_at = Instant::now();
    holder.release(&lease).await.unwrap();
    let (got, got_at) = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("woken by NOTIFY, not by the 60 s poll interval or TTL")
        .unwrap();
    let got = got.unwrap().expect("the waiter gets the lock");
    assert!(got.token() > lease.token());
    waiter.release(&got).await.unwrap();
    got_at.saturating_duration_since(released_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_wakes_on_notify_within_milliseconds() {
    let url = support::shared_url().await;
    let holder = support::store_on(&url, "wakeup_leases").await;
    let waiter = support::store_on(&url, "wakeup_leases").await;
    let name = LockName::new(support::unique("wake/handoff")).unwrap();
    let mut waits = Vec::new();
    for _ in 0..5 {
        waits.push(handoff(&holder, &waiter, &name).await);
    }
    waits.sort();
    println!("release → waiter holds the lock: {waits:?}");
    // Typically 1–3 ms on loopback; the bound leaves room for a loaded CI machine while
    // staying three orders of magnitude below the 60 s poll interval.
    assert!(
        waits[2] < Duration::from_millis(50),
        "median wake-up {:?}",
        waits[2]
    );
    assert!(
        waits[4] < Duration::from_millis(500),
        "slowest wake-up {:?}",
        waits[4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_push_wakeups_waiters_poll() {
    let url = support::shared_url().await;
    let store = PgLeaseStore::builder()
        .with_url(&url)
        .with_schema("fencelock_test")
        .with_table("wakeup_leases")
        .with_push_wakeups(false)
        .connect()
        .await
        .unwrap();
    let name = LockName::new(support::unique("wake/poll")).unwrap();
    assert!(store.watch_released(&name).await.unwrap().is_none());
    assert!(!store.is_listening());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_release_wakes_waiters_too() {
    let url = support::shared_url().await;
    let store = support::store_on(&url, "wakeup_leases").await;
    let name = LockName::new(support::unique("wake/force")).unwrap();
    let mut watch = store
        .watch_released(&name)
        .await
        .unwrap()
        .expect("push wake-ups");
    let lease = store.try_acquire(&name, LONG).await.unwrap().unwrap();
    let other = LockName::new(format!("{name}/other")).unwrap();
    let decoy = store.try_acquire(&other, LONG).await.unwrap().unwrap();
    store.release(&decoy).await.unwrap();
    // A release of another name does not wake this watcher.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), watch.notified())
            .await
            .is_err()
    );
    assert_eq!(
        store.force_release(&name).await.unwrap(),
        Some(lease.token())
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), watch.notified())
            .await
            .expect("force_release notifies")
    );
}
