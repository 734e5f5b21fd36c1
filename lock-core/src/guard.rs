//! `LockGuard`: a held lock, its token, its deadline, and the signal that it was lost.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::lock;
use crate::{Error, FencingToken, Lease, LeaseStore, LockName, LossReason};

/// What a guard and its watchdog share: one allocation per held lease, kept small because a
/// service may hold a hundred thousand (no channel and no cancellation token unless asked for).
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<GuardState>,
    /// The guard released or dropped its lease: the watchdog stops at its next look.
    stopped: AtomicBool,
    /// The lease ended: lost, released, dropped, or its watchdog gone. Set under the state
    /// lock, together with the loss and the cancellation of any handed-out token.
    ended: AtomicBool,
    /// Wakes [`LockGuard::lost`] and [`LockGuard::on_lost`] when the lease ends.
    on_end: Notify,
}

#[derive(Debug)]
struct GuardState {
    lease: Lease,
    /// Boxed: a held lease pays 8 bytes for it, not 32.
    lost: Option<Box<LossReason>>,
    /// The parent of every [`LockGuard::cancellation_token`]: made at the first request,
    /// cancelled when the lease ends.
    token: Option<CancellationToken>,
    /// The watchdog's own part; here so that its timer queue entry stays small.
    schedule: Schedule,
}

/// When a watchdog renews, and to what.
#[derive(Debug)]
pub(crate) struct Schedule {
    /// The TTL each renewal asks for.
    pub(crate) ttl: Duration,
    /// The renew interval (`None`: renewal off).
    pub(crate) every: Option<Duration>,
    /// The next renewal is due then (`None`: never).
    pub(crate) next_renew: Option<Instant>,
    /// The delay before the next retry of a renewal that failed transiently.
    pub(crate) retry: Duration,
}

impl Shared {
    pub(crate) fn new(lease: Lease, schedule: Schedule) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GuardState {
                lease,
                lost: None,
                token: None,
                schedule,
            }),
            stopped: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            on_end: Notify::new(),
        })
    }

    /// The lease as last granted or renewed.
    pub(crate) fn lease(&self) -> Lease {
        lock(&self.state).lease.clone()
    }

    /// The local deadline of the lease as last granted or renewed.
    pub(crate) fn deadline(&self) -> Instant {
        lock(&self.state).lease.deadline()
    }

    /// The lease and the watchdog's schedule, under one lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Lease, &mut Schedule) -> R) -> R {
        let mut state = lock(&self.state);
        let GuardState {
            lease, schedule, ..
        } = &mut *state;
        f(lease, schedule)
    }

    /// Tells the watchdog to stop: the guard released or dropped the lease.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Records `reason` (unless a loss was recorded already) and ends the lease: whoever sees
    /// the loss also sees the cancellation tokens fired.
    pub(crate) fn lose(&self, reason: LossReason) {
        self.finish(Some(reason));
    }

    /// Ends the lease without a loss (released or dropped), firing the cancellation tokens.
    /// Once ended there is nothing left to do (no token is made after the end), so the drop
    /// that follows every release takes no lock and wakes nobody.
    fn end(&self) {
        if !self.is_ended() {
            self.finish(None);
        }
    }

    fn finish(&self, reason: Option<LossReason>) {
        {
            let mut state = lock(&self.state);
            if state.lost.is_none() {
                state.lost = reason.map(Box::new);
            }
            self.ended.store(true, Ordering::Release);
            if let Some(token) = state.token.take() {
                token.cancel();
            }
        }
        self.on_end.notify_waiters();
    }

    /// Resolves once the lease has ended.
    async fn ended(&self) {
        loop {
            let mut notified = pin!(self.on_end.notified());
            notified.as_mut().enable();
            if self.is_ended() {
                return;
            }
            notified.await;
        }
    }

    /// A loss recorded, or the local deadline having passed.
    pub(crate) fn recorded_loss(&self) -> Option<LossReason> {
        let state = lock(&self.state);
        if let Some(reason) = &state.lost {
            return Some(LossReason::clone(reason));
        }
        (Instant::now() >= state.lease.deadline()).then_some(LossReason::DeadlineReached)
    }

    fn cancellation_token(&self) -> CancellationToken {
        let mut state = lock(&self.state);
        if self.is_ended() {
            let token = CancellationToken::new();
            token.cancel();
            return token;
        }
        state
            .token
            .get_or_insert_with(CancellationToken::new)
            .child_token()
    }
}

