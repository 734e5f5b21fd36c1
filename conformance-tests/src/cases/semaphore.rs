//! Semaphores: at most N permits at once, each a lease with its own token.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fencelock_core::backend::granted_lease;
use fencelock_core::{
    AcquireOptions, ErrorKind, FencingToken, HolderId, Lease, LockName, OwnerLabel, PermitAttempt,
    PermitLimit, Permits,
};
use tokio::time::{Instant, timeout};

use super::{assert_kind, assert_rises};
use crate::{Ctx, settle};

/// How long a case gives an event that should take milliseconds.
const PROMPTLY: Duration = Duration::from_secs(5);

fn limit(n: u32) -> PermitLimit {
    PermitLimit::new(n).expect("a valid limit")
}

/// `try_acquire_permit` that must answer (transient errors asked again).
async fn try_permit(
    cx: &Ctx,
    name: &LockName,
    n: u32,
    ttl: Duration,
    label: Option<&OwnerLabel>,
) -> Option<Lease> {
    let what = format!("try_acquire_permit of `{name}` (limit {n}, TTL {ttl:?})");
    settle::definite(&what, || {
        cx.store().try_acquire_permit(name, limit(n), ttl, label)
    })
    .await
}

/// `try_acquire_permit_or_next_expiry` (TTL: the long one) that must answer.
async fn attempt_permit(cx: &Ctx, name: &LockName, n: u32, state: &str) -> PermitAttempt {
    let what = format!("try_acquire_permit_or_next_expiry of `{name}` (limit {n}) with {state}");
    settle::definite(&what, || {
        cx.store()
            .try_acquire_permit_or_next_expiry(name, limit(n), cx.long_ttl(), None)
    })
    .await
}

/// A permit that must be granted.
async fn permit(cx: &Ctx, name: &LockName, n: u32, ttl: Duration) -> Lease {
    try_permit(cx, name, n, ttl, None)
        .await
        .unwrap_or_else(|| panic!("a permit of `{name}` (limit {n}) must be granted"))
}

async fn holders(cx: &Ctx, name: &LockName) -> Permits {
    let what = format!("inspect_permits of `{name}`");
    settle::definite(&what, || cx.store().inspect_permits(name)).await
}

fn tokens(permits: &Permits) -> Vec<FencingToken> {
    permits.holders.iter().map(|h| h.token).collect()
}

async fn release(cx: &Ctx, lease: &Lease, what: &str) {
    let what = format!("release of {what} (token {})", lease.token());
    settle::definite(&what, || cx.store().release(lease)).await;
}

/// Limits of 0 or above the maximum, bad names and bad TTLs are `InvalidInput` before anything
/// is granted.
pub async fn permit_limit_validation(cx: &Ctx) {
    let name = cx.name("limits");
    let locker = cx.locker();
    for bad in [0, PermitLimit::MAX + 1, u32::MAX] {
        assert_kind(
            locker.semaphore(name.clone(), bad),
            ErrorKind::InvalidInput,
            &format!("Locker::semaphore with a limit of {bad}"),
        );
        assert_kind(
            PermitLimit::new(bad),
            ErrorKind::InvalidInput,
            &format!("PermitLimit::new({bad})"),
        );
    }
    assert_kind(
        locker.semaphore("", 2),
        ErrorKind::InvalidInput,
        "Locker::semaphore with an empty name",
    );
    let max = locker
        .semaphore(name.clone(), PermitLimit::MAX)
        .expect("the maximum is valid");
    assert_eq!(max.limit().get(), PermitLimit::MAX);
    for ttl in [Duration::ZERO, Duration::from_secs(100 * 365 * 24 * 3600)] {
        let answer = settle::settle("try_acquire_permit with a bad TTL", || {
            cx.store().try_acquire_permit(&name, limit(2), ttl, None)
        })
        .await;
        assert_kind(
            answer,
            ErrorKind::InvalidInput,
            &format!("try_acquire_permit with a TTL of {ttl:?}"),
        );
    }
    assert_eq!(
        holders(cx, &name).await,
        Permits::default(),
        "nothing was granted"
    );
}

