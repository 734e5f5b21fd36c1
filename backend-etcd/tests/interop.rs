//! fencelock and `etcdctl lock NAME` (Go's `concurrency.Mutex`) exclude each other and queue
//! together, with the default (empty) key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::LeaseStore;
use fencelock_etcd::EtcdLeaseStore;
use support::{EtcdctlLock, PROMPTLY, queue_len, shared_endpoints, unique_name};
use tokio::time::timeout;

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_holder_excludes_us_until_it_exits() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("etcdctl-holds");
    let mut etcdctl = EtcdctlLock::spawn(&endpoints, &name);
    let key = timeout(PROMPTLY, etcdctl.held_key())
        .await
        .expect("etcdctl takes the free lock");
    assert!(key.starts_with(&format!("{name}/")), "etcdctl holds {key}");

    assert!(
        store.try_acquire(&name, TTL).await.unwrap().is_none(),
        "etcdctl holds {key}"
    );
    assert_eq!(
        queue_len(&store, &name).await,
        1,
        "our losing key was removed"
    );
    let theirs = store
        .inspect(&name)
        .await
        .unwrap()
        .expect("etcdctl's key is the owner");
    let lease_hex = key.rsplit('/').next().unwrap();
    assert_eq!(
        theirs.holder.map(|h| format!("{:x}", h.as_u128())),
        Some(lease_hex.to_owned()),
        "inspect names etcdctl's lease"
    );

    etcdctl.unlock_and_wait().await;
    let ours = store
        .try_acquire(&name, TTL)
        .await
        .unwrap()
        .expect("free once etcdctl unlocked");
    assert!(ours.token() > theirs.token);
    store.release(&ours).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_holder_blocks_etcdctl_until_we_release() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("we-hold");
    let ours = store.try_acquire(&name, TTL).await.unwrap().unwrap();

    let mut etcdctl = EtcdctlLock::spawn(&endpoints, &name);
    support::wait_for_queue_len(&store, &name, 2).await;
    assert!(
        timeout(Duration::from_millis(500), etcdctl.held_key())
            .await
            .is_err(),
        "etcdctl must wait while we hold"
    );
    assert_eq!(
        store.inspect(&name).await.unwrap().unwrap().token,
        ours.token(),
        "we are still the owner, etcdctl queues behind us"
    );

    store.release(&ours).await.unwrap();
    let key = timeout(PROMPTLY, etcdctl.held_key())
        .await
        .expect("etcdctl gets the lock as soon as we release");
    assert!(key.starts_with(&format!("{name}/")));
    let theirs = store.inspect(&name).await.unwrap().unwrap();
    assert!(theirs.token > ours.token(), "etcdctl's key is newer");
    assert!(store.try_acquire(&name, TTL).await.unwrap().is_none());

    etcdctl.unlock_and_wait().await;
    assert!(store.inspect(&name).await.unwrap().is_none());
}

/// The owner label is the lock key's value: `etcdctl get` shows it, as it shows an `etcdctl
/// elect -l` campaigner's, and `list` finds the holder with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_get_shows_our_owner_label() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("labelled");
    let label = fencelock_core::OwnerLabel::new("web-3:4711 nightly").unwrap();
    let lease = store
        .try_acquire_as(&name, TTL, Some(&label))
        .await
        .unwrap()
        .unwrap();
    let out = tokio::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["get", "--prefix", &format!("{name}/")])
        .output()
        .await
        .expect("run etcdctl (apt-get install etcd-client)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "etcdctl get prints the key and its value: {text}"
    );
    assert!(lines[0].starts_with(&format!("{name}/")), "{text}");
    assert_eq!(lines[1], label.as_str(), "{text}");
    let listed = store
        .list(&fencelock_core::ListQuery::prefix(name.as_str()).unwrap())
        .await
        .unwrap();
    assert_eq!(listed.locks.len(), 1, "{listed:?}");
    assert_eq!(listed.locks[0].label.as_ref(), Some(&label));
    store.release(&lease).await.unwrap();
}
