//! The tasks behind the guards: one driver task serves every guard of a locker, outlives the
//! locker while guards live, ends after them, and survives runtimes that shut down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{EVERY, TTL, opts, setup};
use tokio::time::{Instant, sleep};

/// Tasks alive on the current runtime.
fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (in paused time, up to `within`) for the runtime's tasks to drop to `n`; returns how
/// many are left.
async fn settle_to(n: usize, within: Duration) -> usize {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if tasks() <= n {
            break;
        }
        sleep(Duration::from_millis(1)).await;
    }
    tasks()
}

#[tokio::test(start_paused = true)]
async fn guards_share_one_driver_task_instead_of_one_task_each() {
    let (_store, locker) = setup();
    let held: Vec<_> = futures::future::join_all((0..100).map(|i| {
        let locker = locker.clone();
        async move { locker.acquire(format!("held-{i}"), opts()).await.unwrap() }
    }))
    .await;
    for i in 0..1_000 {
        let guard = locker.acquire(format!("cycle-{i}"), opts()).await.unwrap();
        guard.release().await.unwrap();
    }
    assert_eq!(tasks(), 1, "one driver for 100 held guards and 1000 cycles");
    sleep(EVERY + EVERY / 2).await;
    assert!(held.iter().all(fencelock_core::LockGuard::is_valid));
    assert_eq!(
        settle_to(1, Duration::from_millis(10)).await,
        1,
        "only the driver once the renewals ran (a renewal task per batch ends with its batch)"
    );
}

#[tokio::test(start_paused = true)]
async fn guards_outlive_their_locker_and_its_driver_ends_after_them() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    drop(locker);
    sleep(TTL * 2 + EVERY / 2).await;
    assert!(guard.is_valid(), "{:?}", guard.loss_reason());
    assert_eq!(
        store.renews.load(Ordering::SeqCst),
        6,
        "renewed every TTL/3"
    );
    guard.release().await.unwrap();
    // The driver notices at the released watchdog's next due time and ends.
    assert_eq!(
        settle_to(0, EVERY + Duration::from_millis(10)).await,
        0,
        "nothing left running"
    );
}

#[test]
fn a_locker_outlives_the_runtime_its_renewals_started_on() {
    let (store, locker) = setup();
    for round in 0..2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let guard = locker.acquire("job", opts()).await.unwrap();
            sleep(EVERY * 2 + EVERY / 2).await;
            assert!(guard.is_valid(), "round {round}: {:?}", guard.loss_reason());
            guard.release().await.unwrap();
        });
    }
    assert_eq!(
        store.batches.load(Ordering::SeqCst),
        4,
        "2 renewals per round"
    );
}

#[test]
fn a_guard_keeps_its_watchdog_when_another_runtime_sharing_its_locker_shuts_down() {
    let (store, locker) = setup();
    let runtime = |paused| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(paused)
            .build()
            .unwrap()
    };
    // Runtime `a` takes a lock first (its driver starts there) and holds it.
    let a = runtime(false);
    let held_on_a = a.block_on(locker.acquire("on-a", opts())).unwrap();
    let b = runtime(true);
    let guard = b.block_on(async {
        let guard = locker.acquire("on-b", opts()).await.unwrap();
        sleep(EVERY + EVERY / 2).await;
        assert!(guard.is_valid(), "{:?}", guard.loss_reason());
        assert_eq!(store.renews.load(Ordering::SeqCst), 1, "renewed on b");
        guard
    });
    // `a` shuts down with its guard held: that guard's watchdog is gone, b's is not.
    drop(a);
    assert!(!held_on_a.is_valid(), "a's guard reports its watchdog gone");
    b.block_on(async {
        sleep(TTL * 2 + EVERY / 2).await;
        assert!(guard.is_valid(), "{:?}", guard.loss_reason());
        assert_eq!(
            store.renews.load(Ordering::SeqCst),
            7,
            "renewed on b all along"
        );
        guard.release().await.unwrap();
    });
}
