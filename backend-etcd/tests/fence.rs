//! Fenced writes into etcd: one txn compares the stored token and puts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fencelock_core::{Error, ErrorKind, FencingToken, LeaseStore};
use std::time::Duration;
use support::{shared_store, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tokens_are_rejected_equal_and_newer_admitted() {
    let store = shared_store().await;
    let resource = format!("{}/resource", unique_name("fence"));
    let t = FencingToken::new;
    store
        .fenced_put(resource.clone(), "a", t(10))
        .await
        .unwrap();
    store
        .fenced_put(resource.clone(), "b", t(10))
        .await
        .unwrap();
    match store.fenced_put(resource.clone(), "stale", t(9)).await {
        Err(Error::StaleToken {
            resource: r,
            presented,
            high_water,
        }) => {
            assert_eq!(
                (r.as_str(), presented, high_water),
                (resource.as_str(), t(9), t(10))
            );
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    assert_eq!(
        store.fenced_get(resource.clone()).await.unwrap(),
        Some((b"b".to_vec(), t(10)))
    );
    store
        .fenced_put(resource.clone(), "c", t(11))
        .await
        .unwrap();
    assert_eq!(
        store
            .fenced_put(resource.clone(), "x", t(10))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::StaleToken
    );
    assert_eq!(
        store
            .fenced_put(resource.clone(), "x", t(u64::MAX))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        store.fenced_get(resource).await.unwrap(),
        Some((b"c".to_vec(), t(11)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_holder_cannot_write() {
    let store = shared_store().await;
    let name = unique_name("fenced-lock");
    let resource = format!("{name}/data");
    let old = store
        .try_acquire(&name, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store
        .fenced_put(resource.clone(), "old", old.token())
        .await
        .unwrap();
    assert_eq!(store.force_release(&name).await.unwrap(), Some(old.token()));
    let new = store
        .try_acquire(&name, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store
        .fenced_put(resource.clone(), "new", new.token())
        .await
        .unwrap();
    let err = store
        .fenced_put(resource.clone(), "late", old.token())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("token {}", old.token()))
            && err.to_string().contains(&new.token().to_string()),
        "{err}"
    );
    store.release(&new).await.unwrap();
}
