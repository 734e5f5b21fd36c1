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
    let first = cx.guard(&name, slow_poll.with_no_wait()).await;
    let first_token = first.token();
    let waiter = cx.guard(&name, slow_poll.with_timeout(Duration::from_secs(30)));
    let release = async {
        // Real time: give the waiter a moment to block; the assertion below holds either way.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let released_at = Instant::now();
        cx.release_guard(first).await;
        released_at
    };
    let (second, released_at) = timeout(PROMPTLY, async { tokio::join!(waiter, release) })
        .await
        .expect("woken by the release, not by the 60 s TTL or poll interval");
    assert!(
        second.token() > first_token,
        "{} after {first_token}",
        second.token()
    );
    assert!(released_at.elapsed() < PROMPTLY);
    cx.release_guard(second).await;
}

/// A wait with a timeout ends with `Timeout` once it passes; the holder keeps the lock.
pub async fn waiter_times_out(cx: &Ctx) {
    let name = cx.name("timeout");
    let holder = cx
        .guard(&name, AcquireOptions::new().with_ttl(cx.long_ttl()))
        .await;
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let locker = cx.locker();
    // A transient error ends a wait early; the wait is then made again (its attempts cannot
    // have been granted: the holder holds throughout).
    let err = settle::settle("the waiting acquire", || {
        locker.acquire(
            &name,
            AcquireOptions::new()
                .with_ttl(cx.long_ttl())
                .with_timeout(wait),
        )
    })
    .await
    .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        waited >= wait && waited < wait + PROMPTLY,
        "waited {waited:?}"
    );
    assert!(holder.is_valid(), "{:?}", holder.loss());
    assert_eq!(
        cx.inspect(&name).await.map(|i| i.token),
        Some(holder.token())
    );
    cx.release_guard(holder).await;
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
    let holder = cx.guard(&name, opts.with_no_wait()).await;
    let dropped = timeout(
        Duration::from_millis(300),
        cx.locker().acquire(&name, opts.with_wait_forever()),
    )
    .await;
    let round_result = match dropped {
        Err(_elapsed) => Ok(()),
        Ok(Err(e)) if e.is_transient() => Err(format!("the waiter ended before its drop: {e}")),
        Ok(other) => panic!("the waiter was still waiting when dropped, yet: {other:?}"),
    };
    cx.release_guard(holder).await;
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
                    return Err(format!("held after an attempt that failed: {e}"));
                }
                assert!(
                    started.elapsed() < PROMPTLY,
                    "the dropped waiter still holds or blocks the lock: {:?}",
                    cx.inspect(&name).await
                );
            }
            Err(e) if e.is_transient() => failed = Some(e),
            Err(e) => panic!("acquire after the drop: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cx.release(&next).await;
    Ok(())
}

/// The watchdog keeps a short lease alive across several TTLs.
pub async fn watchdog_keeps_lease_alive(cx: &Ctx) {
    let name = cx.name("watchdog");
    let guard = cx.renewed_guard(&name).await;
    let first_deadline = guard.deadline();
    tokio::time::sleep(cx.short_ttl() * 3).await;
    assert!(guard.is_valid(), "renewed: {:?}", guard.loss());
    assert!(
        guard.deadline() > first_deadline,
        "the deadline moved forward"
    );
    assert_eq!(
        cx.inspect(&name).await.map(|i| i.token),
        Some(guard.token())
    );
    let other = cx.try_acquire(&name, cx.long_ttl()).await;
    assert!(
        other.is_none(),
        "granted while {} holds: {other:?}",
        guard.token()
    );
    cx.release_guard(guard).await;
}

/// When the store loses the lease, the guard's lost signal fires within about one renew interval.
pub async fn lost_signal_fires_when_store_loses_lease(cx: &Ctx) {
    let name = cx.name("lost");
    let guard = cx.renewed_guard(&name).await;
    let cancel = guard.cancellation_token();
    let broken = cx.force_release(&name).await;
    assert!(
        broken.broke(guard.token()),
        "{broken:?}, held by {}",
        guard.token()
    );
    let reason = timeout(cx.short_ttl() + PROMPTLY, guard.lost())
        .await
        .expect("lost signal fired");
    assert!(
        matches!(reason, LossReason::NotHeld | LossReason::Superseded { .. }),
        "the store's verdict, not the deadline: {reason:?}"
    );
    assert!(cancel.is_cancelled());
    assert!(!guard.is_valid());
    assert_eq!(guard.check().unwrap_err().kind(), ErrorKind::LeaseLost);
    assert_eq!(
        guard.release().await.unwrap_err().kind(),
        ErrorKind::LeaseLost,
        "release reports the loss"
    );
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
    let (result, broken) = timeout(cx.short_ttl() + PROMPTLY, async {
        tokio::join!(guard.run(work), breaker)
    })
    .await
    .expect("guarded run returned");
    assert!(
        broken.broke(guard.token()),
        "{broken:?}, held by {}",
        guard.token()
    );
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LostDuringWork, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("token {}", guard.token())),
        "{err}"
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the work future was cancelled"
    );
}
