//! Takes a lock on etcd, writes with its fencing token, and shows a superseded holder's late
//! write being rejected.
//!
//! ```text
//! FENCELOCK_ETCD_ENDPOINTS=http://127.0.0.1:2379 cargo run -p fencelock-etcd --example etcd_fenced_put
//! ```

use std::time::Duration;

use fencelock_core::{AcquireOptions, Error, LeaseStore, Locker};
use fencelock_etcd::EtcdLeaseStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoints = std::env::var("FENCELOCK_ETCD_ENDPOINTS")
        .unwrap_or_else(|_| "http://127.0.0.1:2379".to_owned());
    let store = EtcdLeaseStore::connect(endpoints.split(',')).await?;
    let locker = Locker::new(store.clone());
    let options = AcquireOptions::new()
        .with_ttl(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(30));

    let first = locker.acquire("examples/report", options).await?;
    println!("holding examples/report with token {}", first.token());
    store
        .fenced_put(
            "examples/report.txt",
            "written by the first holder",
            first.token(),
        )
        .await?;

    // An operator breaks the lock (as if the first holder had paused past its TTL) and a
    // second holder takes over and writes.
    let stale_token = first.token();
    store.force_release(&first.name()).await?;
    let second = locker.acquire("examples/report", options).await?;
    store
        .fenced_put(
            "examples/report.txt",
            "written by the second holder",
            second.token(),
        )
        .await?;
    println!("second holder wrote with token {}", second.token());

    // The first holder wakes up and writes with its old token: rejected.
    match store
        .fenced_put("examples/report.txt", "late write", stale_token)
        .await
    {
        Err(err @ Error::StaleToken { .. }) => println!("rejected as it should be: {err}"),
        other => println!("unexpected: {other:?}"),
    }
    let lost = first.release().await;
    println!("first holder's release: {lost:?}");
    second.release().await?;
    Ok(())
}
