//! Spare leases: a released grant's etcd lease is reused by the next acquire while it is fresh,
//! with a new, greater token, and without ever outliving what etcd confirmed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::{ErrorKind, LeaseStore, LossReason};
use support::{shared_store, unique_name};
use tokio::time::{Instant, sleep};

const TTL: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_then_acquire_reuses_the_lease_with_a_greater_token() {
    let store = shared_store().await;
    let name = unique_name("spare-reuse");
    let first = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    store.release(&first).await.unwrap();
    let second = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    assert_eq!(
        second.holder(),
        first.holder(),
        "the spare lease was reused"
    );
    assert!(second.token() > first.token(), "{second:?} after {first:?}");
    // Another name reuses it too, after this release.
    store.release(&second).await.unwrap();
    let other = store
        .try_acquire(&unique_name("spare-reuse-other"), TTL)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.holder(), first.holder());
    assert!(other.token() > second.token());
    store.release(&other).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_grant_of_a_reused_lease_is_lost_and_leaves_the_new_holder() {
    let store = shared_store().await;
    let name = unique_name("spare-stale");
    let first = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    store.release(&first).await.unwrap();
    let second = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    assert_eq!(second.holder(), first.holder());

    let renewed = store.renew(&first, TTL).await.unwrap_err();
    assert_eq!(renewed.kind(), ErrorKind::LeaseLost, "{renewed}");
    assert!(
        matches!(
            renewed,
            fencelock_core::Error::LeaseLost {
                reason: LossReason::Superseded { by },
                ..
            } if by == second.token()
        ),
        "{renewed:?}"
    );
    let released = store.release(&first).await.unwrap_err();
    assert_eq!(released.kind(), ErrorKind::LeaseLost, "{released}");
    let batch = store
        .renew_many(&[first.clone(), second.clone()], TTL)
        .await;
    assert_eq!(batch[0].as_ref().unwrap_err().kind(), ErrorKind::LeaseLost);
    assert!(batch[1].is_ok(), "{:?}", batch[1]);

    let info = store.inspect(&name).await.unwrap().expect("still held");
    assert_eq!(info.token, second.token());
    assert!(store.try_acquire(&name, TTL).await.unwrap().is_none());
    store.renew(&second, TTL).await.unwrap();
    store.release(&second).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_deadline_counts_from_the_spares_last_keepalive_and_old_spares_are_not_reused() {
    let store = shared_store().await;
    let name = unique_name("spare-age");
    let ttl = Duration::from_secs(2);
    let before_first = Instant::now();
    let first = store.try_acquire(&name, ttl).await.unwrap().unwrap();
    store.release(&first).await.unwrap();
    let second = store.try_acquire(&name, ttl).await.unwrap().unwrap();
    assert_eq!(second.holder(), first.holder(), "a fresh spare is reused");
    // The spare was last confirmed by the first grant: the reused grant may not outlast it.
    assert!(second.deadline() <= before_first + second.ttl());
    assert_eq!(second.deadline(), first.deadline());
    store.release(&second).await.unwrap();

    // A spare older than a tenth of its TTL is not handed out.
    let released_at = Instant::now();
    sleep(second.ttl() / 10 + Duration::from_millis(150)).await;
    let third = store.try_acquire(&name, ttl).await.unwrap().unwrap();
    assert_ne!(third.holder(), first.holder(), "a stale spare was reused");
    assert!(third.deadline() >= released_at + third.ttl() / 2);
    store.release(&third).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_revoked_behind_our_back_falls_back_to_a_new_grant() {
    let store = shared_store().await;
    let name = unique_name("spare-revoked");
    let first = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    store.release(&first).await.unwrap();
    let mut client = store.client().clone();
    client
        .lease_revoke(first.holder().as_u128() as i64)
        .await
        .unwrap();
    let second = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    assert_ne!(second.holder(), first.holder());
    assert!(second.token() > first.token());
    store.renew(&second, TTL).await.unwrap();
    store.release(&second).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_costs_the_contender_no_write_and_keeps_its_lease() {
    use etcd_client::WatchOptions;
    let holder = shared_store().await;
    let contender = shared_store().await;
    let name = unique_name("claim-held");
    let held = holder.try_acquire(&name, TTL).await.unwrap().unwrap();
    let mut client = contender.client().clone();
    let before = client.get("fl-etcd-test/none", None).await.unwrap();
    let before = before.header().unwrap().revision();
    assert!(contender.try_acquire(&name, TTL).await.unwrap().is_none());
    assert!(contender.try_acquire(&name, TTL).await.unwrap().is_none());
    // Replay every change under the name since `before`: the first one must be a marker put
    // after the attempts, so the attempts changed nothing (no queued key, put or deleted).
    let prefix = format!("{name}/");
    let marker = format!("{prefix}marker/x");
    client.put(marker.as_str(), "", None).await.unwrap();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(before + 1);
    let mut events = client.watch(prefix.as_str(), Some(options)).await.unwrap();
    let first = loop {
        let message = events.message().await.unwrap().expect("watch open");
        if let Some(event) = message.events().first() {
            break event.kv().unwrap().key_str().unwrap().to_owned();
        }
    };
    assert_eq!(first, marker, "the failed attempts wrote nothing");
    client.delete(marker.as_str(), None).await.unwrap();
    assert_eq!(
        support::queue_len(&contender, &name).await,
        1,
        "nobody queued"
    );
    // The lease the first attempt was granted serves the next acquire.
    let taken = contender
        .try_acquire(&unique_name("claim-held-other"), TTL)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(taken.holder(), held.holder());
    contender.release(&taken).await.unwrap();
    holder.release(&held).await.unwrap();
}

/// Keys of a nested name (`NAME/sub/…`) share `NAME/`'s range but do not hold `NAME`: the claim
/// sees them and falls back to the exact queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_nested_name_does_not_hold_its_parent() {
    let store = shared_store().await;
    let parent = unique_name("claim-nested");
    let child = fencelock_core::LockName::new(format!("{parent}/sub")).unwrap();
    let nested = store.try_acquire(&child, TTL).await.unwrap().unwrap();
    let taken = store.try_acquire(&parent, TTL).await.unwrap().unwrap();
    assert!(taken.token() > nested.token());
    assert!(store.try_acquire(&parent, TTL).await.unwrap().is_none());
    assert!(store.try_acquire(&child, TTL).await.unwrap().is_none());
    store.release(&taken).await.unwrap();
    store.release(&nested).await.unwrap();
}
