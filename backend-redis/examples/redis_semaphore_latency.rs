//! Latency of one permit acquire + release through `RedisLeaseStore`, against one lock acquire
//! + release in the same run (interleaved), with the semaphore empty, nearly full at a limit
//!   of 10, and nearly full at the largest limit (9,999 of 10,000 permits held by others).
//!
//! ```text
//! FENCELOCK_REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p fencelock-redis --example redis_semaphore_latency
//! ```

use std::time::{Duration, Instant};

use fencelock_core::{LeaseStore, LockName, PermitLimit};
use fencelock_redis::RedisLeaseStore;

const ROUNDS: usize = 3_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("FENCELOCK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisLeaseStore::connect(&url).await?;
    let lock = LockName::new("bench/semaphore-latency-lock")?;
    let ttl = Duration::from_secs(60);
    for (limit, others) in [(10, 0), (10, 9), (PermitLimit::MAX, PermitLimit::MAX - 1)] {
        let limit = PermitLimit::new(limit)?;
        let name = LockName::new(format!("bench/semaphore-latency-{limit}-{others}"))?;
        let mut held = Vec::new();
        for _ in 0..others {
            held.push(
                store
                    .try_acquire_permit(&name, limit, ttl, None)
                    .await?
                    .ok_or("full")?,
            );
        }
        let mut locks = Vec::with_capacity(ROUNDS);
        let mut permits = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS + 200 {
            let started = Instant::now();
            let lease = store.try_acquire(&lock, ttl).await?.ok_or("held")?;
            store.release(&lease).await?;
            let lock_took = started.elapsed();

            let started = Instant::now();
            let permit = store
                .try_acquire_permit(&name, limit, ttl, None)
                .await?
                .ok_or("full")?;
            store.release(&permit).await?;
            // The first rounds warm the script cache and the connection.
            if round >= 200 {
                locks.push(lock_took);
                permits.push(started.elapsed());
            }
        }
        let started = Instant::now();
        let shown = store.inspect_permits(&name).await?;
        let inspect_took = started.elapsed();
        for lease in &held {
            store.release(lease).await?;
        }
        let (l50, l99) = percentiles(&mut locks);
        let (p50, p99) = percentiles(&mut permits);
        println!(
            "limit {limit:>5}, {others:>4} held by others: permit p50 {p50:>8.1?} p99 {p99:>8.1?} | lock p50 {l50:>8.1?} p99 {l99:>8.1?} | ratio p50 {:.2} | inspect_permits of {} {inspect_took:.1?}",
            p50.as_secs_f64() / l50.as_secs_f64().max(f64::MIN_POSITIVE),
            shown.holders.len(),
        );
    }
    Ok(())
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}
