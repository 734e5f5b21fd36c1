//! The `Locker` over the store: waiting, watchdog, loss signal, guarded runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fencelock_core::{AcquireOptions, ErrorKind, LossReason};
use tokio::time::{Instant, timeout};

use crate::Ctx;

/// How long a case gives an event that should take milliseconds.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A waiter learns of a release without waiting out the holder's TTL or a poll tick.
pub async fn waiter_acquires_after_release(cx: &Ctx) {
    let name = cx.name("handoff");
    let slow_poll = AcquireOptions::new()
        .with_ttl(cx.long_ttl())
        .with_poll_interval(cx.long_ttl());
    let first = cx
        .locker()
        .acquire(&name, slow_poll.with_no_wait())
        .await
        .unwrap();
    let waiter = {
        let locker = cx.locker();
        let name = name.clone();
        tokio::spawn(async move {
            locker
                .acquire(&name, slow_poll.with_timeout(Duration::from_secs(30)))
                .await
        })
    };
    // Real time: give the waiter a moment to block; the assertion below holds either way.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let released_at = Instant::now();
    let first_token = first.token();
    first.release().await.unwrap();
    let second = timeout(PROMPTLY, waiter)
        .await
        .expect("woken by the release, not by the 60 s TTL or poll interval")
        .unwrap()
        .unwrap();
    assert!(second.token() > first_token);
    assert!(released_at.elapsed() < PROMPTLY);
    second.release().await.unwrap();
}

/// A wait with a timeout ends with `Timeout` once it passes; the holder keeps the lock.
pub async fn waiter_times_out(cx: &Ctx) {
    let name = cx.name("timeout");
    let holder = cx
        .locker()
        .acquire(&name, AcquireOptions::new().with_ttl(cx.long_ttl()))
        .await
        .unwrap();
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let err = cx
        .locker()
        .acquire(
            &name,
            AcquireOptions::new()
                .with_ttl(cx.long_ttl())
                .with_timeout(wait),
        )
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        waited >= wait && waited < wait + PROMPTLY,
        "waited {waited:?}"
    );
    assert!(holder.is_valid());
    assert_eq!(
        cx.store().inspect(&name).await.unwrap().unwrap().token,
        holder.token()
    );
    holder.release().await.unwrap();
}

/// Dropping a waiting acquire leaves no grant behind.
pub async fn dropped_waiter_leaves_nothing_held(cx: &Ctx) {
    let name = cx.name("dropped-waiter");
    let opts = AcquireOptions::new().with_ttl(cx.long_ttl());
    let holder = cx
        .locker()
        .acquire(&name, opts.with_no_wait())
        .await
        .unwrap();
    let dropped = timeout(
        Duration::from_millis(300),
        cx.locker().acquire(&name, opts.with_wait_forever()),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the waiter was still waiting when dropped"
    );
    holder.release().await.unwrap();
    // Cleanup of a dropped waiter may run in the background; it must finish well before the
    // waiter's 60 s TTL would have freed the name.
    let started = Instant::now();
    let next = loop {
        if let Some(lease) = cx.store().try_acquire(&name, cx.long_ttl()).await.unwrap() {
            break lease;
        }
        assert!(
            started.elapsed() < PROMPTLY,
            "the dropped waiter still holds or blocks the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cx.store().release(&next).await.unwrap();
}

/// The watchdog keeps a short lease alive across several TTLs.
pub async fn watchdog_keeps_lease_alive(cx: &Ctx) {
    let name = cx.name("watchdog");
    let guard = cx.renewed_guard(&name).await;
    let first_deadline = guard.deadline();
    tokio::time::sleep(cx.short_ttl() * 3).await;
    assert!(guard.is_valid(), "renewed: {:?}", guard.loss_reason());
    assert!(
        guard.deadline() > first_deadline,
        "the deadline moved forward"
    );
    assert_eq!(
        cx.store().inspect(&name).await.unwrap().unwrap().token,
        guard.token()
    );
    assert!(
        cx.store()
            .try_acquire(&name, cx.long_ttl())
            .await
            .unwrap()
            .is_none()
    );
    guard.release().await.unwrap();
}

/// When the store loses the lease, the guard's lost signal fires within about one renew interval.
pub async fn lost_signal_fires_when_store_loses_lease(cx: &Ctx) {
    let name = cx.name("lost");
    let guard = cx.renewed_guard(&name).await;
    let cancel = guard.cancellation_token();
    assert_eq!(
        cx.store().force_release(&name).await.unwrap(),
        Some(guard.token())
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
        cx.store().force_release(&name).await.unwrap()
    };
    let (result, broken) = timeout(cx.short_ttl() + PROMPTLY, async {
        tokio::join!(guard.run(work), breaker)
    })
    .await
    .expect("guarded run returned");
    assert_eq!(broken, Some(guard.token()));
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
