//! Takes a lock on etcd, writes with its fencing token, and shows a superseded holder's late
//! write being rejected — by the fence (a token stored beside the data) and by the owner
//! compare in a txn of its own (the lock key itself).
//!
//! ```text
//! FENCELOCK_ETCD_ENDPOINTS=http://127.0.0.1:2379 cargo run -p fencelock-etcd --example etcd_fenced_put
//! ```

use std::time::Duration;

use fencelock_core::{AcquireOptions, Error, Fence, LeaseStore, Locker};
use fencelock_etcd::EtcdLeaseStore;
use fencelock_etcd::etcd_client::{Txn, TxnOp};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = std::env::var("FENCELOCK_ETCD_ENDPOINTS")
        .unwrap_or_else(|_| "http://127.0.0.1:2379".to_owned());
    let store = EtcdLeaseStore::connect(endpoints.split(',')).await?;
    let fence = store.fence();
    let locker = Locker::new(store.clone());
    let options = AcquireOptions::new()
        .with_ttl(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(30));

    let first = locker.acquire("examples/report", options.clone()).await?;
    println!("holding examples/report with token {}", first.token());
    fence
        .write(
            "examples/report.txt",
            first.token(),
            b"written by the first holder",
        )
        .await?;
    let first_lease = first.lease();

    // An operator breaks the lock (as if the first holder had paused past its TTL) and a
    // second holder takes over and writes.
    store.force_release(&first.name()).await?;
    let second = locker.acquire("examples/report", options).await?;
    fence
        .write(
            "examples/report.txt",
            second.token(),
            b"written by the second holder",
        )
        .await?;
    println!("second holder wrote with token {}", second.token());

    // The first holder wakes up and writes with its old token: rejected.
    match fence
        .write("examples/report.txt", first.token(), b"late write")
        .await
    {
        Err(err @ Error::StaleToken { .. }) => println!("rejected as it should be: {err}"),
        other => println!("unexpected: {other:?}"),
    }
    // The same check without a stored token: a txn guarded by "I still own the lock".
    let guarded = Txn::new()
        .when([store.owner_compare(&first_lease)?])
        .and_then([TxnOp::put("examples/status", "first holder", None)]);
    let written = store.client().kv_client().txn(guarded).await?.succeeded();
    println!("first holder's owner-guarded txn applied: {written}");
    let lost = first.release().await;
    println!("first holder's release: {lost:?}");
    second.release().await?;
    Ok(())
}