/// At most `limit` permits hold; each grant has its own holder and a rising token; a release
/// makes room.
pub async fn permit_limit_is_enforced(cx: &Ctx) {
    let name = cx.name("permits");
    let mut held = Vec::new();
    for _ in 0..3 {
        let lease = permit(cx, &name, 3, cx.long_ttl()).await;
        assert_eq!(
            lease.permit_limit(),
            Some(limit(3)),
            "the grant is a permit"
        );
        if let Some(last) = held.last().map(Lease::token) {
            assert_rises(lease.token(), last, "the next permit's token");
        }
        held.push(lease);
    }
    let holders_seen: BTreeSet<_> = held.iter().map(|l| l.holder().as_u128()).collect();
    assert_eq!(holders_seen.len(), 3, "each permit has its own holder id");
    let fourth = try_permit(cx, &name, 3, cx.long_ttl(), None).await;
    assert!(
        fourth.is_none(),
        "a fourth permit of a limit of 3 was granted: {fourth:?}"
    );
    release(cx, &held[1], "the second permit").await;
    let next = permit(cx, &name, 3, cx.long_ttl()).await;
    assert_rises(next.token(), held[2].token(), "the permit after a release");
    assert!(
        try_permit(cx, &name, 3, cx.long_ttl(), None)
            .await
            .is_none(),
        "the semaphore is full again"
    );
    for lease in [&held[0], &held[2], &next] {
        release(cx, lease, "a permit").await;
    }
}

/// Asking with another limit than the holders' is `InvalidInput` naming both; once nobody
/// holds, the new limit holds.
pub async fn permit_limit_mismatch_is_invalid_input(cx: &Ctx) {
    let name = cx.name("mismatch");
    let first = permit(cx, &name, 3, cx.long_ttl()).await;
    for other in [2, 4] {
        let answer = settle::settle("try_acquire_permit with another limit", || {
            cx.store()
                .try_acquire_permit(&name, limit(other), cx.long_ttl(), None)
        })
        .await;
        let Err(error) = answer else {
            panic!("limit {other} while held with 3: expected InvalidInput, got {answer:?}");
        };
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
        let text = error.to_string();
        assert!(
            text.contains('3') && text.contains(&other.to_string()),
            "the error names both limits (3 and {other}): {text}"
        );
    }
    assert_eq!(
        tokens(&holders(cx, &name).await),
        [first.token()],
        "a refused limit granted nothing"
    );
    release(cx, &first, "the only permit").await;
    let two = permit(cx, &name, 2, cx.long_ttl()).await;
    let shown = holders(cx, &name).await;
    assert_eq!(
        shown.limit,
        Some(limit(2)),
        "the new limit holds: {shown:?}"
    );
    release(cx, &two, "the permit under the new limit").await;
}

/// A permit not renewed expires by the server's clock: its place goes to the next asker with a
/// greater token, and its own renew and release are `LeaseLost`.
pub async fn permit_expiry_frees_a_place(cx: &Ctx) {
    let name = cx.name("expiry");
    let short = permit(cx, &name, 1, cx.short_ttl()).await;
    assert!(
        try_permit(cx, &name, 1, cx.long_ttl(), None)
            .await
            .is_none(),
        "the only permit is held"
    );
    tokio::time::sleep(cx.past_short_ttl()).await;
    let next = permit(cx, &name, 1, cx.long_ttl()).await;
    assert_rises(next.token(), short.token(), "the permit after an expiry");
    let renew = settle::settle("renew of the expired permit", || {
        cx.store().renew(&short, cx.long_ttl())
    })
    .await;
    assert_kind(renew, ErrorKind::LeaseLost, "renew of the expired permit");
    let released = settle::settle("release of the expired permit", || {
        cx.store().release(&short)
    })
    .await;
    assert_kind(
        released,
        ErrorKind::LeaseLost,
        "release of the expired permit",
    );
    assert_eq!(
        tokens(&holders(cx, &name).await),
        [next.token()],
        "the expired permit's calls left the new one in place"
    );
    release(cx, &next, "the permit after the expiry").await;
}

