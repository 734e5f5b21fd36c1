//! The problem fencelock exists for, in one run, on the in-memory store (no server needed):
//!
//! worker A takes the lock, stalls past its TTL, worker B takes over with a higher token and
//! writes, A wakes and writes with its old token, and the fenced store rejects it. It ends
//! with the run drawn as a text timeline (a lane each for A, B and the store).
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
            let granted = start.elapsed();
            let b_token = b.token().get();
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
            let wrote = start.elapsed();
            say(
                "worker B",
                format!(
                    "wrote balance = {balance} with token {}: accepted",
                    b.token()
                ),
            );
            b.release().await?;
            say("worker B", "released the lock".into());
            Ok::<_, Error>((b_token, granted, wrote, start.elapsed()))
        })
    };

    tokio::time::sleep(ttl * 8 / 5).await;
    let woke = start.elapsed();
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
    let a_wrote = start.elapsed();
    let outcome = storage.write(a.token(), seen_by_a - 10);
    let rejected = outcome.is_err();
    match outcome {
        Err(e) => say("storage", format!("REJECTED: {e}")),
        Ok(()) => say(
            "storage",
            "accepted the stale write (this must never happen)".into(),
        ),
    }
    let a_token = a.token().get();
    let (b_token, b_granted, b_wrote, b_released) = b
        .await
        .map_err(|e| Error::invalid("worker", e.to_string()))??;
    if let Err(e) = a.release().await {
        say("worker A", format!("release reports: {e}"));
    }
    println!(
        "\nfinal balance = {} (B's write survived; without the fence A would have overwritten it with {})",
        storage.balance(),
        seen_by_a - 10
    );
    print!(
        "\n{}",
        timeline(&Story {
            ttl,
            a_tokens: (a_token, b_token),
            b: (b_granted, b_wrote, b_released),
            a_woke: woke,
            a_wrote,
            rejected,
        })
    );
    Ok(())
}

/// When things happened, for the picture at the end.
struct Story {
    ttl: Duration,
    /// A's token and B's.
    a_tokens: (u64, u64),
    /// B: granted, wrote, released.
    b: (Duration, Duration, Duration),
    a_woke: Duration,
    a_wrote: Duration,
    rejected: bool,
}

/// The run as one screen of text: a lane each for A, B and the store, one column per 50 ms.
fn timeline(s: &Story) -> String {
    const STEP: f64 = 0.05;
    let end = s.a_wrote.max(s.b.2).as_secs_f64() + 2.0 * STEP;
    let cols = (end / STEP).ceil() as usize + 1;
    let col = |t: Duration| ((t.as_secs_f64() / STEP).round() as usize).min(cols - 1);
    let mut lanes = [vec![' '; cols], vec![' '; cols], vec![' '; cols]];
    let span = |lane: &mut Vec<char>, from: usize, to: usize, c: char| {
        for cell in &mut lane[from..=to.max(from)] {
            *cell = c;
        }
    };
    let (a_token, b_token) = s.a_tokens;
    // A: its lease until the TTL ran out, then paused past it, then its late write.
    let expiry = col(s.ttl);
    span(&mut lanes[0], 0, expiry, '=');
    span(&mut lanes[0], expiry + 1, col(s.a_woke), '.');
    lanes[0][0] = '[';
    lanes[0][expiry] = ')';
    lanes[0][col(s.a_wrote)] = 'w';
    // B: granted, wrote, released.
    let (granted, wrote, released) = (col(s.b.0), col(s.b.1), col(s.b.2));
    // At least `[w]` wide: B's write and release take a few ms.
    let wrote = wrote.max(granted + 1);
    let released = released.max(wrote + 1).min(cols - 1);
    span(&mut lanes[1], granted, released, '=');
    lanes[1][granted] = '[';
    lanes[1][released] = ']';
    lanes[1][wrote] = 'w';
    // The store: what it did with each write.
    lanes[2][wrote] = '+';
    lanes[2][col(s.a_wrote)] = if s.rejected { 'X' } else { '!' };
    let mut axis = vec![' '; cols];
    let mut ticks = String::new();
    for i in (0..cols).step_by(10) {
        axis[i] = '|';
        let label = format!("{:.1}s", i as f64 * STEP);
        ticks.push_str(&format!("{label:<10}"));
    }
    let row = |name: &str, cells: &[char], note: String| {
        let line = format!("{name:<10}{}  {note}", cells.iter().collect::<String>());
        format!("{}\n", line.trim_end())
    };
    let mut out = String::from("timeline (one column = 50 ms)\n");
    out.push_str(&format!("{:<10}{}\n", "", ticks.trim_end()));
    out.push_str(&row("", &axis, String::new()));
    out.push_str(&row(
        "worker A",
        &lanes[0],
        format!("token {a_token}: TTL ran out at `)`, stalled on `...`, writes `w`"),
    ));
    out.push_str(&row(
        "worker B",
        &lanes[1],
        format!("token {b_token}: granted `[`, write `w`, released `]`"),
    ));
    out.push_str(&row(
        "store",
        &lanes[2],
        if s.rejected {
            format!("`+` accepted token {b_token}; `X` rejected token {a_token}")
        } else {
            format!("`+` accepted token {b_token}; `!` ACCEPTED stale token {a_token}")
        },
    ));
    out
}
