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
            let result = gate.admit_with("resource", token, || {
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
    let paused = cx
        .guard_as(
            &name,
            no_renew.clone().with_no_wait(),
            &format!("Locker::acquire of free `{name}`"),
        )
        .await;
    granted.lock().unwrap().push(paused.token());
    tokio::time::sleep(cx.past_short_ttl()).await;
    assert!(
        !paused.is_valid(),
        "the guard of token {}, unrenewed for {:?} with a {ttl:?} TTL, still says valid",
        paused.token(),
        cx.past_short_ttl()
    );
    let successor_what = format!(
        "Locker::acquire of `{name}` after token {} expired (waiting up to {:?})",
        paused.token(),
        ttl * 10
    );
    let successor = cx
        .guard_as(
            &name,
            no_renew.clone().with_timeout(ttl * 10),
            &successor_what,
        )
        .await;
    granted.lock().unwrap().push(successor.token());
    write(successor.token());
    let stale_before = report.stale_attempted.load(Ordering::SeqCst);
    write(paused.token());
    assert_eq!(
        report.stale_attempted.load(Ordering::SeqCst),
        stale_before + 1,
        "the late write of token {} after token {} wrote was not rejected",
        paused.token(),
        successor.token()
    );
    drop(paused);
    let successor_token = successor.token();
    cx.release_guard_as(
        successor,
        &format!("release of the successor (token {successor_token})"),
    )
    .await;
    let choreographed = granted.lock().unwrap().len();

    // Randomized phase.
    let budget = (ttl * 8).max(Duration::from_secs(3));
    let until = Instant::now() + budget;
    let workers = (0..6).map(|_| {
        let locker = cx.locker();
        let no_renew = no_renew.clone();
        let (name, granted, write, report) =
            (name.clone(), granted.clone(), write.clone(), report.clone());
        tokio::spawn(async move {
            while Instant::now() < until {
                let guard = match locker
                    .acquire(&name, no_renew.clone().with_timeout(ttl * 3))
                    .await
                {
                    Ok(guard) => guard,
                    Err(error) if error.kind() == ErrorKind::Timeout => continue,
                    // Like a worker whose request timed out: it tries again.
                    Err(error) if error.is_transient() => {
                        report.failed_acquires.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    Err(error) => panic!("Locker::acquire of `{name}` in the stress: {error}"),
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
        worker.expect("a stress worker's task");
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
    let descending: Vec<(FencingToken, FencingToken)> = log
        .windows(2)
        .filter(|w| w[1] < w[0])
        .map(|w| (w[0], w[1]))
        .collect();
    assert_eq!(
        stale_accepted, 0,
        "the fence accepted {stale_accepted} stale writes, each after a higher token (pairs \
         of higher, then lower): {descending:?}"
    );
    assert!(
        stale_attempted > 0,
        "the case must attempt at least one stale write ({attempted} writes, {} grants)",
        granted.len()
    );
    let mut seen = HashSet::new();
    let duplicates: Vec<&FencingToken> = granted.iter().filter(|t| !seen.insert(*t)).collect();
    assert_eq!(
        unique.len(),
        granted.len(),
        "Locker::acquire (try_acquire / acquire_waiting underneath) granted these tokens more \
         than once: {duplicates:?}"
    );
    assert_eq!(
        counter.load(Ordering::SeqCst),
        accepted,
        "acknowledged writes lost (left: applied, right: acknowledged)"
    );
    assert_eq!(
        attempted,
        accepted + stale_attempted,
        "every write is either accepted or rejected as stale ({accepted} + {stale_attempted})"
    );
    // Acquires that failed transiently are results too, but a phase of mostly such failures
    // would have contended for nothing.
    assert!(
        randomized >= 4 && failed_acquires < randomized as u64,
        "the randomized phase of Locker::acquire on `{name}` needs definite grants: \
         {randomized} grants, {failed_acquires} acquires failed transiently"
    );
}
