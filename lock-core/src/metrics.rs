//! Metrics emitted through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! Install any `metrics` recorder (Prometheus exporter, statsd, …) to collect them; without one
//! they cost next to nothing. Every metric has the label `backend` (`"redis"`, `"postgres"`,
//! `"etcd"`, `"memory"`, …). Lock names are never labels (unbounded cardinality).
//!
//! | name | kind | extra labels | meaning |
//! | --- | --- | --- | --- |
//! | `fencelock_acquire_seconds` | histogram | `outcome` = `acquired` / `timeout` / `error` | time spent in `Locker::acquire`, waiting included |
//! | `fencelock_wait_seconds` | histogram | | time a granted acquire spent waiting for the previous holder |
//! | `fencelock_renew_lag_seconds` | histogram | | time left before the local deadline when a renewal succeeded (low = close call) |
//! | `fencelock_renew_batch_leases` | histogram | | leases per batched renewal call ([`crate::LeaseStore::renew_many`]) |
//! | `fencelock_renewals_total` | counter | `outcome` = `ok` / `retry` / `lost` | renewal attempts by the watchdog |
//! | `fencelock_leases_lost_total` | counter | `reason` = `not_held` / `superseded` / `deadline` / `renew_failed` / `watchdog_failed` | leases reported lost |
//! | `fencelock_token_regressions_total` | counter | | grants refused because their token did not rise |
//! | `fencelock_stale_writes_rejected_total` | counter | | fenced writes rejected by the fencing helpers |

use std::time::Duration;

use crate::LossReason;

/// `fencelock_acquire_seconds`.
pub const ACQUIRE_SECONDS: &str = "fencelock_acquire_seconds";
/// `fencelock_wait_seconds`.
pub const WAIT_SECONDS: &str = "fencelock_wait_seconds";
/// `fencelock_renew_lag_seconds`.
pub const RENEW_LAG_SECONDS: &str = "fencelock_renew_lag_seconds";
/// `fencelock_renew_batch_leases`.
pub const RENEW_BATCH_LEASES: &str = "fencelock_renew_batch_leases";
/// `fencelock_renewals_total`.
pub const RENEWALS_TOTAL: &str = "fencelock_renewals_total";
/// `fencelock_leases_lost_total`.
pub const LEASES_LOST_TOTAL: &str = "fencelock_leases_lost_total";
/// `fencelock_token_regressions_total`.
pub const TOKEN_REGRESSIONS_TOTAL: &str = "fencelock_token_regressions_total";
/// `fencelock_stale_writes_rejected_total`.
pub const STALE_WRITES_REJECTED_TOTAL: &str = "fencelock_stale_writes_rejected_total";

pub(crate) fn acquire_finished(backend: &'static str, outcome: &'static str, took: Duration) {
    metrics::histogram!(ACQUIRE_SECONDS, "backend" => backend, "outcome" => outcome).record(took);
}

pub(crate) fn waited(backend: &'static str, waited: Duration) {
    metrics::histogram!(WAIT_SECONDS, "backend" => backend).record(waited);
}

/// The watchdog's renewal metrics, registered once per renewal task (a batch) rather than once
/// per renewal: without a recorder each registration still builds its key.
pub(crate) struct Renewals {
    ok: metrics::Counter,
    retry: metrics::Counter,
    lost: metrics::Counter,
    lag: metrics::Histogram,
}

impl Renewals {
    pub(crate) fn new(backend: &'static str) -> Self {
        let outcome = |outcome: &'static str| metrics::counter!(RENEWALS_TOTAL, "backend" => backend, "outcome" => outcome);
        Self {
            ok: outcome("ok"),
            retry: outcome("retry"),
            lost: outcome("lost"),
            lag: metrics::histogram!(RENEW_LAG_SECONDS, "backend" => backend),
        }
    }

    /// A renewal that succeeded with `left` to spare before the local deadline.
    pub(crate) fn ok(&self, left: Duration) {
        self.ok.increment(1);
        self.lag.record(left);
    }

    pub(crate) fn retry(&self) {
        self.retry.increment(1);
    }

    pub(crate) fn lost(&self) {
        self.lost.increment(1);
    }
}

pub(crate) fn renew_batch(backend: &'static str, leases: usize) {
    metrics::histogram!(RENEW_BATCH_LEASES, "backend" => backend).record(leases as f64);
}

pub(crate) fn lease_lost(backend: &'static str, reason: &LossReason) {
    let reason = match reason {
        LossReason::NotHeld => "not_held",
        LossReason::Superseded { .. } => "superseded",
        LossReason::DeadlineReached => "deadline",
        LossReason::RenewFailed { .. } => "renew_failed",
        LossReason::WatchdogFailed { .. } => "watchdog_failed",
    };
    metrics::counter!(LEASES_LOST_TOTAL, "backend" => backend, "reason" => reason).increment(1);
}

pub(crate) fn token_regression(backend: &'static str) {
    metrics::counter!(TOKEN_REGRESSIONS_TOTAL, "backend" => backend).increment(1);
}

/// Counts a fenced write rejected for a stale token. Backends' fencing helpers call this.
pub fn stale_write_rejected(backend: &'static str) {
    metrics::counter!(STALE_WRITES_REJECTED_TOTAL, "backend" => backend).increment(1);
}
