//! Waiters are woken by NOTIFY, not by polling: with a 60 s poll interval and a 60 s holder TTL,
//! a waiter gets the lock (or the permit) within milliseconds of the release; a permit's
//! release wakes permit waiters only, a lock's lock waiters only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::backend::WaitPolicy;
use fencelock_core::{LeaseStore, LockName, PermitLimit};
use fencelock_postgres::PgLeaseStore;
use futures::FutureExt;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(60);

/// What a hand-off is of: the lock of a name, or the only permit of a semaphore of 1.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Lock,
    Permit,
}

fn one() -> PermitLimit {
    PermitLimit::new(1).unwrap()
}

/// Holds `name` with `holder`, starts a waiter on `waiter`, releases, and returns how long the
/// waiter took to get the lock (or the permit) after the release returned.
async fn handoff(
    holder: &PgLeaseStore,
    waiter: &PgLeaseStore,
    name: &LockName,
    kind: Kind,
) -> Duration {
    let lease = match kind {
        Kind::Lock => holder.try_acquire(name, LONG).await,
        Kind::Permit => holder.try_acquire_permit(name, one(), LONG, None).await,
    };
    let lease = lease.unwrap().unwrap();
    let task = {
        let (waiter, name) = (waiter.clone(), name.clone());
        tokio::spawn(async move {
            let policy = WaitPolicy {
                until: Some(Instant::now() + Duration::from_secs(30)),
                poll_interval: LONG,
            };
            let lease = match kind {
                Kind::Lock => waiter.acquire_waiting(&name, LONG, None, policy).await,
                Kind::Permit => {
                    waiter
                        .acquire_permit_waiting(&name, one(), LONG, None, policy)
                        .await
                }
            };
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

/// Five hand-offs of `kind` between two stores: the waiter holds within milliseconds.
async fn hands_off_within_milliseconds(kind: Kind) {
    let url = support::shared_url().await;
    let holder = support::store_on(&url, "wakeup_leases").await;
    let waiter = support::store_on(&url, "wakeup_leases").await;
    let name = LockName::new(support::unique("wake/handoff")).unwrap();
    let mut waits = Vec::new();
    for _ in 0..5 {
        waits.push(handoff(&holder, &waiter, &name, kind).await);
    }
    waits.sort();
    println!("{kind:?} release → waiter holds: {waits:?}");
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
async fn waiter_wakes_on_notify_within_milliseconds() {
    hands_off_within_milliseconds(Kind::Lock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_waiter_wakes_on_notify_within_milliseconds() {
    hands_off_within_milliseconds(Kind::Permit).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_and_lock_releases_wake_only_their_own_waiters() {
    let url = support::shared_url().await;
    let store = support::store_on(&url, "wakeup_leases").await;
    let name = LockName::new(support::unique("wake/both")).unwrap();
    let mut lock_watch = store
        .watch_released(&name)
        .await
        .unwrap()
        .expect("push wake-ups");
    let mut permit_watch = store
        .watch_permits(&name)
        .await
        .unwrap()
        .expect("push wake-ups for permits");
    let lock = store.try_acquire(&name, LONG).await.unwrap().unwrap();
    let limit = PermitLimit::new(2).unwrap();
    let permit = store
        .try_acquire_permit(&name, limit, LONG, None)
        .await
        .unwrap()
        .expect("the semaphore is free although the lock of its name is held");
    store.release(&permit).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), permit_watch.notified())
            .await
            .expect("a permit's release wakes a permit waiter")
    );
    // The listener hands each notification to one hub as it reads it: by the time the permit
    // waiter was woken, a wake-up of the lock waiter from the same release would be there.
    assert_eq!(
        lock_watch.notified().now_or_never(),
        None,
        "a permit's release woke a waiter for the lock of the same name"
    );
    store.release(&lock).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), lock_watch.notified())
            .await
            .expect("a lock's release wakes a lock waiter")
    );
    assert_eq!(
        permit_watch.notified().now_or_never(),
        None,
        "a lock's release woke a permit waiter"
    );
}
