//! The owner compare (`EtcdLeaseStore::owner_compare`): a txn guarded by it applies for the
//! holder and never after the lease was taken over, released, reused or expired. And the
//! fence with real lock tokens (the tier uses made-up ones).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::{Error, ErrorKind, Fence, FencedValue, Lease, LeaseStore};
use fencelock_etcd::EtcdLeaseStore;
use fencelock_etcd::etcd_client::{Txn, TxnOp};
use support::{PROMPTLY, shared_store, unique_name};

const LONG: Duration = Duration::from_secs(60);

/// Puts `value` at `key` in a txn guarded by `lease`'s owner compare; whether it applied.
async fn guarded_put(store: &EtcdLeaseStore, lease: &Lease, key: &str, value: &str) -> bool {
    let txn = Txn::new()
        .when([store.owner_compare(lease).unwrap()])
        .and_then([TxnOp::put(key, value, None)]);
    store
        .client()
        .kv_client()
        .txn(txn)
        .await
        .unwrap()
        .succeeded()
}

async fn get(store: &EtcdLeaseStore, key: &str) -> Option<String> {
    let resp = store.client().kv_client().get(key, None).await.unwrap();
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_txn_guarded_by_the_owner_compare_applies_only_for_the_holder() {
    let store = shared_store().await;
    let name = unique_name("owner");
    let data = format!("{name}/data");

    let first = store.try_acquire(&name, LONG).await.unwrap().unwrap();
    assert!(
        guarded_put(&store, &first, &data, "first").await,
        "the holder writes"
    );

    // Taken over: the old holder's txn does not apply, the new holder's does.
    assert_eq!(
        store.force_release(&name).await.unwrap(),
        Some(first.token())
    );
    let second = store.try_acquire(&name, LONG).await.unwrap().unwrap();
    assert!(second.token() > first.token());
    assert!(
        !guarded_put(&store, &first, &data, "stale").await,
        "superseded"
    );
    assert!(guarded_put(&store, &second, &data, "second").await);
    assert_eq!(get(&store, &data).await.as_deref(), Some("second"));

    // Released, and the lock granted again (possibly on the same, reused etcd lease, so on
    // the same key): only the new grant's revision matches.
    store.release(&second).await.unwrap();
    assert!(!guarded_put(&store, &second, &data, "released").await);
    let third = store.try_acquire(&name, LONG).await.unwrap().unwrap();
    assert!(!guarded_put(&store, &second, &data, "reused").await);
    assert!(guarded_put(&store, &third, &data, "third").await);
    assert_eq!(get(&store, &data).await.as_deref(), Some("third"));
    store.release(&third).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_fails_the_owner_compare() {
    let store = shared_store().await;
    let name = unique_name("owner-expiry");
    let data = format!("{name}/data");
    // etcd grants at least 1 s; nothing renews this lease.
    let lease = store
        .try_acquire(&name, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert!(guarded_put(&store, &lease, &data, "in time").await);
    // Expiry is a state of the server's lease, not an event we can await: poll for it.
    let deadline = tokio::time::Instant::now() + lease.ttl() + PROMPTLY;
    while store.inspect(&name).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!guarded_put(&store, &lease, &data, "late").await);
    assert_eq!(get(&store, &data).await.as_deref(), Some("in time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_no_etcd_store_granted_is_invalid_input() {
    let store = shared_store().await;
    let ghost = fencelock_core::backend::granted_lease(
        unique_name("ghost"),
        fencelock_core::FencingToken::new(u64::MAX),
        fencelock_core::HolderId::random(),
        LONG,
        tokio::time::Instant::now(),
    );
    let err = store.owner_compare(&ghost).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// The fence with the tokens of real grants: the superseded holder's write is rejected,
/// naming both tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_holder_cannot_write_through_the_fence() {
    let store = shared_store().await;
    let fence = store.fence();
    let name = unique_name("fenced-lock");
    let resource = format!("{name}/data");
    let old = store.try_acquire(&name, LONG).await.unwrap().unwrap();
    fence.write(&resource, old.token(), b"old").await.unwrap();
    store.force_release(&name).await.unwrap();
    let new = store.try_acquire(&name, LONG).await.unwrap().unwrap();
    fence.write(&resource, new.token(), b"new").await.unwrap();
    match fence.write(&resource, old.token(), b"late").await {
        Err(Error::StaleToken {
            presented,
            high_water,
            ..
        }) => assert_eq!((presented, high_water), (old.token(), new.token())),
        other => panic!("expected StaleToken, got {other:?}"),
    }
    assert_eq!(
        fence.read(&resource).await.unwrap(),
        Some(FencedValue::new(b"new".to_vec(), new.token()))
    );
    // The value is a plain etcd key; its mark is the companion key.
    assert_eq!(get(&store, &resource).await.as_deref(), Some("new"));
    store.release(&new).await.unwrap();
}