/// Renewing or releasing one permit leaves the others and the lock of the same name alone; a
/// second release and a forged holder are `LeaseLost`.
pub async fn permit_renew_and_release_touch_only_that_permit(cx: &Ctx) {
    let name = cx.name("touch");
    let lock = cx.grant(&name, cx.long_ttl()).await;
    let a = permit(cx, &name, 2, cx.short_ttl() * 4).await;
    let b = permit(cx, &name, 2, cx.long_ttl()).await;
    // Let a's time run down, then renew it. Not to a longer TTL than it was granted: etcd
    // cannot change a lease's TTL, a keepalive restores the granted one (as a lock's renew).
    tokio::time::sleep(cx.short_ttl()).await;
    let before = holders(cx, &name).await.holders[0].remaining;
    let renewed =
        settle::definite("renew of permit a", || cx.store().renew(&a, cx.long_ttl())).await;
    assert_eq!(
        (renewed.token(), renewed.holder(), renewed.permit_limit()),
        (a.token(), a.holder(), Some(limit(2))),
        "the renewed permit is the same permit"
    );
    let shown = holders(cx, &name).await;
    assert_eq!(tokens(&shown), [a.token(), b.token()]);
    assert!(
        shown.holders[0].remaining > before,
        "renew extended permit a (it had {before:?} left): {shown:?}"
    );
    let forged = forged_holder(&a);
    let answer = settle::settle("renew of a permit with a forged holder", || {
        cx.store().renew(&forged, cx.long_ttl())
    })
    .await;
    assert_kind(answer, ErrorKind::LeaseLost, "renew with a forged holder");

    release(cx, &a, "permit a").await;
    let again = settle::settle("second release of permit a", || cx.store().release(&a)).await;
    assert_kind(again, ErrorKind::LeaseLost, "second release of permit a");
    assert_eq!(
        tokens(&holders(cx, &name).await),
        [b.token()],
        "releasing a left b"
    );
    let lock_now = cx.inspect(&name).await.map(|i| i.token);
    assert_eq!(
        lock_now,
        Some(lock.token()),
        "the lock of the same name is untouched by its permits"
    );
    assert!(
        cx.try_acquire(&name, cx.long_ttl()).await.is_none(),
        "the lock is still held"
    );
    release(cx, &b, "permit b").await;
    cx.release(&lock).await;
}

/// `real` with another holder id: a store that compared only the name and the token would
/// take it for `real`.
fn forged_holder(real: &Lease) -> Lease {
    let forged = granted_lease(
        real.name().clone(),
        real.token(),
        HolderId::random(),
        real.ttl(),
        Instant::now(),
    );
    fencelock_core::backend::permit(forged, real.permit_limit().expect("a permit"))
}

/// `inspect_permits` shows each live permit's token, holder, time left and label, and the
/// limit; nothing once they are gone.
pub async fn inspect_permits_shows_each_holder(cx: &Ctx) {
    let name = cx.name("inspect");
    let empty = holders(cx, &name).await;
    assert_eq!(empty, Permits::default(), "a semaphore never used");
    let label = OwnerLabel::new("exporter 1 ✓").expect("a valid label");
    let a = try_permit(cx, &name, 2, cx.long_ttl(), Some(&label))
        .await
        .expect("free");
    let b = permit(cx, &name, 2, cx.long_ttl()).await;
    let shown = holders(cx, &name).await;
    assert_eq!(shown.limit, Some(limit(2)));
    assert_eq!(tokens(&shown), [a.token(), b.token()], "in token order");
    assert_eq!(shown.holders[0].holder, Some(a.holder()));
    assert_eq!(shown.holders[0].label.as_ref(), Some(&label));
    assert_eq!(shown.holders[1].label, None);
    for h in &shown.holders {
        assert!(
            h.remaining > Duration::ZERO && h.remaining <= cx.long_ttl(),
            "{h:?}"
        );
    }
    release(cx, &a, "permit a").await;
    release(cx, &b, "permit b").await;
    assert_eq!(holders(cx, &name).await, Permits::default(), "all gone");
}

