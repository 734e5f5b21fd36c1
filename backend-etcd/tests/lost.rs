//! A keepalive that fails fires the guard's lost signal: never silence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::EtcdCluster;
use fencelock_conformance::settle;
use fencelock_core::{AcquireOptions, Locker, LossReason};
use fencelock_etcd::EtcdLeaseStore;
use support::{PROMPTLY, shared_store, unique_name};
use tokio::time::{Instant, timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_revoked_behind_our_back_fires_lost() {
    let store = shared_store().await;
    let name = unique_name("revoked");
    let guard = Locker::new(store.clone())
        .acquire(
            &name,
            AcquireOptions::new()
                .with_ttl(Duration::from_secs(3))
                .with_no_wait(),
        )
        .await
        .unwrap();
    let cancel = guard.cancellation_token();
    let mut client = store.client().clone();
    client
        .lease_revoke(guard.lease().holder().as_u128() as i64)
        .await
        .unwrap();
    let reason = timeout(PROMPTLY, guard.lost()).await.expect("lost fired");
    assert_eq!(reason, LossReason::NotHeld);
    assert!(cancel.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_cluster_fires_lost_by_the_deadline() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let store = EtcdLeaseStore::builder()
        .with_urls(cluster.endpoints())
        .with_op_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let name = unique_name("dead-cluster");
    let ttl = Duration::from_secs(2);
    // 500 ms per request is tight on a loaded machine: the grant is settled.
    let locker = Locker::new(store.clone());
    let guard = settle::acquire(&store, &name, None, || {
        locker.try_acquire(&name, AcquireOptions::new().with_ttl(ttl).with_no_wait())
    })
    .await
    .expect("granted");
    let deadline = guard.deadline();
    cluster.member(0).unwrap().kill().unwrap();
    let killed_at = Instant::now();
    let reason = timeout(ttl + PROMPTLY, guard.lost())
        .await
        .expect("lost fired");
    assert_eq!(reason, LossReason::DeadlineReached);
    assert!(!guard.is_valid());
    // Fired at the local deadline, not later (the deadline only moved forward by renewals).
    assert!(
        killed_at.elapsed() <= ttl + Duration::from_millis(500),
        "fired {:?} after the kill (first deadline {:?} after)",
        killed_at.elapsed(),
        deadline.saturating_duration_since(killed_at)
    );
}
