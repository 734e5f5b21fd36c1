//! Acquiring and waiting over the in-memory store, under paused tokio time: contention is a
//! value or a typed timeout, a waiter wakes on release and leaves nothing behind when dropped,
//! bad options are refused before anything is sent, and a dropped guard releases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::{
    AcquireOptions, ErrorKind, FencingToken, LeaseStore, LockName, Locker, MemoryLeaseStore,
};
use support::{TTL, opts, setup};
use tokio::time::{Instant, sleep, timeout};

#[tokio::test(start_paused = true)]
async fn contention_is_a_value_or_a_typed_timeout() {
    let (_store, locker) = setup();
    let _held = locker.acquire("job", opts()).await.unwrap();
    assert!(locker.try_acquire("job", opts()).await.unwrap().is_none());
    let started = Instant::now();
    let err = locker
        .acquire("job", opts().with_timeout(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_woken_by_release_not_by_polling() {
    let store = MemoryLeaseStore::new();
    let locker = Locker::new(store.clone());
    let holder = locker
        .acquire("job", opts().with_ttl(Duration::from_secs(600)))
        .await
        .unwrap();
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            let opts = AcquireOptions::new()
                .with_ttl(TTL)
                .with_poll_interval(Duration::from_secs(600));
            locker.acquire("job", opts).await
        })
    };
    sleep(Duration::from_secs(10)).await;
    let released_at = Instant::now();
    holder.release().await.unwrap();
    let guard = waiter.await.unwrap().unwrap();
    assert!(
        released_at.elapsed() < Duration::from_millis(5),
        "woken at once"
    );
    assert_eq!(guard.token(), FencingToken::new(2));
}

#[tokio::test(start_paused = true)]
async fn dropping_an_acquire_mid_wait_leaves_no_lease_held() {
    let store = MemoryLeaseStore::new();
    let locker = Locker::new(store.clone());
    let holder = locker.acquire("job", opts()).await.unwrap();
    let waiting = timeout(
        Duration::from_secs(5),
        locker.acquire(
            "job",
            AcquireOptions::new().with_ttl(TTL).with_wait_forever(),
        ),
    )
    .await;
    assert!(waiting.is_err(), "was still waiting");
    holder.release().await.unwrap();
    // Give any background task every chance to (wrongly) acquire.
    sleep(TTL * 2).await;
    let name = LockName::new("job").unwrap();
    assert!(
        store.inspect(&name).await.unwrap().is_none(),
        "nothing held"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_options_are_rejected_before_anything_is_sent() {
    let (store, locker) = setup();
    let cases = [
        opts().with_ttl(Duration::ZERO),
        opts().with_ttl(Duration::from_nanos(1)),
        opts().with_ttl(Duration::MAX),
        opts().with_renew_interval(Duration::ZERO),
        opts().with_renew_interval(TTL / 2),
        opts().with_poll_interval(Duration::ZERO),
    ];
    for o in cases {
        let err = locker.acquire("job", o.clone()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{o:?}: {err}");
    }
    let name = LockName::new("job").unwrap();
    assert!(store.inspect(&name).await.unwrap().is_none());
    // Huge timeouts do not overflow.
    let held = locker.acquire("job", opts()).await.unwrap();
    let waiter = locker.acquire("job", opts().with_timeout(Duration::MAX));
    assert!(timeout(Duration::from_secs(1), waiter).await.is_err());
    held.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropping_a_guard_releases_in_the_background() {
    let store = MemoryLeaseStore::new();
    let locker = Locker::new(store.clone());
    drop(locker.acquire("job", opts()).await.unwrap());
    // The release runs on a spawned task; let it run.
    tokio::task::yield_now().await;
    sleep(Duration::from_millis(1)).await;
    let name = LockName::new("job").unwrap();
    assert!(store.inspect(&name).await.unwrap().is_none());
}