/// A held lock. Pass [`LockGuard::token`] with every write to fenced storage.
///
/// Its watchdog renews the lease (unless renewal is off) and fires the lost signal at once
/// when it cannot: the store says the grant is gone, a renewal fails for good, the local
/// deadline passes, or the watchdog itself dies (a renewal panics, or the runtime it runs on
/// shuts down). Observe loss with [`LockGuard::lost`] (a future for `tokio::select!`),
/// [`LockGuard::cancellation_token`], [`LockGuard::is_valid`] or [`LockGuard::check`]; or let
/// [`LockGuard::run`] cancel your work for you.
///
/// [`LockGuard::release`] frees the lock and reports a lease that was lost meanwhile. Dropping
/// the guard stops renewal and releases in the background, best effort.
#[derive(Debug)]
pub struct LockGuard {
    store: Arc<dyn LeaseStore>,
    shared: Arc<Shared>,
    released: bool,
}

impl LockGuard {
    pub(crate) fn new(store: Arc<dyn LeaseStore>, shared: Arc<Shared>) -> Self {
        Self {
            store,
            shared,
            released: false,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> LockName {
        lock(&self.shared.state).lease.name().clone()
    }

    /// The fencing token of this grant. Pass it with every write to fenced storage.
    pub fn token(&self) -> FencingToken {
        lock(&self.shared.state).lease.token()
    }

    /// The lease as last granted or renewed.
    pub fn lease(&self) -> Lease {
        self.shared.lease()
    }

    /// The conservative local deadline: until then the store cannot have expired the grant.
    /// Moves forward with each successful renewal.
    pub fn deadline(&self) -> Instant {
        self.shared.deadline()
    }

    /// Why the lease was lost, if it was: the loss the watchdog reported, the local deadline
    /// having passed, or the watchdog being gone without saying why (its runtime shut down:
    /// fail closed). A getter: it fires nothing (see [`LockGuard::lost`] for the signal).
    pub fn loss_reason(&self) -> Option<LossReason> {
        if let Some(reason) = self.shared.recorded_loss() {
            return Some(reason);
        }
        self.shared.is_ended().then(stopped)
    }

    /// [`LockGuard::loss_reason`], and if there is one, the cancellation tokens fired now: the
    /// deadline may pass before the watchdog wakes to record it, and whoever notices first
    /// fires them, so the signal never lags behind what `lost()` and `run()` report.
    fn notice_loss(&self) -> Option<LossReason> {
        let reason = self.loss_reason()?;
        self.shared.lose(reason.clone());
        Some(reason)
    }

    /// Whether the lease still holds as far as this client can tell: not reported lost and
    /// before the local deadline. Check it (or use [`LockGuard::check`]) right before writes.
    pub fn is_valid(&self) -> bool {
        self.loss_reason().is_none()
    }

    /// The token if the lease is still valid, else the [`Error::LeaseLost`] to return.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] with the reason, once the lease is lost.
    pub fn check(&self) -> Result<FencingToken, Error> {
        match self.loss_reason() {
            None => Ok(self.token()),
            Some(reason) => Err(Error::lost(&self.lease(), reason)),
        }
    }

    /// Resolves when the lease is lost, with the reason. Never resolves while it holds.
    /// Usable in `tokio::select!` next to the protected work.
    ///
    /// # Behavior
    /// - `lost_signal_fires_when_store_loses_lease`: when the store loses the grant (an
    ///   operator breaks it), this resolves within about one renew interval with the store's
    ///   verdict (`NotHeld` or `Superseded`, not the deadline); the cancellation token has
    ///   fired, [`LockGuard::is_valid`] is false, and [`LockGuard::check`] and
    ///   [`LockGuard::release`] report `LeaseLost`.
    pub async fn lost(&self) -> LossReason {
        loop {
            // `notice_loss()` fires the cancellation tokens with any loss it reports, so once
            // this returns they have fired too.
            if let Some(reason) = self.notice_loss() {
                return reason;
            }
            // A renewal moves the deadline: waking at the old one, the loop reads the new one.
            let deadline = self.deadline();
            tokio::select! {
                () = self.shared.ended() => {}
                () = sleep_until(deadline) => {}
            }
        }
    }

    /// A token that is cancelled when the lease ends: lost, released or dropped. Hand clones
    /// to spawned work that must stop when the lock is gone.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.shared.cancellation_token()
    }

    /// Runs `work` under the lock and cancels it (drops the future) if the lease is lost first.
    ///
    /// # Errors
    /// [`Error::LostDuringWork`], carrying the token, when the lease was lost before `work`
    /// finished: compensate for anything it did with that token.
    ///
    /// # Behavior
    /// - `guarded_run_cancels_on_loss`: when the lease is lost while `work` runs, `work` is
    ///   dropped and the result is `LostDuringWork` naming the token.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, Error> {
        let lost = |reason| Error::LostDuringWork {
            name: self.name(),
            token: self.token(),
            reason,
        };
        if let Some(reason) = self.notice_loss() {
            return Err(lost(reason));
        }
        tokio::select! {
            biased;
            reason = self.lost() => Err(lost(reason)),
            out = work => Ok(out),
        }
    }

