//! The problem fencelock exists for, in one run, on the in-memory store (no server needed):
//!
//! worker A takes the lock, stalls past its TTL, worker B takes over with a higher token and
//! writes, A wakes and writes with its old token, and the fenced store rejects it.
//!
//! Run: `cargo run -p fencelock --example quickstart`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock::{AcquireOptions, Error, FenceGate, FencingToken, Locker};
use tokio::time::Instant;

/// Downstream storage that checks tokens: a balance behind a fence.
struct Storage {
    fence: FenceGate,
    balance: Mutex<i64>,
}

impl Storage {
    fn write(&self, token: FencingToken, balance: i64) -> Result<(), Error> {
        self.fence.admit_with("account/42", token, || {
            *self.balance.lock().unwrap_or_else(|e| e.into_inner()) = balance;
        })
    }
    fn balance(&self) -> i64 {
        *self.balance.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let start = Instant::now();
    let say = move |who: &str, what: String| {
        println!("[{:>4.1}s] {who:<9} {what}", start.elapsed().as_secs_f64());
    };
    let ttl = Duration::from_secs(1);
    let locker = Locker::new(fencelock::MemoryLeaseStore::new());
    let storage = Arc::new(Storage {
        fence: FenceGate::new(),
        balance: Mutex::new(100),
    });

    println!(
        "fencelock quickstart: a lock that expires early, and the fencing token that makes it safe\n"
    );

    // A frozen process renews nothing, so worker A runs without a watchdog here.
    let a = locker
        .acquire(
            "invoice-batch",
            AcquireOptions::new().with_ttl(ttl).without_renewal(),
        )
        .await?;
    say(
        "worker A",
        format!(
            "took lock `invoice-batch` with token {} (TTL {ttl:?})",
            a.token()
        ),
    );
    let seen_by_a = storage.balance();
    say(
        "worker A",
        format!(
            "read balance = {seen_by_a}, plans to write {}",
            seen_by_a - 10
        ),
    );
    say(
        "worker A",
        "stalls: a GC pause, a VM migration, a slow disk; it cannot renew".into(),
    );

    let b = {
        let (locker, storage) = (locker.clone(), storage.clone());
        tokio::spawn(async move {
            let waited = Instant::now();
            let b = locker
                .acquire(
                    "invoice-batch",
                    AcquireOptions::new()
                        .with_ttl(ttl * 5)
                        .with_timeout(ttl * 5),
                )
                .await?;
            say(
                "worker B",
                format!(
                    "took the lock after A's lease expired ({:.1}s wait), token {}",
                    waited.elapsed().as_secs_f64(),
                    b.token()
                ),
            );
            let balance = storage.balance() + 50;
            storage.write(b.token(), balance)?;
            say(
                "worker B",
                format!(
                    "wrote balance = {balance} with token {}: accepted",
                    b.token()
                ),
            );
            b.release().await?;
            say("worker B", "released the lock".into());
            Ok::<(), Error>(())
        })
    };

    tokio::time::sleep(ttl * 8 / 5).await;
    say(
        "worker A",
        format!("wakes up; its guard says valid = {}", a.is_valid()),
    );
    say(
        "worker A",
        format!(
            "writes balance = {} with its old token {} anyway",
            seen_by_a - 10,
            a.token()
        ),
    );
    match storage.write(a.token(), seen_by_a - 10) {
        Err(e) => say("storage", format!("REJECTED: {e}")),
        Ok(()) => say(
            "storage",
            "accepted the stale write (this must never happen)".into(),
        ),
    }
    b.await
        .map_err(|e| Error::invalid("worker", e.to_string()))??;
    if let Err(e) = a.release().await {
        say("worker A", format!("release reports: {e}"));
    }
    println!(
        "\nfinal balance = {} (B's write survived; without the fence A would have overwritten it with {})",
        storage.balance(),
        seen_by_a - 10
    );
    Ok(())
}
