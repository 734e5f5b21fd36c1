//! Latency of fencelock's etcd operations next to the raw etcd operations they are made of,
//! measured in the same run (p50 and p99 over `ROUNDS` sequential calls).
//!
//! ```text
//! FENCELOCK_ETCD_ENDPOINTS=http://127.0.0.1:2379 cargo run --release -p fencelock-etcd --example etcd_latency
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use fencelock_core::{Error, Fence, LeaseStore, LockName};
use fencelock_etcd::EtcdLeaseStore;
use fencelock_etcd::etcd_client::{Compare, CompareOp, LockOptions, PutOptions, Txn, TxnOp};

const ROUNDS: usize = 300;

async fn measure<F, Fut>(label: &str, mut op: F) -> Result<(), Error>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    for i in 0..20 {
        op(i).await?; // warm-up
    }
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let started = Instant::now();
        op(i).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{label:<58} p50 {:>6} µs   p99 {:>6} µs",
        at(0.5).as_micros(),
        at(0.99).as_micros()
    );
    Ok(())
}

fn driver(e: fencelock_etcd::etcd_client::Error) -> Error {
    Error::backend("etcd", fencelock_core::Operation::Acquire, e)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoints = std::env::var("FENCELOCK_ETCD_ENDPOINTS")
        .unwrap_or_else(|_| "http://127.0.0.1:2379".to_owned());
    let store = EtcdLeaseStore::connect(endpoints.split(',')).await?;
    let client = store.client().clone();
    let ttl = Duration::from_secs(10);
    let run = format!("bench/{:x}", std::process::id());
    println!("{ROUNDS} sequential rounds against {endpoints}");

    measure("raw: txn (compare + put)", |i| {
        let mut c = client.clone();
        let key = format!("{run}/txn/{i}");
        async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, "", None)]);
            c.txn(txn).await.map(drop).map_err(driver)
        }
    })
    .await?;
    measure("raw: lease grant", |_| {
        let mut c = client.clone();
        async move { c.lease_grant(10, None).await.map(drop).map_err(driver) }
    })
    .await?;
    let session = {
        let mut c = client.clone();
        c.lease_grant(60, None).await.map_err(driver)?.id()
    };
    measure(
        "raw: built-in lock + unlock (v3lock, one session lease)",
        |_| {
            let mut c = client.clone();
            let name = format!("{run}/builtin");
            async move {
                let held = c
                    .lock(name, Some(LockOptions::new().with_lease(session)))
                    .await
                    .map_err(driver)?;
                c.unlock(held.key()).await.map(drop).map_err(driver)
            }
        },
    )
    .await?;
    measure("session-lease design: queue txn + delete (no grant)", |i| {
        let mut c = client.clone();
        let key = format!("{run}/session/{session:x}-{i}");
        let prefix = format!("{run}/session/");
        async move {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([
                    TxnOp::put(key.clone(), "", Some(PutOptions::new().with_lease(session))),
                    TxnOp::get(prefix, None),
                ]);
            c.txn(txn).await.map_err(driver)?;
            c.delete(key, None).await.map(drop).map_err(driver)
        }
    })
    .await?;
    measure("fencelock: try_acquire + release (grant, txn, txn)", |i| {
        let store = store.clone();
        let name =
            LockName::new(format!("{run}/ours/{}", i % 4)).unwrap_or_else(|_| unreachable!());
        async move {
            let lease = store.try_acquire(&name, ttl).await?.ok_or_else(|| {
                Error::backend(
                    "etcd",
                    fencelock_core::Operation::Acquire,
                    "unexpectedly held",
                )
            })?;
            store.release(&lease).await
        }
    })
    .await?;
    let held_name = LockName::new(format!("{run}/held")).unwrap_or_else(|_| unreachable!());
    let held = store
        .try_acquire(&held_name, Duration::from_secs(60))
        .await?
        .ok_or_else(|| Error::backend("etcd", fencelock_core::Operation::Acquire, "held"))?;
    measure(
        "fencelock: try_acquire on contention (grant, txn, revoke)",
        |_| {
            let (store, name) = (store.clone(), held_name.clone());
            async move { store.try_acquire(&name, ttl).await.map(drop) }
        },
    )
    .await?;
    measure("fencelock: renew (keepalive, range)", |_| {
        let (store, held) = (store.clone(), held.clone());
        async move { store.renew(&held, ttl).await.map(drop) }
    })
    .await?;
    measure("fencelock: inspect (range, time-to-live)", |_| {
        let (store, name) = (store.clone(), held_name.clone());
        async move { store.inspect(&name).await.map(drop) }
    })
    .await?;
    let next_token = std::sync::atomic::AtomicU64::new(1_000);
    measure("fencelock: fence write (one txn)", |_| {
        let fence = store.fence();
        let key = format!("{run}/fenced");
        let token = fencelock_core::FencingToken::new(
            next_token.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        async move { fence.write(&key, token, b"v").await }
    })
    .await?;
    store.release(&held).await?;
    let mut c = client.clone();
    c.delete(
        run,
        Some(fencelock_etcd::etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .map_err(driver)?;
    c.lease_revoke(session).await.map_err(driver)?;
    Ok(())
}
