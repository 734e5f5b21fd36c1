//! Client logic over the in-memory store, under paused tokio time: the watchdog, the lost
//! signal, guarded runs, cancellation and regression detection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use fencelock_core::{
    AcquireOptions, Error, ErrorKind, FencingToken, Lease, LeaseInfo, LeaseStore, LockName, Locker,
    LossReason, MemoryLeaseStore, Operation, TtlLimits, async_trait,
};
use tokio::time::{Instant, sleep, timeout};

/// What the wrapped store does on renew.
const RENEW_OK: u8 = 0;
const RENEW_LOST: u8 = 1;
const RENEW_UNAVAILABLE: u8 = 2;
const RENEW_PANIC: u8 = 3;

/// The memory store with switchable renew failures and a token offset, to drive the client
/// through the failures a networked store produces.
#[derive(Debug, Default)]
struct Faulty {
    inner: MemoryLeaseStore,
    renew_mode: AtomicU8,
    renews: AtomicU32,
    /// When set, tokens are reported as 1000 − real token: they go down.
    regress: AtomicBool,
    /// `renew_many` calls, and the leases they carried.
    batches: AtomicU32,
    batched: AtomicU32,
    /// When set, `renew_many` answers one result too few.
    short_answers: AtomicBool,
}

#[async_trait]
impl LeaseStore for Faulty {
    fn backend(&self) -> &'static str {
        "faulty-memory"
    }
    fn ttl_limits(&self) -> TtlLimits {
        self.inner.ttl_limits()
    }
    async fn try_acquire(&self, name: &LockName, ttl: Duration) -> Result<Option<Lease>, Error> {
        let lease = self.inner.try_acquire(name, ttl).await?;
        Ok(lease.map(|l| {
            if self.regress.load(Ordering::SeqCst) {
                let token = FencingToken::new(1000 - l.token().get());
                fencelock_core::backend::granted_lease(
                    l.name().clone(),
                    token,
                    l.holder(),
                    l.ttl(),
                    Instant::now(),
                )
            } else {
                l
            }
        }))
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        self.renews.fetch_add(1, Ordering::SeqCst);
        match self.renew_mode.load(Ordering::SeqCst) {
            RENEW_LOST => Err(Error::lost(lease, LossReason::NotHeld)),
            RENEW_UNAVAILABLE => Err(Error::unavailable(
                "faulty-memory",
                Operation::Renew,
                std::io::Error::other("connection refused"),
            )),
            RENEW_PANIC => panic!("renew exploded"),
            _ => self.inner.renew(lease, ttl).await,
        }
    }
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.batched
            .fetch_add(leases.len() as u32, Ordering::SeqCst);
        let mut answers =
            futures::future::join_all(leases.iter().map(|lease| self.renew(lease, ttl))).await;
        if self.short_answers.load(Ordering::SeqCst) {
            answers.pop();
        }
        answers
    }
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        if self.regress.load(Ordering::SeqCst) {
            let real = FencingToken::new(1000 - lease.token().get());
            let lease = fencelock_core::backend::granted_lease(
                lease.name().clone(),
                real,
                lease.holder(),
                lease.ttl(),
                Instant::now(),
            );
            return self.inner.release(&lease).await;
        }
        self.inner.release(lease).await
    }
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        self.inner.inspect(name).await
    }
    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        self.inner.force_release(name).await
    }
    async fn watch_released(
        &self,
        name: &LockName,
    ) -> Result<Option<fencelock_core::backend::ReleaseWatch>, Error> {
        self.inner.watch_released(name).await
    }
}

fn setup() -> (Arc<Faulty>, Locker) {
    let store = Arc::new(Faulty::default());
    let locker = Locker::from_arc(store.clone());
    (store, locker)
}

const TTL: Duration = Duration::from_secs(3);
const EVERY: Duration = Duration::from_secs(1);

fn opts() -> AcquireOptions {
    AcquireOptions::new().with_ttl(TTL).with_no_wait()
}

