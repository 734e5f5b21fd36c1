//! Configuration against a real etcd: a config loaded from a file connects with its options in
//! force, and a caller's own client gets the builder's options.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::{ErrorKind, LeaseStore};
use fencelock_etcd::{EtcdConfig, EtcdLeaseStore, etcd_client};
use support::{shared_endpoints, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_from_a_file_connects_with_its_options() {
    let endpoints = shared_endpoints().await;
    let file = serde_json::json!({
        "urls": endpoints,
        "key_prefix": "from-file/",
        "op_timeout_ms": 2000,
        "connect_timeout_ms": 2000,
        "max_ttl_ms": 60_000,
    });
    let config: EtcdConfig = serde_json::from_value(file).unwrap();
    let store = EtcdLeaseStore::from_config(config).await.unwrap();
    assert_eq!(store.key_prefix(), "from-file/");
    assert_eq!(store.ttl_limits().max(), Duration::from_secs(60));

    let name = unique_name("from-file");
    let err = store
        .try_acquire(&name, Duration::from_secs(61))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let lease = store
        .try_acquire(&name, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    let key = format!("from-file/{name}/{:x}", lease.holder().as_u128());
    let found = store
        .client()
        .clone()
        .get(key.as_str(), None)
        .await
        .unwrap();
    assert_eq!(found.count(), 1, "the holder key lives under the prefix");
    store.release(&lease).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_client_gets_the_builders_options() {
    let endpoints = shared_endpoints().await;
    let client = etcd_client::Client::connect(&endpoints, None)
        .await
        .unwrap();
    let store = EtcdLeaseStore::builder()
        .with_key_prefix("own-client/")
        .with_max_ttl(Duration::from_secs(30))
        .from_client(client.clone())
        .unwrap();
    assert_eq!(store.key_prefix(), "own-client/");
    assert_eq!(store.ttl_limits().max(), Duration::from_secs(30));
    let err = EtcdLeaseStore::builder()
        .with_op_timeout(Duration::ZERO)
        .from_client(client)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}
