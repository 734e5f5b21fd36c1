//! The `Locker` over the store: waiting, watchdog, loss signal, guarded runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fencelock_core::{AcquireOptions, ErrorKind, LossReason};
use tokio::time::{Instant, timeout};

use crate::{Ctx, settle};

/// How long a case gives an event that should take milliseconds.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A waiter learns of a release without waiting out the holder's TTL or a poll tick.
pub async fn waiter_acquires_after_release(cx: &Ctx) {
    let name = cx.name("handoff");
    let slow_poll = AcquireOptions::new()
        .with_ttl(cx.long_ttl())
        .with_poll_interval(cx.long_ttl());
    let first = cx
        .guard_as(
            &name,
            slow_poll.clone().with_no_wait(),
            &format!("Locker::acquire of free `{name}`"),
        )
        .await;
    let first_token = first.token();
    let waiter_what = format!("the waiter's Locker::acquire of `{name}` after the release");
    let waiter = cx.guard_as(
        &name,
        slow_poll.with_timeout(Duration::from_secs(30)),
        &waiter_what,
    );
    let release_what = format!("release of the first holder (token {first_token})");
    let release = async {
        // Real time: give the waiter a moment to block; the assertion below holds either way.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let released_at = Instant::now();
        cx.release_guard_as(first, &release_what).await;
        released_at
    };
    let Ok((second, released_at)) =
        timeout(PROMPTLY, async { tokio::join!(waiter, release) }).await
    else {
        panic!(
            "the waiter on `{name}` was not woken within {PROMPTLY:?} of the release of token \
             {first_token} (watch_released / acquire_waiting must wake it, not the 60 s TTL or \
             poll interval)"
        );
    };
    super::assert_rises(second.token(), first_token, "the waiter's grant");
    let took = released_at.elapsed();
    assert!(
        took < PROMPTLY,
        "the waiter was granted {took:?} after the release"
    );
    let what = format!("release of the waiter's grant (token {})", second.token());
    cx.release_guard_as(second, &what).await;
}

/// A wait with a timeout ends with `Timeout` once it passes; the holder keeps the lock.
pub async fn waiter_times_out(cx: &Ctx) {
    let name = cx.name("timeout");
    let holder = cx
        .guard_as(
            &name,
            AcquireOptions::new().with_ttl(cx.long_ttl()),
            &format!("Locker::acquire of free `{name}`"),
        )
        .await;
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let locker = cx.locker();
    let options = AcquireOptions::new()
        .with_ttl(cx.long_ttl())
        .with_timeout(wait);
    // A transient error ends a wait early; the wait is then made again (its attempts cannot
    // have been granted: the holder holds throughout).
    let what = format!("acquire_waiting with a {wait:?} timeout on held `{name}`");
    let outcome = settle::settle(&what, || locker.acquire(&name, options.clone())).await;
    let waited = started.elapsed();
    match outcome {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Timeout, "{what}: {e}"),
        Ok(guard) => panic!(
            "acquire_waiting on `{name}` granted token {} while token {} holds it",
            guard.token(),
            holder.token()
        ),
    }
    assert!(
        waited >= wait && waited < wait + PROMPTLY,
        "acquire_waiting with a {wait:?} timeout returned after {waited:?}"
    );
    assert!(
        holder.is_valid(),
        "the holder's guard lost its lease while another waited: {:?}",
        holder.loss_reason()
    );
    let token = holder.token();
    super::expect_holder(cx, &name, Some(token), "after the wait timed out").await;
    cx.release_guard_as(holder, &format!("release of the holder (token {token})"))
        .await;
}

/// Dropping a waiting acquire leaves no grant behind.
///
/// A grant the dropped waiter left behind and a grant of this case's own whose reply was lost
/// look alike, so a round in which an attempt failed transiently proves nothing: then the case
/// runs another round on a fresh name, up to `ROUNDS` times.
pub async fn dropped_waiter_leaves_nothing_held(cx: &Ctx) {
    const ROUNDS: u32 = 3;
    for round in 1..=ROUNDS {
        match dropped_waiter_round(cx, round).await {
            Ok(()) => return,
            Err(why) => eprintln!("round {round} proved nothing: {why}"),
        }
    }
    panic!("each of {ROUNDS} rounds had an attempt that failed transiently");
}

