//! The renewal task behind every guard. It can end in exactly three ways: stopped by the guard,
//! or the lease lost (reported), or a panic (caught and reported). Never silently.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::guard::GuardState;
use crate::metrics;
use crate::renewer::{Renewed, Renewer, panic_message};
use crate::{Error, ErrorKind, LeaseStore, LossReason};

/// The first retry delay after a transient renewal error; doubles up to the renew interval.
const FIRST_RETRY: Duration = Duration::from_millis(20);

pub(crate) struct Watchdog {
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) renewer: Arc<Renewer>,
    pub(crate) state: watch::Sender<GuardState>,
    pub(crate) ttl: Duration,
    pub(crate) every: Option<Duration>,
    pub(crate) stop: CancellationToken,
    pub(crate) ended: CancellationToken,
}

impl Watchdog {
    /// Runs until stopped or the lease is lost; a panic inside counts as loss.
    pub(crate) async fn run(self) {
        let state = self.state.clone();
        let ended = self.ended.clone();
        let self_backend = self.store.backend();
        let outcome = AssertUnwindSafe(self.renew_loop()).catch_unwind().await;
        let reason = match outcome {
            Ok(None) => None,
            Ok(Some(reason)) => Some(reason),
            Err(panic) => Some(LossReason::WatchdogFailed {
                message: panic_message(panic.as_ref()),
            }),
        };
        if let Some(reason) = reason {
            metrics::lease_lost(self_backend, &reason);
            let lease = state.borrow().lease.clone();
            tracing::warn!(lock = %lease.name(), token = %lease.token(), %reason, "lease lost");
            // Cancel while the state is locked for writing: whoever sees the loss (woken by
            // the state change, or reading it) also sees the cancellation token fired.
            state.send_modify(|s| {
                s.lost = Some(reason);
                ended.cancel();
            });
        }
    }

    /// `None` when stopped, `Some(reason)` when the lease was lost.
    async fn renew_loop(self) -> Option<LossReason> {
        let mut lease = self.state.borrow().lease.clone();
        let mut next_renew = self.every.and_then(|e| Instant::now().checked_add(e));
        let mut retry = FIRST_RETRY;
        loop {
            let deadline = lease.deadline();
            let wake = next_renew.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                () = sleep_until(wake) => {}
            }
            if Instant::now() >= deadline {
                return Some(LossReason::DeadlineReached);
            }
            let Some(every) = self.every else { continue };
            let sent_at = Instant::now();
            let span = tracing::debug_span!("fencelock.renew", lock = %lease.name(), token = %lease.token());
            let renewed = tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                r = timeout_at(deadline, self.renewer.renew(&lease, self.ttl)) => r,
            };
            let _entered = span.enter();
            if self.stop.is_cancelled() {
                // Released (or dropped) while the renewal was in flight: its answer is moot.
                return None;
            }
            match renewed {
                Err(_elapsed) => return Some(LossReason::DeadlineReached),
                Ok(Renewed::Failed(message)) => {
                    metrics::renewal(self.store.backend(), "lost");
                    return Some(LossReason::WatchdogFailed { message });
                }
                Ok(Renewed::Answer(Ok(new))) => {
                    metrics::renewal(self.store.backend(), "ok");
                    metrics::renew_lag(
                        self.store.backend(),
                        deadline.saturating_duration_since(sent_at),
                    );
                    tracing::trace!(
                        left_ms = deadline.saturating_duration_since(sent_at).as_millis() as u64,
                        "renewed"
                    );
                    lease = new;
                    self.state.send_modify(|s| s.lease = lease.clone());
                    next_renew = sent_at.checked_add(every);
                    retry = FIRST_RETRY;
                }
                Ok(Renewed::Answer(Err(error))) if error.is_transient() => {
                    metrics::renewal(self.store.backend(), "retry");
                    tracing::warn!(%error, retry_ms = retry.as_millis() as u64, "renewal failed; retrying while the lease is locally valid");
                    next_renew = Instant::now().checked_add(retry);
                    retry = (retry * 2).min(every);
                }
                Ok(Renewed::Answer(Err(error))) => {
                    metrics::renewal(self.store.backend(), "lost");
                    return Some(loss_reason(error));
                }
            }
        }
    }
}

fn loss_reason(error: Error) -> LossReason {
    match error {
        Error::LeaseLost { reason, .. } => reason,
        other if other.kind() == ErrorKind::LeaseLost => LossReason::NotHeld,
        other => LossReason::RenewFailed {
            error: other.to_string(),
        },
    }
}