    /// Calls `hook` with the reason if the lease is lost (not when it is released), from a
    /// background task: a compensation hook.
    pub fn on_lost(&self, hook: impl FnOnce(LossReason) + Send + 'static) {
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            loop {
                // Ended: lost, or released (no hook). Else lost once the deadline passed.
                if shared.is_ended() {
                    if let Some(reason) = lock(&shared.state).lost.as_deref().cloned() {
                        hook(reason);
                    }
                    return;
                }
                if let Some(reason) = shared.recorded_loss() {
                    return hook(reason);
                }
                let deadline = shared.deadline();
                tokio::select! {
                    () = shared.ended() => {}
                    () = sleep_until(deadline) => {}
                }
            }
        });
    }

    /// Stops renewal and frees the lock.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] when the lease had been lost before the release (writes made with
    /// its token after the loss may have been rejected downstream); the store's errors otherwise.
    pub async fn release(mut self) -> Result<(), Error> {
        self.released = true;
        // The watchdog ends by itself once stopped; joining it first would put a wake-up of
        // another task on every release's path. A renewal still in flight cannot undo the
        // release: renew compares holder and token, and an ended grant is never revived.
        self.shared.stop();
        let lease = self.lease();
        let loss = self.shared.recorded_loss();
        let result = self.store.release(&lease).await;
        self.shared.end();
        let _span =
            tracing::info_span!("fencelock.release", lock = %lease.name(), token = %lease.token())
                .entered();
        match (loss, result) {
            (Some(reason), _) => {
                tracing::warn!(%reason, "released a lease that was already lost");
                Err(Error::lost(&lease, reason))
            }
            (None, Ok(())) => {
                tracing::debug!("released");
                Ok(())
            }
            (None, Err(error)) => {
                tracing::warn!(%error, "release failed");
                Err(error)
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.shared.stop();
        self.shared.end();
        if self.released {
            return;
        }
        let lease = self.lease();
        let store = Arc::clone(&self.store);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = store.release(&lease).await {
                        tracing::debug!(lock = %lease.name(), token = %lease.token(), %error, "background release after drop failed");
                    }
                });
            }
            Err(_) => tracing::debug!(
                lock = %lease.name(),
                "guard dropped outside a runtime; the lease ends at its TTL"
            ),
        }
    }
}

/// The loss of a guard whose watchdog is gone without a word (its runtime shut down).
pub(crate) fn stopped() -> LossReason {
    LossReason::WatchdogFailed {
        message: "the renewal task stopped".to_owned(),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// A service may hold 100,000 leases: what each costs is set here. The state a guard shares
    /// with its watchdog, behind its `Arc` counts (16 bytes) and the allocator's 8-byte header,
    /// fits a 256-byte allocation; the guard itself is four words.
    #[test]
    fn a_held_lease_costs_one_small_allocation() {
        assert!(
            std::mem::size_of::<Shared>() + 16 + 8 <= 256,
            "Shared is {} bytes",
            std::mem::size_of::<Shared>()
        );
        assert_eq!(std::mem::size_of::<LockGuard>(), 32);
    }
}
