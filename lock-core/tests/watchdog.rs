//! The watchdog over a store whose renewals fail on demand, under paused tokio time: it renews
//! every TTL/3, retries transient errors only while the lease is locally valid, and a panic or
//! no renewal at all ends in a loss, never in silence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use fencelock_core::{ErrorKind, LossReason};
use support::{EVERY, RENEW_OK, RENEW_PANIC, RENEW_UNAVAILABLE, TTL, opts, setup};
use tokio::time::{Instant, sleep, timeout};

#[tokio::test(start_paused = true)]
async fn watchdog_renews_across_many_ttls() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    sleep(TTL * 10).await;
    assert!(guard.is_valid(), "{:?}", guard.loss_reason());
    let renews = store.renews.load(Ordering::SeqCst);
    assert!(
        (29..=31).contains(&renews),
        "renewed every TTL/3: {renews} times in 10 TTLs"
    );
    assert!(guard.deadline() > Instant::now());
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_only_until_the_local_deadline() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    let deadline = guard.deadline();
    store.renew_mode.store(RENEW_UNAVAILABLE, Ordering::SeqCst);
    let reason = guard.lost().await;
    assert_eq!(reason, LossReason::DeadlineReached);
    assert!(Instant::now() >= deadline, "not before the deadline");
    assert!(
        Instant::now() < deadline + Duration::from_millis(10),
        "at once after it"
    );
    assert!(store.renews.load(Ordering::SeqCst) > 3, "retried");
}

#[tokio::test(start_paused = true)]
async fn a_transient_error_followed_by_recovery_keeps_the_lease() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    store.renew_mode.store(RENEW_UNAVAILABLE, Ordering::SeqCst);
    sleep(EVERY + Duration::from_millis(500)).await;
    store.renew_mode.store(RENEW_OK, Ordering::SeqCst);
    sleep(TTL * 3).await;
    assert!(guard.is_valid(), "{:?}", guard.loss_reason());
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_watchdog_counts_as_loss() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    store.renew_mode.store(RENEW_PANIC, Ordering::SeqCst);
    let reason = timeout(EVERY * 2, guard.lost()).await.expect("fired");
    assert!(
        matches!(&reason, LossReason::WatchdogFailed { message } if message.contains("renew exploded")),
        "{reason:?}"
    );
    assert!(!guard.is_valid());
}

#[tokio::test(start_paused = true)]
async fn without_renewal_the_guard_expires_at_its_deadline() {
    let (store, locker) = setup();
    let guard = locker
        .acquire("job", opts().without_renewal())
        .await
        .unwrap();
    let deadline = guard.deadline();
    assert_eq!(guard.lost().await, LossReason::DeadlineReached);
    assert!(Instant::now() >= deadline);
    assert_eq!(store.renews.load(Ordering::SeqCst), 0);
    assert_eq!(guard.check().unwrap_err().kind(), ErrorKind::LeaseLost);
}
