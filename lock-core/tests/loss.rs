//! Loss signals and guarded runs, under paused tokio time: the lost signal and the cancellation
//! token fire at once, guarded work is cancelled with the token in the error, and compensation
//! hooks run on loss but not on release.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use fencelock_core::{Error, ErrorKind, FencingToken, LeaseStore, LockName, LossReason};
use support::{EVERY, RENEW_LOST, TTL, opts, setup};
use tokio::time::{Instant, sleep};

#[tokio::test(start_paused = true)]
async fn failing_store_fires_lost_within_one_renew_interval() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    store.renew_mode.store(RENEW_LOST, Ordering::SeqCst);
    let started = Instant::now();
    let reason = guard.lost().await;
    assert_eq!(reason, LossReason::NotHeld);
    // A batched renewal goes out up to 2 ms early, never late.
    assert!(
        started.elapsed() <= EVERY + Duration::from_millis(2),
        "lost after {:?}",
        started.elapsed()
    );
    assert!(!guard.is_valid());
    assert!(guard.cancellation_token().is_cancelled());
    assert_eq!(
        guard.release().await.unwrap_err().kind(),
        ErrorKind::LeaseLost
    );
}

#[tokio::test(start_paused = true)]
async fn the_cancellation_token_fires_with_the_deadline_not_after_it() {
    let (_store, locker) = setup();
    let guard = locker
        .acquire("job", opts().without_renewal())
        .await
        .unwrap();
    let token = guard.cancellation_token();
    assert_eq!(guard.lost().await, LossReason::DeadlineReached);
    assert!(token.is_cancelled(), "fired by the time lost() returned");
}

#[tokio::test(start_paused = true)]
async fn guarded_run_cancels_its_future_on_loss() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    let token = guard.token();
    store.renew_mode.store(RENEW_LOST, Ordering::SeqCst);
    let finished = Arc::new(AtomicBool::new(false));
    let work = {
        let finished = finished.clone();
        async move {
            sleep(TTL * 100).await;
            finished.store(true, Ordering::SeqCst);
        }
    };
    let err = guard.run(work).await.unwrap_err();
    match err {
        Error::LostDuringWork {
            token: t, reason, ..
        } => {
            assert_eq!(t, token);
            assert_eq!(reason, LossReason::NotHeld);
        }
        other => panic!("expected LostDuringWork, got {other}"),
    }
    assert!(!finished.load(Ordering::SeqCst), "the work never completed");
}

#[tokio::test(start_paused = true)]
async fn with_lock_runs_work_with_the_token_and_releases() {
    let (store, locker) = setup();
    let seen = locker
        .with_lock("job", opts(), |token| async move { token })
        .await
        .unwrap();
    assert_eq!(seen, FencingToken::new(1));
    let name = LockName::new("job").unwrap();
    assert!(
        store.inspect(&name).await.unwrap().is_none(),
        "released after the work"
    );
}

#[tokio::test(start_paused = true)]
async fn compensation_hook_runs_on_loss_but_not_on_release() {
    let (store, locker) = setup();
    let fired = Arc::new(AtomicU32::new(0));
    let released = locker.acquire("a", opts()).await.unwrap();
    let f = fired.clone();
    released.on_lost(move |_| {
        f.fetch_add(1, Ordering::SeqCst);
    });
    released.release().await.unwrap();
    let lost = locker.acquire("b", opts()).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    lost.on_lost(move |reason| {
        let _ = tx.send(reason);
    });
    store.renew_mode.store(RENEW_LOST, Ordering::SeqCst);
    assert_eq!(rx.await.unwrap(), LossReason::NotHeld);
    assert_eq!(
        fired.load(Ordering::SeqCst),
        0,
        "a released guard's hook never runs"
    );
}