/// With every permit taken, the answer is `Full` with the time left of the permit that runs out
/// first (not of a later one), and nothing is granted; with a place free, a permit is granted.
pub async fn permit_full_answers_the_next_expiry(cx: &Ctx) {
    let name = cx.name("next-expiry");
    let sooner_ttl = cx.long_ttl() / 4;
    let later = permit(cx, &name, 2, cx.long_ttl()).await;
    let sooner_asked = Instant::now();
    let sooner = permit(cx, &name, 2, sooner_ttl).await;
    let full = attempt_permit(cx, &name, 2, "a full semaphore").await;
    let PermitAttempt::Full { next_expiry } = full else {
        panic!("a third permit under a limit of 2: {full:?}");
    };
    // At most the sooner permit's TTL (the later one has four times as long), and no less than
    // that TTL minus the time since it was asked for (a second for stores that count whole
    // seconds).
    let elapsed = sooner_asked.elapsed();
    assert!(
        next_expiry <= sooner_ttl && next_expiry + elapsed + Duration::from_secs(1) >= sooner_ttl,
        "next expiry {next_expiry:?}: the sooner permit was granted a TTL of {sooner_ttl:?} \
         {elapsed:?} ago"
    );
    assert_eq!(
        tokens(&holders(cx, &name).await),
        [later.token(), sooner.token()],
        "the refusal granted nothing"
    );
    release(cx, &sooner, "the sooner permit").await;
    let granted = attempt_permit(cx, &name, 2, "a place free").await;
    let PermitAttempt::Granted(next) = granted else {
        panic!("a place was free, yet: {granted:?}");
    };
    assert_eq!(next.permit_limit(), Some(limit(2)));
    assert_rises(
        next.token(),
        sooner.token(),
        "the permit granted after the refusal",
    );
    release(cx, &next, "the permit granted in the freed place").await;
    release(cx, &later, "the later permit").await;
}

/// A holder that stops renewing frees its place when its TTL runs out, and a waiter whose poll
/// interval is far longer takes it then: the store's refusal told it when to try again.
pub async fn permit_waiter_acquires_after_expiry(cx: &Ctx) {
    let name = cx.name("permit-expiry-wait");
    // A bare lease: no watchdog renews it.
    let abandoned = permit(cx, &name, 1, cx.short_ttl()).await;
    let semaphore = cx.locker().semaphore(name.clone(), 1).expect("valid");
    let within = cx.past_short_ttl() + PROMPTLY;
    let waited = Instant::now();
    let next = semaphore
        .acquire(
            AcquireOptions::new()
                .with_ttl(cx.long_ttl())
                .with_poll_interval(cx.long_ttl())
                .with_timeout(within),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the waiter on `{name}` did not get the place of a permit with a TTL of {:?} \
                 within {within:?} (its poll interval is {:?}): {e}",
                cx.short_ttl(),
                cx.long_ttl()
            )
        });
    assert!(waited.elapsed() < within);
    assert_rises(
        next.token(),
        abandoned.token(),
        "the permit after the expiry",
    );
    next.release()
        .await
        .expect("release of the permit after the expiry");
}

/// A waiter learns of a released permit without waiting out a TTL or its poll interval.
pub async fn permit_waiter_acquires_after_release(cx: &Ctx) {
    let name = cx.name("permit-handoff");
    let semaphore = cx.locker().semaphore(name.clone(), 1).expect("valid");
    let slow_poll = AcquireOptions::new()
        .with_ttl(cx.long_ttl())
        .with_poll_interval(cx.long_ttl());
    let first = semaphore
        .try_acquire(slow_poll.clone())
        .await
        .expect("try_acquire of a free semaphore")
        .expect("free");
    let first_token = first.token();
    let waiter = semaphore.acquire(slow_poll.with_timeout(Duration::from_secs(30)));
    let release = async {
        // Real time: give the waiter a moment to block; the assertion below holds either way.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let released_at = Instant::now();
        first.release().await.expect("release of the first permit");
        released_at
    };
    let Ok((second, released_at)) =
        timeout(PROMPTLY, async { tokio::join!(waiter, release) }).await
    else {
        panic!("the permit waiter on `{name}` was not woken within {PROMPTLY:?} of the release");
    };
    let second = second.expect("the waiter's permit");
    assert_rises(second.token(), first_token, "the waiter's permit");
    assert!(released_at.elapsed() < PROMPTLY);
    second
        .release()
        .await
        .expect("release of the waiter's permit");
}

