//! Renewals due together go to the store as one `renew_many` batch, under paused tokio time:
//! a loss in a batch hits only its guard, a wrong answer hits every guard in it, and batching
//! can be switched off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;

use fencelock_core::{LeaseStore, LockName, LossReason};
use support::{EVERY, TTL, opts, setup};
use tokio::time::{sleep, timeout};

#[tokio::test(start_paused = true)]
async fn renewals_due_together_go_to_the_store_as_one_batch() {
    let (store, locker) = setup();
    let mut guards = Vec::new();
    for i in 0..50 {
        guards.push(locker.acquire(format!("job-{i}"), opts()).await.unwrap());
    }
    sleep(EVERY * 3 + EVERY / 2).await;
    for guard in &guards {
        assert!(guard.is_valid(), "{:?}", guard.loss_reason());
    }
    assert_eq!(store.batched.load(Ordering::SeqCst), 150, "3 renewals each");
    assert_eq!(store.renews.load(Ordering::SeqCst), 150);
    assert_eq!(
        store.batches.load(Ordering::SeqCst),
        3,
        "one batch per round"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_lost_in_a_batch_is_reported_for_that_guard_alone() {
    let (store, locker) = setup();
    let kept = locker.acquire("kept", opts()).await.unwrap();
    let broken = locker.acquire("broken", opts()).await.unwrap();
    store
        .force_release(&LockName::new("broken").unwrap())
        .await
        .unwrap();
    assert_eq!(
        timeout(EVERY * 2, broken.lost()).await.expect("fired"),
        LossReason::NotHeld
    );
    sleep(TTL * 2).await;
    assert!(kept.is_valid(), "{:?}", kept.loss_reason());
    // The first batch carried both leases, every later one `kept` alone.
    assert_eq!(
        store.batched.load(Ordering::SeqCst),
        store.batches.load(Ordering::SeqCst) + 1,
        "renewed together once"
    );
    kept.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_batch_answered_wrongly_counts_as_loss_for_every_guard_in_it() {
    let (store, locker) = setup();
    let a = locker.acquire("a", opts()).await.unwrap();
    let b = locker.acquire("b", opts()).await.unwrap();
    store.short_answers.store(true, Ordering::SeqCst);
    for guard in [&a, &b] {
        let reason = timeout(EVERY * 2, guard.lost()).await.expect("fired");
        assert!(
            matches!(&reason, LossReason::WatchdogFailed { message } if message.contains("1 results for 2 leases")),
            "{reason:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_batching_each_watchdog_renews_alone() {
    let (store, locker) = setup();
    let locker = locker.with_renewal_batching(false);
    assert!(!locker.renewal_batching());
    let a = locker.acquire("a", opts()).await.unwrap();
    let b = locker.acquire("b", opts()).await.unwrap();
    sleep(EVERY * 2 + EVERY / 2).await;
    assert!(a.is_valid() && b.is_valid());
    assert_eq!(store.renews.load(Ordering::SeqCst), 4);
    assert_eq!(store.batches.load(Ordering::SeqCst), 0);
}
