//! The native queue: FIFO waiters, no leftover keys, the key layout and TTL rounding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock_core::{AcquireOptions, LeaseStore, Locker};
use fencelock_etcd::EtcdLeaseStore;
use fencelock_etcd::etcd_client::LeaseTimeToLiveOptions;
use support::{
    PROMPTLY, queue_len, shared_endpoints, shared_store, unique_name, wait_for_queue_len,
};
use tokio::time::timeout;

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_waiters_are_granted_in_arrival_order() {
    let store = shared_store().await;
    let locker = Locker::new(store.clone());
    let name = unique_name("fifo");
    let opts = AcquireOptions::new().with_ttl(TTL);
    let holder = locker
        .acquire(&name, opts.clone().with_no_wait())
        .await
        .unwrap();
    let order: Arc<Mutex<Vec<(&str, u64)>>> = Arc::default();
    let mut waiters = Vec::new();
    for (i, who) in ["first", "second", "third"].into_iter().enumerate() {
        let (locker, lock, order, opts) =
            (locker.clone(), name.clone(), order.clone(), opts.clone());
        waiters.push(tokio::spawn(async move {
            let guard = locker
                .acquire(&lock, opts.with_timeout(Duration::from_secs(30)))
                .await
                .unwrap();
            order.lock().unwrap().push((who, guard.token().get()));
            guard.release().await.unwrap();
        }));
        // Arrival = the waiter's key is in the queue.
        wait_for_queue_len(&store, &name, i as i64 + 2).await;
    }
    let holder_token = holder.token();
    holder.release().await.unwrap();
    for waiter in waiters {
        timeout(PROMPTLY, waiter)
            .await
            .expect("handed over promptly")
            .unwrap();
    }
    let order = order.lock().unwrap().clone();
    let names: Vec<&str> = order.iter().map(|(who, _)| *who).collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert!(order.windows(2).all(|w| w[0].1 < w[1].1), "{order:?}");
    assert!(order[0].1 > holder_token.get());
    assert_eq!(queue_len(&store, &name).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_attempts_and_timed_out_waiters_leave_no_key() {
    let store = shared_store().await;
    let name = unique_name("no-leftovers");
    let lease = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    for _ in 0..3 {
        assert!(store.try_acquire(&name, TTL).await.unwrap().is_none());
    }
    assert_eq!(
        queue_len(&store, &name).await,
        1,
        "losers removed their keys"
    );
    let err = Locker::new(store.clone())
        .acquire(
            &name,
            AcquireOptions::new()
                .with_ttl(TTL)
                .with_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), fencelock_core::ErrorKind::Timeout);
    assert_eq!(
        queue_len(&store, &name).await,
        1,
        "the timed-out waiter left"
    );
    // A dropped waiter leaves in the background, long before its 60 s lease would run out.
    let dropped = timeout(
        Duration::from_millis(200),
        Locker::new(store.clone()).acquire(&name, AcquireOptions::new().with_ttl(TTL)),
    )
    .await;
    assert!(dropped.is_err());
    wait_for_queue_len(&store, &name, 1).await;
    store.release(&lease).await.unwrap();
    assert_eq!(queue_len(&store, &name).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_key_is_name_slash_lease_hex_and_token_is_its_create_revision() {
    let endpoints = shared_endpoints().await;
    for prefix in ["", "locks/"] {
        let store = EtcdLeaseStore::builder()
            .with_urls(&endpoints)
            .with_key_prefix(prefix)
            .connect()
            .await
            .unwrap();
        let name = unique_name("layout");
        let lease = store.try_acquire(&name, TTL).await.unwrap().unwrap();
        let key = format!("{prefix}{name}/{:x}", lease.holder().as_u128());
        let mut client = store.client().clone();
        let got = client.get(key.clone(), None).await.unwrap();
        let kv = got.kvs().first().unwrap_or_else(|| panic!("{key} exists"));
        assert_eq!(kv.create_revision() as u64, lease.token().get());
        assert_eq!(kv.lease() as u64 as u128, lease.holder().as_u128());
        store.release(&lease).await.unwrap();
        assert_eq!(client.get(key, None).await.unwrap().count(), 0);
        // The bare lease stays alive as a spare for the next acquire, holding no key…
        let id = lease.holder().as_u128() as i64;
        let status = client
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .unwrap();
        assert!(status.ttl() > 0, "the spare is alive");
        assert!(status.keys().is_empty(), "the spare holds no key");
        // …and is revoked, in the background, once the last clone of the store is gone.
        drop(store);
        let started = tokio::time::Instant::now();
        while client.lease_time_to_live(id, None).await.unwrap().ttl() != -1 {
            assert!(
                started.elapsed() < PROMPTLY,
                "spare revoked after the store dropped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_are_whole_seconds_rounded_up() {
    let store = shared_store().await;
    for (asked, granted) in [
        (Duration::from_millis(1), Duration::from_secs(1)),
        (Duration::from_millis(1500), Duration::from_secs(2)),
        (Duration::from_secs(7), Duration::from_secs(7)),
    ] {
        let name = unique_name("ttl");
        let lease = store.try_acquire(&name, asked).await.unwrap().unwrap();
        assert_eq!(lease.ttl(), granted, "asked {asked:?}");
        let renewed = store.renew(&lease, asked).await.unwrap();
        assert_eq!(renewed.ttl(), granted);
        store.release(&lease).await.unwrap();
    }
}