#[tokio::test(start_paused = true)]
async fn watchdog_renews_across_many_ttls() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    sleep(TTL * 10).await;
    assert!(guard.is_valid(), "{:?}", guard.loss_reason());
    let renews = store.renews.load(Ordering::SeqCst);
    assert!(
        (29..=31).contains(&renews),
        "renewed every TTL/3: {renews} times in 10 TTLs"
    );
    assert!(guard.deadline() > Instant::now());
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failing_store_fires_lost_within_one_renew_interval() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    store.renew_mode.store(RENEW_LOST, Ordering::SeqCst);
    let started = Instant::now();
    let reason = guard.lost().await;
    assert_eq!(reason, LossReason::NotHeld);
    // The renewal waits at most 2 ms for others to join its batch.
    assert!(
        started.elapsed() <= EVERY + Duration::from_millis(2),
        "lost after {:?}",
        started.elapsed()
    );
    assert!(!guard.is_valid());
    assert!(guard.cancellation_token().is_cancelled());
    assert_eq!(
        guard.release().await.unwrap_err().kind(),
        ErrorKind::LeaseLost
    );
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_only_until_the_local_deadline() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    let deadline = guard.deadline();
    store.renew_mode.store(RENEW_UNAVAILABLE, Ordering::SeqCst);
    let reason = guard.lost().await;
    assert_eq!(reason, LossReason::DeadlineReached);
    assert!(Instant::now() >= deadline, "not before the deadline");
    assert!(
        Instant::now() < deadline + Duration::from_millis(10),
        "at once after it"
    );
    assert!(store.renews.load(Ordering::SeqCst) > 3, "retried");
}

#[tokio::test(start_paused = true)]
async fn a_transient_error_followed_by_recovery_keeps_the_lease() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    store.renew_mode.store(RENEW_UNAVAILABLE, Ordering::SeqCst);
    sleep(EVERY + Duration::from_millis(500)).await;
    store.renew_mode.store(RENEW_OK, Ordering::SeqCst);
    sleep(TTL * 3).await;
    assert!(guard.is_valid(), "{:?}", guard.loss_reason());
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_watchdog_counts_as_loss() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    store.renew_mode.store(RENEW_PANIC, Ordering::SeqCst);
    let reason = timeout(EVERY * 2, guard.lost()).await.expect("fired");
    assert!(
        matches!(&reason, LossReason::WatchdogFailed { message } if message.contains("renew exploded")),
        "{reason:?}"
    );
    assert!(!guard.is_valid());
}

#[tokio::test(start_paused = true)]
async fn without_renewal_the_guard_expires_at_its_deadline() {
    let (store, locker) = setup();
    let guard = locker
        .acquire("job", opts().without_renewal())
        .await
        .unwrap();
    let deadline = guard.deadline();
    assert_eq!(guard.lost().await, LossReason::DeadlineReached);
    assert!(Instant::now() >= deadline);
    assert_eq!(store.renews.load(Ordering::SeqCst), 0);
    assert_eq!(guard.check().unwrap_err().kind(), ErrorKind::LeaseLost);
}

#[tokio::test(start_paused = true)]
async fn guarded_run_cancels_its_future_on_loss() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    let token = guard.token();
    store.renew_mode.store(RENEW_LOST, Ordering::SeqCst);
    let finished = Arc::new(AtomicBool::new(false));
    let work = {
        let finished = finished.clone();
        async move {
            sleep(TTL * 100).await;
            finished.store(true, Ordering::SeqCst);
        }
    };
    let err = guard.run(work).await.unwrap_err();
    match err {
        Error::LostDuringWork {
            token: t, reason, ..
        } => {
            assert_eq!(t, token);
            assert_eq!(reason, LossReason::NotHeld);
        }
        other => panic!("expected LostDuringWork, got {other}"),
    }
    assert!(!finished.load(Ordering::SeqCst), "the work never completed");
}

#[tokio::test(start_paused = true)]
async fn with_lock_runs_work_with_the_token_and_releases() {
    let (store, locker) = setup();
    let seen = locker
        .with_lock("job", opts(), |token| async move { token })
        .await
        .unwrap();
    assert_eq!(seen, FencingToken::new(1));
    let name = LockName::new("job").unwrap();
    assert!(
        store.inspect(&name).await.unwrap().is_none(),
        "released after the work"
    );
}

