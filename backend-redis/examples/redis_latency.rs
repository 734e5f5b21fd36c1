//! Latency of one acquire + release through `RedisLeaseStore`, against the raw commands a
//! hand-rolled lock sends (`SET key value NX PX ttl` + `DEL key`), in the same run; then again
//! while the store has a waiter on another lock (its subscriber connection is open).
//!
//! ```text
//! FENCELOCK_REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p fencelock-redis --example redis_latency
//! ```

use std::time::{Duration, Instant};

use fencelock_core::backend::WaitPolicy;
use fencelock_core::{LeaseStore, LockName};
use fencelock_redis::RedisLeaseStore;
use fencelock_redis::redis;

const ROUNDS: usize = 5_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("FENCELOCK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisLeaseStore::connect(&url).await?;
    let mut raw = store.connection().clone();
    let name = LockName::new("bench/latency")?;
    let ttl = Duration::from_secs(10);

    // Warm up both paths (script cache, connection).
    for _ in 0..500 {
        let lease = store.try_acquire(&name, ttl).await?.ok_or("held")?;
        store.release(&lease).await?;
        raw_cycle(&mut raw).await?;
    }
    measure(&store, &mut raw, &name, "").await?;

    // A waiter on another lock, held by another client, for the whole second run.
    let other = RedisLeaseStore::connect(&url).await?;
    let contended = LockName::new("bench/latency-contended")?;
    let held = other.try_acquire(&contended, ttl).await?.ok_or("held")?;
    let waiter = {
        let (store, contended) = (store.clone(), contended.clone());
        tokio::spawn(async move {
            let policy = WaitPolicy {
                until: Some(tokio::time::Instant::now() + Duration::from_secs(60)),
                poll_interval: Duration::from_secs(30),
            };
            store.acquire_waiting(&contended, ttl, None, policy).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    measure(&store, &mut raw, &name, " (a waiter waits)").await?;
    other.release(&held).await?;
    let lease = waiter.await??.ok_or("the waiter was not granted")?;
    store.release(&lease).await?;
    Ok(())
}

async fn measure(
    store: &RedisLeaseStore,
    raw: &mut redis::aio::ConnectionManager,
    name: &LockName,
    label: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let ttl = Duration::from_secs(10);
    let mut ours = Vec::with_capacity(ROUNDS);
    let mut baseline = Vec::with_capacity(ROUNDS);
    // Interleave, so both see the same machine load.
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let lease = store.try_acquire(name, ttl).await?.ok_or("held")?;
        store.release(&lease).await?;
        ours.push(started.elapsed());

        let started = Instant::now();
        raw_cycle(raw).await?;
        baseline.push(started.elapsed());
    }
    let (o50, o99) = percentiles(&mut ours);
    let (b50, b99) = percentiles(&mut baseline);
    println!("acquire+release (2 EVALSHA)  p50 {o50:>8.1?}  p99 {o99:>8.1?}{label}");
    println!("SET NX PX + DEL (raw)        p50 {b50:>8.1?}  p99 {b99:>8.1?}{label}");
    println!(
        "ratio p50 {:.2}{label}",
        o50.as_secs_f64() / b50.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    Ok(())
}

async fn raw_cycle(conn: &mut redis::aio::ConnectionManager) -> redis::RedisResult<()> {
    let set: Option<String> = redis::cmd("SET")
        .arg("bench:raw")
        .arg("holder")
        .arg("NX")
        .arg("PX")
        .arg(10_000)
        .query_async(conn)
        .await?;
    debug_assert!(set.is_some());
    let _: i64 = redis::cmd("DEL").arg("bench:raw").query_async(conn).await?;
    Ok(())
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}
