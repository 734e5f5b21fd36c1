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
        .unwrap_or_else(|e| panic!("Locker::acquire of free `{name}`: {e}"));
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
    first
        .release()
        .await
        .unwrap_or_else(|e| panic!("release of the first holder (token {first_token}): {e}"));
    let second = match timeout(PROMPTLY, waiter).await {
        Err(_) => panic!(
            "the waiter on `{name}` was not woken within {PROMPTLY:?} of the release of token \
             {first_token} (watch_released / acquire_waiting must wake it, not the 60 s TTL or \
             poll interval)"
        ),
        Ok(joined) => joined
            .expect("the waiter's task")
            .unwrap_or_else(|e| panic!("the waiter's Locker::acquire after the release: {e}")),
    };
    super::assert_rises(second.token(), first_token, "the waiter's grant");
    let took = released_at.elapsed();
    assert!(
        took < PROMPTLY,
        "the waiter was granted {took:?} after the release"
    );
    second
        .release()
        .await
        .unwrap_or_else(|e| panic!("release of the waiter's grant: {e}"));
}

/// A wait with a timeout ends with `Timeout` once it passes; the holder keeps the lock.
pub async fn waiter_times_out(cx: &Ctx) {
    let name = cx.name("timeout");
    let holder = cx
        .locker()
        .acquire(&name, AcquireOptions::new().with_ttl(cx.long_ttl()))
        .await
        .unwrap_or_else(|e| panic!("Locker::acquire of free `{name}`: {e}"));
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let outcome = cx
        .locker()
        .acquire(
            &name,
            AcquireOptions::new()
                .with_ttl(cx.long_ttl())
                .with_timeout(wait),
        )
        .await;
    let waited = started.elapsed();
    match outcome {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::Timeout,
            "acquire_waiting with a {wait:?} timeout on held `{name}`: {e}"
        ),
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
    holder
        .release()
        .await
        .unwrap_or_else(|e| panic!("release of the holder (token {token}): {e}"));
}

/// Dropping a waiting acquire leaves no grant behind.
pub async fn dropped_waiter_leaves_nothing_held(cx: &Ctx) {
    let name = cx.name("dropped-waiter");
    let opts = AcquireOptions::new().with_ttl(cx.long_ttl());
    let holder = cx
        .locker()
        .acquire(&name, opts.with_no_wait())
        .await
        .unwrap_or_else(|e| panic!("Locker::acquire of free `{name}`: {e}"));
    let dropped = timeout(
        Duration::from_millis(300),
        cx.locker().acquire(&name, opts.with_wait_forever()),
    )
    .await;
    if let Ok(outcome) = dropped {
        panic!(
            "acquire_waiting on held `{name}` returned before it was dropped: {:?}",
            outcome.map(|g| g.token())
        );
    }
    let holder_token = holder.token();
    holder
        .release()
        .await
        .unwrap_or_else(|e| panic!("release of the holder (token {holder_token}): {e}"));
    // Cleanup of a dropped waiter may run in the background; it must finish well before the
    // waiter's 60 s TTL would have freed the name.
    let started = Instant::now();
    let next = loop {
        match cx.store().try_acquire(&name, cx.long_ttl()).await {
            Ok(Some(lease)) => break lease,
            Ok(None) => {}
            Err(e) => panic!("try_acquire on `{name}` after the holder released: {e}"),
        }
        let shown = super::inspect_token(cx, &name, "while the dropped waiter blocks").await;
        assert!(
            started.elapsed() < PROMPTLY,
            "try_acquire on `{name}` still refused {:?} after the holder (token {holder_token}) \
             released: the dropped waiter holds or blocks the lock (inspect shows {shown:?})",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    super::release(cx, &next, "after the dropped waiter").await;
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
    guard
        .release()
        .await
        .unwrap_or_else(|e| panic!("release of the renewed guard (token {token}): {e}"));
}

/// When the store loses the lease, the guard's lost signal fires within about one renew interval.
pub async fn lost_signal_fires_when_store_loses_lease(cx: &Ctx) {
    let name = cx.name("lost");
    let guard = cx.renewed_guard(&name).await;
    let cancel = guard.cancellation_token();
    let broken = cx
        .store()
        .force_release(&name)
        .await
        .unwrap_or_else(|e| panic!("force_release of `{name}`: {e}"));
    assert_eq!(
        broken,
        Some(guard.token()),
        "force_release of `{name}` must report the guard's token (left: reported, right: the \
         guard's)"
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
        cx.store()
            .force_release(&name)
            .await
            .unwrap_or_else(|e| panic!("force_release of `{name}`: {e}"))
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
    assert_eq!(
        broken,
        Some(guard.token()),
        "force_release of `{name}` must report the guard's token (left: reported, right: the \
         guard's)"
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