/// One round of [`dropped_waiter_leaves_nothing_held`]: `Err` says why it proved nothing.
async fn dropped_waiter_round(cx: &Ctx, round: u32) -> Result<(), String> {
    let name = cx.name(&format!("dropped-waiter-{round}"));
    let opts = AcquireOptions::new().with_ttl(cx.long_ttl());
    let holder = cx
        .guard_as(
            &name,
            opts.clone().with_no_wait(),
            &format!("Locker::acquire of free `{name}`"),
        )
        .await;
    let dropped = timeout(
        Duration::from_millis(300),
        cx.locker().acquire(&name, opts.with_wait_forever()),
    )
    .await;
    let round_result = match dropped {
        Err(_elapsed) => Ok(()),
        Ok(Err(e)) if e.is_transient() => Err(format!(
            "acquire_waiting on held `{name}` ended with a transient error before its drop: {e}"
        )),
        Ok(outcome) => panic!(
            "acquire_waiting on held `{name}` returned before it was dropped: {:?}",
            outcome.map(|g| g.token())
        ),
    };
    let holder_token = holder.token();
    cx.release_guard_as(
        holder,
        &format!("release of the holder (token {holder_token})"),
    )
    .await;
    round_result?;
    // Cleanup of a dropped waiter may run in the background; it must finish well before the
    // waiter's 60 s TTL would have freed the name.
    let started = Instant::now();
    let mut failed = None;
    let next = loop {
        match cx.store().try_acquire(&name, cx.long_ttl()).await {
            Ok(Some(lease)) => break lease,
            Ok(None) => {
                if let Some(e) = failed {
                    // Perhaps held by that attempt's own grant.
                    return Err(format!(
                        "try_acquire on `{name}` refused after an attempt that failed \
                         transiently (its own grant may hold the name): {e}"
                    ));
                }
                let shown =
                    super::inspect_token(cx, &name, "while the dropped waiter blocks").await;
                assert!(
                    started.elapsed() < PROMPTLY,
                    "try_acquire on `{name}` still refused {:?} after the holder (token \
                     {holder_token}) released: the dropped waiter holds or blocks the lock \
                     (inspect shows {shown:?})",
                    started.elapsed()
                );
            }
            Err(e) if e.is_transient() => {
                assert!(
                    started.elapsed() < settle::PATIENCE,
                    "try_acquire on `{name}` after the holder released: no definite answer \
                     in {:?}; last: {e}",
                    started.elapsed()
                );
                failed = Some(e);
            }
            Err(e) => panic!("try_acquire on `{name}` after the holder released: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cx.saw(&name, next.token());
    super::release(cx, &next, "after the dropped waiter").await;
    Ok(())
}

/// The watchdog keeps a short lease alive across several TTLs.
pub async fn watchdog_keeps_lease_alive(cx: &Ctx) {
    let name = cx.name("watchdog");
    let guard = cx.renewed_guard(&name).await;
    let first_deadline = guard.deadline();
    let held_for = cx.short_ttl() * 3;
    tokio::time::sleep(held_for).await;
    assert!(
        guard.is_valid(),
        "the watchdog did not keep `{name}` (TTL {:?}) for {held_for:?}: {:?}",
        cx.short_ttl(),
        guard.loss_reason()
    );
    assert!(
        guard.deadline() > first_deadline,
        "the watchdog's renew_many did not move the deadline on in {held_for:?}"
    );
    let when = format!("after the watchdog renewed for {held_for:?}");
    super::expect_holder(cx, &name, Some(guard.token()), &when).await;
    super::expect_refused(cx, &name, guard.token(), &when).await;
    let token = guard.token();
    cx.release_guard_as(
        guard,
        &format!("release of the renewed guard (token {token})"),
    )
    .await;
}

/// When the store loses the lease, the guard's lost signal fires within about one renew interval.
pub async fn lost_signal_fires_when_store_loses_lease(cx: &Ctx) {
    let name = cx.name("lost");
    let guard = cx.renewed_guard(&name).await;
    let cancel = guard.cancellation_token();
    let broken = cx.force_release(&name).await;
    assert!(
        broken.broke(guard.token()),
        "force_release of `{name}` must report the guard's token {}: it reported {broken:?}",
        guard.token()
    );
    let Ok(reason) = timeout(cx.short_ttl() + PROMPTLY, guard.lost()).await else {
        panic!(
            "the lost signal of token {} did not fire within {:?} of force_release (the \
             watchdog's renew_many must report LeaseLost)",
            guard.token(),
            cx.short_ttl() + PROMPTLY
        );
    };
    assert!(
        matches!(reason, LossReason::NotHeld | LossReason::Superseded { .. }),
        "renew_many after force_release must answer the store's verdict (NotHeld or \
         Superseded), not wait for the deadline: the guard reports {reason:?}"
    );
    assert!(cancel.is_cancelled(), "the cancellation token did not fire");
    assert!(!guard.is_valid(), "the guard still says valid after loss");
    match guard.check() {
        Err(e) => assert_eq!(e.kind(), ErrorKind::LeaseLost, "LockGuard::check: {e}"),
        Ok(token) => panic!("LockGuard::check after loss returned token {token}"),
    }
    match guard.release().await {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::LeaseLost,
            "release after loss must report the loss: {e}"
        ),
        Ok(()) => panic!("release after loss returned Ok: the loss was not reported"),
    }
}

/// Guarded work is cancelled when the lease is lost, with an error carrying the token.
pub async fn guarded_run_cancels_on_loss(cx: &Ctx) {
    let name = cx.name("guarded");
    let guard = cx.renewed_guard(&name).await;
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let work = {
        let flag = SetOnDrop(dropped.clone());
        async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    };
    let breaker = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cx.force_release(&name).await
    };
    let limit = cx.short_ttl() + PROMPTLY;
    let Ok((result, broken)) =
        timeout(limit, async { tokio::join!(guard.run(work), breaker) }).await
    else {
        panic!(
            "LockGuard::run of token {} did not return within {limit:?} of force_release",
            guard.token()
        );
    };
    assert!(
        broken.broke(guard.token()),
        "force_release of `{name}` must report the guard's token {}: it reported {broken:?}",
        guard.token()
    );
    let err = match result {
        Err(e) => e,
        Ok(()) => panic!("LockGuard::run returned the work's output after the lease was lost"),
    };
    assert_eq!(
        err.kind(),
        ErrorKind::LostDuringWork,
        "LockGuard::run after loss: {err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("token {}", guard.token())),
        "LockGuard::run's error must name token {}: {err}",
        guard.token()
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "LockGuard::run returned but the work future was not dropped"
    );
}
