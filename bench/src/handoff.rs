//! Contended hand-off: many waiters on one name; the time from a holder's release call to the
//! next holder's grant.
//!
//! Each waiter loops: acquire (waiting), note the grant, hold the lock for `hold`, note the
//! time, release, then wait until somebody else has been granted before queueing again. So at
//! every release all other waiters have been waiting for at least `hold` (a polling waiter is
//! asleep, a pushed one is subscribed), and the releaser never races them for its own lock.
//! Mutual exclusion is checked on the way (a grant while another waiter holds is an overlap).
//! The Python and rslock peers follow the same protocol (`bench/peers/`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fencelock_core::{AcquireOptions, Locker};
use tokio::sync::watch;

use crate::error::{BenchError, Result};
use crate::stats::Summary;

/// A hand-off run's result.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Handoff {
    /// Release call → next grant.
    pub latency: Summary,
    /// Hand-offs per second over the run.
    pub per_sec: f64,
    /// Grants while another waiter still held the lock (must be 0).
    pub overlaps: u64,
}

#[derive(Clone, Copy)]
enum Event {
    Granted(Instant),
    Releasing(Instant),
}

/// The latencies from each `Releasing` to the `Granted` that follows it.
fn handoffs(events: &[Event]) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut released: Option<Instant> = None;
    for event in events {
        match *event {
            Event::Releasing(at) => released = Some(at),
            Event::Granted(at) => {
                if let Some(from) = released.take() {
                    out.push(at.saturating_duration_since(from));
                }
            }
        }
    }
    out
}

struct Shared {
    events: Mutex<Vec<Event>>,
    /// Grants so far; `u64::MAX` once the run stops.
    grants: watch::Sender<u64>,
    max: u64,
    holding: AtomicBool,
    overlaps: AtomicU64,
}

impl Shared {
    fn push(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }

    fn stopped(&self) -> bool {
        *self.grants.borrow() >= self.max
    }
}

/// How long each holder keeps the lock before releasing it.
pub const HOLD: Duration = Duration::from_millis(5);

/// Runs `waiters` tasks contending for `name` on `locker` for `run` (or `max` hand-offs).
pub async fn run(
    locker: &Locker,
    name: &str,
    waiters: usize,
    run: Duration,
    max: usize,
) -> Result<Handoff> {
    let shared = Arc::new(Shared {
        events: Mutex::new(Vec::with_capacity(2 * max + 64)),
        grants: watch::Sender::new(0),
        max: max as u64 + 1,
        holding: AtomicBool::new(false),
        overlaps: AtomicU64::new(0),
    });
    let options = AcquireOptions::new()
        .with_ttl(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(30));
    let mut tasks = Vec::with_capacity(waiters);
    for _ in 0..waiters {
        let (locker, shared, name, options) = (
            locker.clone(),
            Arc::clone(&shared),
            name.to_owned(),
            options.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seen = shared.grants.subscribe();
            loop {
                let guard = locker.acquire(name.as_str(), options.clone()).await?;
                let granted_at = Instant::now();
                if shared.holding.swap(true, Ordering::SeqCst) {
                    shared.overlaps.fetch_add(1, Ordering::Relaxed);
                }
                let mut mine = 0;
                shared.grants.send_modify(|n| {
                    if *n < shared.max {
                        shared.push(Event::Granted(granted_at));
                        *n += 1;
                    }
                    mine = *n;
                });
                if mine >= shared.max {
                    shared.holding.store(false, Ordering::SeqCst);
                    guard.release().await?;
                    return Ok::<(), BenchError>(());
                }
                tokio::time::sleep(HOLD).await;
                shared.push(Event::Releasing(Instant::now()));
                shared.holding.store(false, Ordering::SeqCst);
                guard.release().await?;
                // Queue again only after someone else got it.
                let _ = seen.wait_for(|n| *n > mine).await;
                if shared.stopped() {
                    return Ok(());
                }
            }
        }));
    }
    let started = Instant::now();
    let mut progress = shared.grants.subscribe();
    let _ = tokio::time::timeout(run, progress.wait_for(|n| *n >= shared.max)).await;
    let elapsed = started.elapsed();
    shared.grants.send_modify(|n| *n = u64::MAX);
    for task in tasks {
        task.await??;
    }
    let events = std::mem::take(&mut *shared.events.lock().unwrap_or_else(PoisonError::into_inner));
    let samples = handoffs(&events);
    Ok(Handoff {
        per_sec: samples.len() as f64 / elapsed.as_secs_f64(),
        latency: Summary::of(&samples),
        overlaps: shared.overlaps.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoffs_pair_each_release_with_the_next_grant() {
        let t0 = Instant::now();
        let at = |us| t0 + Duration::from_micros(us);
        let events = [
            Event::Granted(at(0)),
            Event::Releasing(at(10)),
            Event::Granted(at(25)),
            Event::Releasing(at(30)),
            Event::Granted(at(70)),
        ];
        assert_eq!(
            handoffs(&events),
            [Duration::from_micros(15), Duration::from_micros(40)]
        );
    }
}
