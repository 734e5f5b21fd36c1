//! Contention stress: many holders, holds longer than the TTL, fenced writes through a gate.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock_core::{AcquireOptions, ErrorKind, FenceGate, FencingToken};
use rand::Rng;
use tokio::time::Instant;

use crate::Ctx;

/// What the stress case counted.
#[derive(Debug, Default)]
pub struct StressReport {
    /// Fenced writes attempted.
    pub attempted: AtomicU64,
    /// Attempts whose token was below the resource's high-water mark (rejected).
    pub stale_attempted: AtomicU64,
    /// Writes admitted.
    pub accepted: AtomicU64,
    /// Acquires in the randomized phase that failed transiently (a grant they may have made
    /// was never used, and expired).
    pub failed_acquires: AtomicU64,
}

/// Workers take the lock, sometimes hold it past the TTL without renewing (a paused holder),
/// then write with their token. Ends with 0 stale writes accepted, at least one attempted,
/// unique tokens, and no lost update.
pub async fn contention_stress_no_stale_write_accepted(cx: &Ctx) {
    let name = cx.name("stress");
    let ttl = cx.short_ttl();
    let gate = Arc::new(FenceGate::new());
    let counter = Arc::new(AtomicU64::new(0));
    let accepted_log: Arc<Mutex<Vec<FencingToken>>> = Arc::default();
    let granted: Arc<Mutex<Vec<FencingToken>>> = Arc::default();
    let report = Arc::new(StressReport::default());
    let write = {
        let (gate, counter, log, report) = (
            gate.clone(),
            counter.clone(),
            accepted_log.clone(),
            report.clone(),
        );
        move |token: FencingToken| {
            report.attempted.fetch_add(1, Ordering::SeqCst);
            let result = gate.write("resource", token, || {
                counter.fetch_add(1, Ordering::SeqCst);
                log.lock().unwrap().push(token);
            });
            match result {
                Ok(()) => report.accepted.fetch_add(1, Ordering::SeqCst),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::StaleToken, "{e}");
                    report.stale_attempted.fetch_add(1, Ordering::SeqCst)
                }
            };
        }
    };
    let no_renew = AcquireOptions::new().with_ttl(ttl).without_renewal();

    // A choreographed stale writer first, so the randomized phase is not the only witness.
    let paused = cx.guard(&name, no_renew.with_no_wait()).await;
    granted.lock().unwrap().push(paused.token());
    tokio::time::sleep(cx.past_short_ttl()).await;
    assert!(
        !paused.is_valid(),
        "the paused holder's guard knows its deadline passed"
    );
    let successor = cx.guard(&name, no_renew.with_timeout(ttl * 10)).await;
    granted.lock().unwrap().push(successor.token());
    write(successor.token());
    let stale_before = report.stale_attempted.load(Ordering::SeqCst);
    write(paused.token());
    assert_eq!(
        report.stale_attempted.load(Ordering::SeqCst),
        stale_before + 1,
        "the late write was rejected"
    );
    drop(paused);
    cx.release_guard(successor).await;
    let choreographed = granted.lock().unwrap().len();

    // Randomized phase.
    let budget = (ttl * 8).max(Duration::from_secs(3));
    let until = Instant::now() + budget;
    let workers = (0..6).map(|_| {
        let locker = cx.locker();
        let (name, granted, write, report) =
            (name.clone(), granted.clone(), write.clone(), report.clone());
        tokio::spawn(async move {
            while Instant::now() < until {
                let guard = match locker
                    .try_acquire(&name, no_renew.with_timeout(ttl * 3))
                    .await
                {
                    Ok(Some(guard)) => guard,
                    Ok(None) => continue,
                    // Like a worker whose request timed out: it tries again.
                    Err(e) if e.is_transient() => {
                        report.failed_acquires.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    Err(e) => panic!("acquire: {e}"),
                };
                granted.lock().unwrap().push(guard.token());
                let hold = rand::rng().random_range(Duration::ZERO..ttl * 2);
                tokio::time::sleep(hold).await;
                write(guard.token()); // unconditionally, like a holder that was paused
                let _ = guard.release().await;
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker.expect("worker");
    }

    let log = accepted_log.lock().unwrap();
    let stale_accepted = log.windows(2).filter(|w| w[1] < w[0]).count();
    let granted = granted.lock().unwrap();
    let unique: HashSet<_> = granted.iter().collect();
    let attempted = report.attempted.load(Ordering::SeqCst);
    let stale_attempted = report.stale_attempted.load(Ordering::SeqCst);
    let accepted = report.accepted.load(Ordering::SeqCst);
    let failed_acquires = report.failed_acquires.load(Ordering::SeqCst);
    let randomized = granted.len() - choreographed;
    println!(
        "stress on {}: grants {} ({randomized} randomized) · writes attempted {attempted} · stale attempted {stale_attempted} · stale accepted {stale_accepted} · accepted {accepted} · acquires failed transiently {failed_acquires}",
        cx.store().backend(),
        granted.len()
    );
    assert_eq!(stale_accepted, 0, "no stale write accepted");
    assert!(
        stale_attempted > 0,
        "the case must attempt at least one stale write"
    );
    assert_eq!(unique.len(), granted.len(), "every grant has its own token");
    assert_eq!(
        counter.load(Ordering::SeqCst),
        accepted,
        "no acknowledged write lost"
    );
    assert_eq!(attempted, accepted + stale_attempted);
    // Acquires that failed transiently are results too, but a phase of mostly such failures
    // would have contended for nothing.
    assert!(
        randomized >= 4 && failed_acquires < randomized as u64,
        "the randomized phase needs definite grants: {randomized} grants, {failed_acquires} acquires failed transiently"
    );
}
