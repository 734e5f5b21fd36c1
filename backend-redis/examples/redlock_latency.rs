//! Latency of one acquire (and one acquire + release) through `RedlockLeaseStore` on N
//! servers, against `RedisLeaseStore` on the first of them, in the same run.
//!
//! ```text
//! FENCELOCK_REDLOCK_URLS=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003 \
//!   cargo run --release -p fencelock-redis --example redlock_latency
//! ```

use std::time::{Duration, Instant};

use fencelock_core::{LeaseStore, LockName};
use fencelock_redis::{RedisLeaseStore, RedlockLeaseStore};

const ROUNDS: usize = 2_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls: Vec<String> = std::env::var("FENCELOCK_REDLOCK_URLS")
        .map_err(|_| "set FENCELOCK_REDLOCK_URLS to 3 or more comma-separated redis:// URLs")?
        .split(',')
        .map(|u| u.trim().to_owned())
        .collect();
    let redlock = RedlockLeaseStore::connect(urls.clone()).await?;
    let single = RedisLeaseStore::connect(&urls[0]).await?;
    // Separate names: both stores use the same keys on the first server.
    let name = LockName::new("bench/redlock-latency")?;
    let single_name = LockName::new("bench/single-latency")?;
    let ttl = Duration::from_secs(10);

    for _ in 0..200 {
        cycle(&redlock, &name, ttl).await?;
        cycle(&single, &single_name, ttl).await?;
    }
    let (mut r_acq, mut r_cycle, mut s_acq, mut s_cycle) = (vec![], vec![], vec![], vec![]);
    // Interleave, so both see the same machine load.
    for _ in 0..ROUNDS {
        let (a, c) = cycle(&redlock, &name, ttl).await?;
        r_acq.push(a);
        r_cycle.push(c);
        let (a, c) = cycle(&single, &single_name, ttl).await?;
        s_acq.push(a);
        s_cycle.push(c);
    }
    let n = redlock.servers();
    for (what, samples) in [
        (format!("redlock ({n} servers) acquire"), &mut r_acq),
        ("redis (1 server) acquire".to_owned(), &mut s_acq),
        (
            format!("redlock ({n} servers) acquire+release"),
            &mut r_cycle,
        ),
        ("redis (1 server) acquire+release".to_owned(), &mut s_cycle),
    ] {
        samples.sort();
        let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!("{what:<38} p50 {:>9.1?}  p99 {:>9.1?}", p(0.5), p(0.99));
    }
    Ok(())
}

/// One acquire + release; returns (acquire time, whole cycle time).
async fn cycle(
    store: &dyn LeaseStore,
    name: &LockName,
    ttl: Duration,
) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let lease = store.try_acquire(name, ttl).await?.ok_or("held")?;
    let acquired = started.elapsed();
    store.release(&lease).await?;
    Ok((acquired, started.elapsed()))
}
