//! Two workers share a counter in Redis. Each takes the lock, reads, and writes back through
//! a fenced write carrying its token. The first worker "pauses" past its TTL (like a GC pause);
//! the second takes over; when the first wakes up, its write is rejected as stale.
//!
//! ```text
//! FENCELOCK_REDIS_URL=redis://127.0.0.1:6379 cargo run -p fencelock-redis --example redis_fenced_write
//! ```

use std::time::Duration;

use fencelock_core::{AcquireOptions, Fence, Locker};
use fencelock_redis::RedisLeaseStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("FENCELOCK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisLeaseStore::connect(&url).await?;
    let fence = store.fence();
    let locker = Locker::new(store);
    let run = rand_suffix();
    let lock = format!("example/counter/{run}");
    let counter = format!("example:counter:{run}");

    // Worker 1: a short lease without renewal, so a pause can outlive it.
    let short = AcquireOptions::new()
        .with_ttl(Duration::from_millis(300))
        .without_renewal();
    let first = locker.acquire(&lock, short).await?;
    println!("worker 1 holds `{lock}` with token {}", first.token());
    fence.write(&counter, first.token(), b"1").await?;

    println!("worker 1 pauses for 1 s (its lease expires on the server meanwhile)");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Worker 2 takes over and writes with its larger token.
    let second = locker.acquire(&lock, AcquireOptions::new()).await?;
    println!("worker 2 holds `{lock}` with token {}", second.token());
    fence.write(&counter, second.token(), b"2").await?;

    // Worker 1 wakes up and tries to write: rejected, with both tokens named.
    match fence.write(&counter, first.token(), b"1 again").await {
        Err(stale) => println!("worker 1's late write was rejected: {stale}"),
        Ok(()) => return Err("a stale write was accepted".into()),
    }
    let stored = fence.read(&counter).await?.ok_or("counter missing")?;
    println!(
        "`{counter}` = {:?} (written with token {})",
        String::from_utf8_lossy(&stored.value),
        stored.token
    );
    second.release().await?;
    drop(first);
    Ok(())
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}", nanos ^ u128::from(std::process::id()))
}
