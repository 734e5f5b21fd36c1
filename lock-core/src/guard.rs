//! `LockGuard`: a held lock, its token, its deadline, and the signal that it was lost.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::{Error, FencingToken, Lease, LeaseStore, LockName, LossReason};

/// What the guard and its watchdog share.
#[derive(Clone, Debug)]
pub(crate) struct GuardState {
    pub(crate) lease: Lease,
    pub(crate) lost: Option<LossReason>,
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
    state: watch::Receiver<GuardState>,
    ended: CancellationToken,
    stop: CancellationToken,
    released: bool,
}

impl LockGuard {
    pub(crate) fn new(
        store: Arc<dyn LeaseStore>,
        state: watch::Receiver<GuardState>,
        ended: CancellationToken,
        stop: CancellationToken,
    ) -> Self {
        Self {
            store,
            state,
            ended,
            stop,
            released: false,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> LockName {
        self.state.borrow().lease.name().clone()
    }

    /// The fencing token of this grant. Pass it with every write to fenced storage.
    pub fn token(&self) -> FencingToken {
        self.state.borrow().lease.token()
    }

    /// The lease as last granted or renewed.
    pub fn lease(&self) -> Lease {
        self.state.borrow().lease.clone()
    }

    /// The conservative local deadline: until then the store cannot have expired the grant.
    /// Moves forward with each successful renewal.
    pub fn deadline(&self) -> Instant {
        self.state.borrow().lease.deadline()
    }

    /// Why the lease was lost, if it was: the loss the watchdog reported, the local deadline
    /// having passed, or the watchdog being gone without saying why (its runtime shut down:
    /// fail closed). A getter: it fires nothing (see [`LockGuard::lost`] for the signal).
    pub fn loss_reason(&self) -> Option<LossReason> {
        if let Some(reason) = self.recorded_loss() {
            return Some(reason);
        }
        let gone = self.ended.is_cancelled() || self.state.has_changed().is_err();
        gone.then(stopped)
    }

    /// [`LockGuard::loss_reason`], and if there is one, the cancellation tokens fired now: the
    /// deadline may pass before the watchdog wakes to record it, and whoever notices first
    /// fires them, so the signal never lags behind what `lost()` and `run()` report.
    fn notice_loss(&self) -> Option<LossReason> {
        let reason = self.loss_reason()?;
        self.ended.cancel();
        Some(reason)
    }

    /// A loss the watchdog reported, or the local deadline having passed.
    fn recorded_loss(&self) -> Option<LossReason> {
        let state = self.state.borrow();
        if let Some(reason) = &state.lost {
            return Some(reason.clone());
        }
        (Instant::now() >= state.lease.deadline()).then_some(LossReason::DeadlineReached)
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
        let mut state = self.state.clone();
        loop {
            // `notice_loss()` fires the cancellation tokens with any loss it reports, so once
            // this returns they have fired too.
            if let Some(reason) = self.notice_loss() {
                return reason;
            }
            let deadline = state.borrow_and_update().lease.deadline();
            tokio::select! {
                changed = state.changed() => if changed.is_err() {
                    return self.notice_loss().unwrap_or_else(stopped);
                },
                () = self.ended.cancelled() => return self.notice_loss().unwrap_or_else(stopped),
                () = sleep_until(deadline) => {}
            }
        }
    }

    /// A token that is cancelled when the lease ends: lost, released or dropped. Hand clones
    /// to spawned work that must stop when the lock is gone.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.ended.child_token()
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
        let mut state = self.state.clone();
        let ended = self.ended.clone();
        tokio::spawn(async move {
            loop {
                let (deadline, lost) = {
                    let s = state.borrow_and_update();
                    (s.lease.deadline(), s.lost.clone())
                };
                if let Some(reason) = lost {
                    return hook(reason);
                }
                tokio::select! {
                    changed = state.changed() => if changed.is_err() { return },
                    () = ended.cancelled() => {
                        if let Some(reason) = state.borrow().lost.clone() {
                            hook(reason);
                        }
                        return;
                    }
                    () = sleep_until(deadline) => return hook(LossReason::DeadlineReached),
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
        self.stop.cancel();
        let lease = self.lease();
        let loss = self.recorded_loss();
        let result = self.store.release(&lease).await;
        self.ended.cancel();
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
        self.stop.cancel();
        self.ended.cancel();
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

fn stopped() -> LossReason {
    LossReason::WatchdogFailed {
        message: "the renewal task stopped".to_owned(),
    }
}