/// The guard's watchdog keeps a short permit past its TTL; one left unrenewed reports its
/// loss.
pub async fn permit_guard_renews_and_reports_loss(cx: &Ctx) {
    let name = cx.name("permit-guard");
    let semaphore = cx.locker().semaphore(name.clone(), 2).expect("valid");
    // Twice the short TTL: the case outlasts it, so the watchdog must have renewed, with room
    // for a loaded machine to schedule the renewal.
    let renewed_ttl = cx.short_ttl() * 2;
    let renewed = semaphore
        .acquire(AcquireOptions::new().with_ttl(renewed_ttl).with_no_wait())
        .await
        .expect("a free permit");
    let taken = Instant::now();
    let unrenewed = semaphore
        .acquire(
            AcquireOptions::new()
                .with_ttl(cx.short_ttl())
                .without_renewal()
                .with_no_wait(),
        )
        .await
        .expect("the second permit");
    let reason = timeout(cx.short_ttl() * 10 + PROMPTLY, unrenewed.lost())
        .await
        .expect("an unrenewed permit reports its loss");
    assert!(!unrenewed.is_valid(), "lost: {reason}");
    tokio::time::sleep(cx.past_short_ttl()).await;
    let held_for = taken.elapsed();
    assert!(
        held_for > renewed_ttl,
        "the case outlasted the TTL: {held_for:?}"
    );
    assert!(
        renewed.is_valid(),
        "the renewed permit is valid after {held_for:?} (TTL {renewed_ttl:?}): {:?}",
        renewed.loss_reason()
    );
    let shown = holders(cx, &name).await;
    assert_eq!(
        tokens(&shown),
        [renewed.token()],
        "the store shows the renewed permit only"
    );
    renewed
        .release()
        .await
        .expect("release of the renewed permit");
    drop(unrenewed);
}

/// Many tasks on a small limit, some holding past the TTL without renewing: at no moment are
/// more than `limit` permits valid as their holders see them, and every grant has its own
/// token.
pub async fn permit_stress_never_more_than_limit(cx: &Ctx) {
    const LIMIT: u32 = 3;
    const TASKS: usize = 12;
    const ROUNDS: usize = 4;
    let name = cx.name("permit-stress");
    let ttl = cx.short_ttl();
    // Each grant's window as its holder saw it: from the grant's answer to its local deadline
    // (or its release, whichever came first).
    let windows: Arc<Mutex<Vec<(Instant, Instant, FencingToken)>>> = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let semaphore = cx.locker().semaphore(name.clone(), LIMIT).expect("valid");
        let windows = Arc::clone(&windows);
        tasks.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let options = AcquireOptions::new()
                    .with_ttl(ttl)
                    .without_renewal()
                    .with_timeout(ttl * 40 + Duration::from_secs(20));
                let permit = match semaphore.acquire(options).await {
                    Ok(permit) => permit,
                    Err(e) if e.is_transient() => continue,
                    Err(e) => panic!("task {task} round {round}: {e}"),
                };
                let from = Instant::now();
                // Hold for a random share of the TTL: a third of the holds outlive it.
                let hold = ttl.mul_f64(rand::random::<f64>() * 1.5);
                tokio::time::sleep(hold).await;
                let until = Instant::now().min(permit.deadline());
                windows
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((from, until, permit.token()));
                if hold < ttl {
                    let _ = permit.release().await;
                } else {
                    drop(permit);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a stress task panicked");
    }
    let windows = windows
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        windows.len() >= TASKS * ROUNDS / 2,
        "only {} of {} grants were made",
        windows.len(),
        TASKS * ROUNDS
    );
    let distinct: BTreeSet<_> = windows.iter().map(|w| w.2).collect();
    assert_eq!(
        distinct.len(),
        windows.len(),
        "every grant has its own token"
    );
    // Sweep the windows: +1 at a start, -1 at an end (ends first at equal instants).
    let mut events: Vec<(Instant, i32)> = windows
        .iter()
        .filter(|(from, until, _)| from < until)
        .flat_map(|(from, until, _)| [(*from, 1), (*until, -1)])
        .collect();
    events.sort();
    let (mut valid, mut most) = (0, 0);
    for (_, step) in events {
        valid += step;
        most = most.max(valid);
    }
    assert!(
        most <= LIMIT as i32,
        "{most} permits were valid at one moment with a limit of {LIMIT}"
    );
}