#[tokio::test(start_paused = true)]
async fn compensation_hook_runs_on_loss_but_not_on_release() {
    let (store, locker) = setup();
    let fired = Arc::new(AtomicU32::new(0));
    let released = locker.acquire("a", opts()).await.unwrap();
    let f = fired.clone();
    released.on_lost(move |_| {
        f.fetch_add(1, Ordering::SeqCst);
    });
    released.release().await.unwrap();
    let lost = locker.acquire("b", opts()).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    lost.on_lost(move |reason| {
        let _ = tx.send(reason);
    });
    store.renew_mode.store(RENEW_LOST, Ordering::SeqCst);
    assert_eq!(rx.await.unwrap(), LossReason::NotHeld);
    assert_eq!(
        fired.load(Ordering::SeqCst),
        0,
        "a released guard's hook never runs"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_an_acquire_mid_wait_leaves_no_lease_held() {
    let store = MemoryLeaseStore::new();
    let locker = Locker::new(store.clone());
    let holder = locker.acquire("job", opts()).await.unwrap();
    let waiting = timeout(
        Duration::from_secs(5),
        locker.acquire(
            "job",
            AcquireOptions::new().with_ttl(TTL).with_wait_forever(),
        ),
    )
    .await;
    assert!(waiting.is_err(), "was still waiting");
    holder.release().await.unwrap();
    // Give any background task every chance to (wrongly) acquire.
    sleep(TTL * 2).await;
    let name = LockName::new("job").unwrap();
    assert!(
        store.inspect(&name).await.unwrap().is_none(),
        "nothing held"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_woken_by_release_not_by_polling() {
    let store = MemoryLeaseStore::new();
    let locker = Locker::new(store.clone());
    let holder = locker
        .acquire("job", opts().with_ttl(Duration::from_secs(600)))
        .await
        .unwrap();
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            let opts = AcquireOptions::new()
                .with_ttl(TTL)
                .with_poll_interval(Duration::from_secs(600));
            locker.acquire("job", opts).await
        })
    };
    sleep(Duration::from_secs(10)).await;
    let released_at = Instant::now();
    holder.release().await.unwrap();
    let guard = waiter.await.unwrap().unwrap();
    assert!(
        released_at.elapsed() < Duration::from_millis(5),
        "woken at once"
    );
    assert_eq!(guard.token(), FencingToken::new(2));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_guard_releases_in_the_background() {
    let store = MemoryLeaseStore::new();
    let locker = Locker::new(store.clone());
    drop(locker.acquire("job", opts()).await.unwrap());
    // The release runs on a spawned task; let it run.
    tokio::task::yield_now().await;
    sleep(Duration::from_millis(1)).await;
    let name = LockName::new("job").unwrap();
    assert!(store.inspect(&name).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn token_regression_is_an_error_and_the_grant_is_not_used() {
    let (store, locker) = setup();
    store.regress.store(true, Ordering::SeqCst);
    let first = locker.acquire("job", opts()).await.unwrap();
    assert_eq!(first.token(), FencingToken::new(999));
    first.release().await.unwrap();
    let err = locker.acquire("job", opts()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenRegression, "{err}");
    assert!(
        err.to_string()
            .contains("token 998 after this client already saw token 999"),
        "{err}"
    );
    assert_eq!(
        locker.last_token(&LockName::new("job").unwrap()),
        Some(FencingToken::new(999))
    );
}

#[tokio::test(start_paused = true)]
async fn contention_is_a_value_or_a_typed_timeout() {
    let (_store, locker) = setup();
    let _held = locker.acquire("job", opts()).await.unwrap();
    assert!(locker.try_acquire("job", opts()).await.unwrap().is_none());
    let started = Instant::now();
    let err = locker
        .acquire("job", opts().with_timeout(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn bad_options_are_rejected_before_anything_is_sent() {
    let (store, locker) = setup();
    let cases = [
        opts().with_ttl(Duration::ZERO),
        opts().with_ttl(Duration::from_nanos(1)),
        opts().with_ttl(Duration::MAX),
        opts().with_renew_interval(Duration::ZERO),
        opts().with_renew_interval(TTL / 2),
        opts().with_poll_interval(Duration::ZERO),
    ];
    for o in cases {
        let err = locker.acquire("job", o).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{o:?}: {err}");
    }
    let name = LockName::new("job").unwrap();
    assert!(store.inspect(&name).await.unwrap().is_none());
    // Huge timeouts do not overflow.
    let held = locker.acquire("job", opts()).await.unwrap();
    let waiter = locker.acquire("job", opts().with_timeout(Duration::MAX));
    assert!(timeout(Duration::from_secs(1), waiter).await.is_err());
    held.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_cancellation_token_fires_with_the_deadline_not_after_it() {
    let (_store, locker) = setup();
    let guard = locker
        .acquire("job", opts().without_renewal())
        .await
        .unwrap();
    let token = guard.cancellation_token();
    assert_eq!(guard.lost().await, LossReason::DeadlineReached);
    assert!(token.is_cancelled(), "fired by the time lost() returned");
}

#[tokio::test(start_paused = true)]
async fn renewals_due_together_go_to_the_store_as_one_batch() {
    let (store, locker) = setup();
    let mut guards = Vec::new();
    for i in 0..50 {
        guards.push(locker.acquire(format!("job-{i}"), opts()).await.unwrap());
    }
    sleep(EVERY * 3 + EVERY / 2).await;
    for guard in &guards {
        assert!(guard.is_valid(), "{:?}", guard.loss_reason());
    }
    assert_eq!(store.batched.load(Ordering::SeqCst), 150, "3 renewals each");
    assert_eq!(store.renews.load(Ordering::SeqCst), 150);
    assert_eq!(
        store.batches.load(Ordering::SeqCst),
        3,
        "one batch per round"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_lost_in_a_batch_is_reported_for_that_guard_alone() {
    let (store, locker) = setup();
    let kept = locker.acquire("kept", opts()).await.unwrap();
    let broken = locker.acquire("broken", opts()).await.unwrap();
    store
        .force_release(&LockName::new("broken").unwrap())
        .await
        .unwrap();
    assert_eq!(
        timeout(EVERY * 2, broken.lost()).await.expect("fired"),
        LossReason::NotHeld
    );
    sleep(TTL * 2).await;
    assert!(kept.is_valid(), "{:?}", kept.loss_reason());
    // The first batch carried both leases, every later one `kept` alone.
    assert_eq!(
        store.batched.load(Ordering::SeqCst),
        store.batches.load(Ordering::SeqCst) + 1,
        "renewed together once"
    );
    kept.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_batch_answered_wrongly_counts_as_loss_for_every_guard_in_it() {
    let (store, locker) = setup();
    let a = locker.acquire("a", opts()).await.unwrap();
    let b = locker.acquire("b", opts()).await.unwrap();
    store.short_answers.store(true, Ordering::SeqCst);
    for guard in [&a, &b] {
        let reason = timeout(EVERY * 2, guard.lost()).await.expect("fired");
        assert!(
            matches!(&reason, LossReason::WatchdogFailed { message } if message.contains("1 results for 2 leases")),
            "{reason:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_batching_each_watchdog_renews_alone() {
    let (store, locker) = setup();
    let locker = locker.with_renewal_batching(false);
    assert!(!locker.renewal_batching());
    let a = locker.acquire("a", opts()).await.unwrap();
    let b = locker.acquire("b", opts()).await.unwrap();
    sleep(EVERY * 2 + EVERY / 2).await;
    assert!(a.is_valid() && b.is_valid());
    assert_eq!(store.renews.load(Ordering::SeqCst), 4);
    assert_eq!(store.batches.load(Ordering::SeqCst), 0);
}

#[test]
fn a_locker_outlives_the_runtime_its_batcher_started_on() {
    let (store, locker) = setup();
    for round in 0..2 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let guard = locker.acquire("job", opts()).await.unwrap();
            sleep(EVERY * 2 + EVERY / 2).await;
            assert!(guard.is_valid(), "round {round}: {:?}", guard.loss_reason());
            guard.release().await.unwrap();
        });
    }
    assert_eq!(
        store.batches.load(Ordering::SeqCst),
        4,
        "2 renewals per round"
    );
}

/// Tasks alive on the current runtime.
fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (in paused time, up to `within`) for the runtime's tasks to drop to `n`; returns how
/// many are left.
async fn settle_to(n: usize, within: Duration) -> usize {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if tasks() <= n {
            break;
        }
        sleep(Duration::from_millis(1)).await;
    }
    tasks()
}

#[tokio::test(start_paused = true)]
async fn guards_share_one_driver_task_instead_of_one_task_each() {
    let (_store, locker) = setup();
    let held: Vec<_> = futures::future::join_all((0..100).map(|i| {
        let locker = locker.clone();
        async move { locker.acquire(format!("held-{i}"), opts()).await.unwrap() }
    }))
    .await;
    for i in 0..1_000 {
        let guard = locker.acquire(format!("cycle-{i}"), opts()).await.unwrap();
        guard.release().await.unwrap();
    }
    assert_eq!(tasks(), 1, "one driver for 100 held guards and 1000 cycles");
    sleep(EVERY + EVERY / 2).await;
    assert!(held.iter().all(fencelock_core::LockGuard::is_valid));
    assert_eq!(
        settle_to(2, Duration::from_millis(10)).await,
        2,
        "the driver and the renewal batcher, once renewals ran"
    );
}

#[tokio::test(start_paused = true)]
async fn guards_outlive_their_locker_and_its_driver_ends_after_them() {
    let (store, locker) = setup();
    let guard = locker.acquire("job", opts()).await.unwrap();
    drop(locker);
    sleep(TTL * 2 + EVERY / 2).await;
    assert!(guard.is_valid(), "{:?}", guard.loss_reason());
    assert_eq!(
        store.renews.load(Ordering::SeqCst),
        6,
        "renewed every TTL/3"
    );
    guard.release().await.unwrap();
    // The driver notices at the released watchdog's next due time; the batcher ends with it.
    assert_eq!(
        settle_to(0, EVERY + Duration::from_millis(10)).await,
        0,
        "nothing left running"
    );
}

#[test]
fn a_guard_keeps_its_watchdog_when_another_runtime_sharing_its_locker_shuts_down() {
    let (store, locker) = setup();
    let runtime = |paused| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(paused)
            .build()
            .unwrap()
    };
    // Runtime `a` takes a lock first (its driver starts there) and holds it.
    let a = runtime(false);
    let held_on_a = a.block_on(locker.acquire("on-a", opts())).unwrap();
    let b = runtime(true);
    let guard = b.block_on(async {
        let guard = locker.acquire("on-b", opts()).await.unwrap();
        sleep(EVERY + EVERY / 2).await;
        assert!(guard.is_valid(), "{:?}", guard.loss_reason());
        assert_eq!(store.renews.load(Ordering::SeqCst), 1, "renewed on b");
        guard
    });
    // `a` shuts down with its guard held: that guard's watchdog is gone, b's is not.
    drop(a);
    assert!(!held_on_a.is_valid(), "a's guard reports its watchdog gone");
    b.block_on(async {
        sleep(TTL * 2 + EVERY / 2).await;
        assert!(guard.is_valid(), "{:?}", guard.loss_reason());
        assert_eq!(
            store.renews.load(Ordering::SeqCst),
            7,
            "renewed on b all along"
        );
        guard.release().await.unwrap();
    });
}

#[tokio::test(start_paused = true)]
async fn the_token_memory_keeps_the_latest_names_and_stays_bounded() {
    let (_store, locker) = setup();
    let locker = locker.with_token_memory(4);
    for i in 0..10 {
        let guard = locker.acquire(format!("job-{i}"), opts()).await.unwrap();
        guard.release().await.unwrap();
    }
    let name = |i: usize| LockName::new(format!("job-{i}")).unwrap();
    assert_eq!(
        locker.last_token(&name(0)),
        None,
        "the oldest name is forgotten"
    );
    for i in 8..10 {
        assert!(
            locker.last_token(&name(i)).is_some(),
            "job-{i} is remembered"
        );
    }
}
