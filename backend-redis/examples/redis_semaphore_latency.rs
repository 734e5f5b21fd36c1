//! Latency of one permit acquire + release through `RedisLeaseStore`, against one lock acquire
//! + release in the same run (interleaved), with the semaphore empty, nearly full at a limit
//!   of 10, and nearly full at the largest limit (9,999 of 10,000 permits held by others).
//!
//! Then what a refused waiter costs on a full semaphore of 10,000 permits: the one script of
//! `try_acquire_permit_or_next_expiry` (what the wait loop sends) against a refusal followed by
//! `inspect_permits` for the soonest expiry (what it sent before), alternated in rounds; the
//! server's CPU per attempt from `INFO cpu`.
//!
//! ```text
//! FENCELOCK_REDIS_URL=redis://127.0.0.1:6379 cargo run --release -p fencelock-redis --example redis_semaphore_latency
//! ```

use std::time::{Duration, Instant};

use fencelock_core::{Lease, LeaseStore, LockName, PermitLimit};
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
        let held = take_permits(&store, &name, limit, others, ttl).await?;
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
    refused_waiter(&store, &url).await
}

/// `n` permits of `name`, each with `ttl`.
async fn take_permits(
    store: &RedisLeaseStore,
    name: &LockName,
    limit: PermitLimit,
    n: u32,
    ttl: Duration,
) -> Result<Vec<Lease>, Box<dyn std::error::Error>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(
            store
                .try_acquire_permit(name, limit, ttl, None)
                .await?
                .ok_or("full")?,
        );
    }
    Ok(held)
}

/// A refused attempt on a full semaphore of `PermitLimit::MAX` permits, both ways, alternated.
async fn refused_waiter(
    store: &RedisLeaseStore,
    url: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    const ATTEMPTS: u32 = 200;
    let mut server = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let limit = PermitLimit::new(PermitLimit::MAX)?;
    let name = LockName::new("bench/semaphore-refused")?;
    let ttl = Duration::from_secs(120);
    let held = take_permits(store, &name, limit, limit.get(), ttl).await?;
    for round in 1..=3 {
        for hinted in [true, false] {
            let cpu = server_cpu(&mut server).await?;
            let started = Instant::now();
            for _ in 0..ATTEMPTS {
                if hinted {
                    let attempt = store
                        .try_acquire_permit_or_next_expiry(&name, limit, ttl, None)
                        .await?;
                    if attempt.into_granted().is_some() {
                        return Err("granted a permit past the limit".into());
                    }
                } else {
                    if store
                        .try_acquire_permit(&name, limit, ttl, None)
                        .await?
                        .is_some()
                    {
                        return Err("granted a permit past the limit".into());
                    }
                    store.inspect_permits(&name).await?.next_expiry();
                }
            }
            let took = started.elapsed() / ATTEMPTS;
            let server_us = (server_cpu(&mut server).await? - cpu) * 1e6 / f64::from(ATTEMPTS);
            println!(
                "round {round}, refused on {} held, {:<38}: {took:>9.1?} per attempt, server CPU {server_us:>8.1} µs per attempt",
                limit.get(),
                if hinted {
                    "try_acquire_permit_or_next_expiry"
                } else {
                    "try_acquire_permit + inspect_permits"
                }
            );
        }
    }
    for lease in &held {
        store.release(lease).await?;
    }
    Ok(())
}

/// The server's user + system CPU seconds so far (`INFO cpu`).
async fn server_cpu(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<f64, Box<dyn std::error::Error>> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(':')?;
            matches!(key, "used_cpu_sys" | "used_cpu_user")
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum())
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}
