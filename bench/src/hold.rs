//! Renewal at scale and memory: one `Locker` holds many leases for a while, in a child process
//! of its own, so that its CPU time and peak RSS belong to the client alone.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fencelock_core::{AcquireOptions, LeaseStore, Locker};
use fencelock_etcd::EtcdLeaseStore;
use fencelock_postgres::PgLeaseStore;
use fencelock_redis::RedisLeaseStore;
use futures::{StreamExt, TryStreamExt, stream};
use nix::sys::resource::{UsageWho, getrusage};
use serde::{Deserialize, Serialize};

use crate::counting::CountingStore;
use crate::error::{BenchError, Result};
use crate::params::HoldArgs;

/// How many acquires or releases are in flight at once, unless `hold --in-flight` says.
pub(crate) const IN_FLIGHT: usize = 64;

/// What the child reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HoldReport {
    /// Leases held.
    pub leases: usize,
    /// TTL of each, in seconds.
    pub ttl_secs: u64,
    /// Seconds taken to acquire them all (`in_flight` at once).
    pub acquire_secs: f64,
    /// Acquires (and releases) in flight at once.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// Seconds taken to release them all at the end (`in_flight` at once).
    #[serde(default)]
    pub release_secs: f64,
    /// Seconds they were held (the measurement window).
    pub held_secs: f64,
    /// Whether the `Locker` batched renewals.
    pub batching: bool,
    /// Successful renewals per second in the window.
    pub renews_per_sec: f64,
    /// Store calls carrying renewals per second in the window (a batch is one call).
    pub renew_calls_per_sec: f64,
    /// Renewals per second the watchdogs should make (leases / (TTL / 3)).
    pub expected_renews_per_sec: f64,
    /// Failed renew calls in the window (each retried while the lease was locally valid).
    pub renew_failures: u64,
    /// Leases whose guard reported a loss, or that were no longer valid at the end.
    pub lost: usize,
    /// Releases that failed at the end (a lost lease shows up here too).
    pub release_failures: usize,
    /// Client CPU (user + system) in the window, as a share of one core.
    pub cpu_share: f64,
    /// Client CPU seconds per 1,000 renewals.
    pub cpu_ms_per_1k_renews: f64,
    /// Resident memory after connecting, before acquiring (KiB).
    pub rss_before_kib: u64,
    /// Resident memory while holding (KiB).
    pub rss_held_kib: u64,
    /// Peak resident memory of the process (VmHWM, KiB).
    pub peak_rss_kib: u64,
}

/// Runs saved before `in_flight` was recorded had 64 in flight.
fn default_in_flight() -> usize {
    64
}

impl HoldReport {
    /// Extra resident memory per held lease, in bytes.
    pub fn bytes_per_lease(&self) -> f64 {
        if self.leases == 0 {
            return 0.0;
        }
        self.rss_held_kib.saturating_sub(self.rss_before_kib) as f64 * 1024.0 / self.leases as f64
    }
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError::new(format!("no {field} in /proc/self/status")))
}

/// CPU seconds (user + system) this process used so far.
pub(crate) fn cpu_secs() -> Result<f64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

/// Connects the store for `backend` at `url`.
pub async fn connect(backend: &str, url: &str) -> Result<Arc<dyn LeaseStore>> {
    Ok(match backend {
        "redis" => Arc::new(RedisLeaseStore::connect(url).await?),
        "postgres" => Arc::new(PgLeaseStore::connect(url).await?),
        "etcd" => Arc::new(EtcdLeaseStore::connect(url.split(',')).await?),
        other => return Err(BenchError::new(format!("unknown backend `{other}`"))),
    })
}

/// The child: holds `args.leases` leases for `args.hold_secs` and reports.
pub async fn hold(args: &HoldArgs) -> Result<HoldReport> {
    let (store, counts) = CountingStore::new(connect(&args.backend, &args.url).await?);
    let locker = Locker::new(store).with_renewal_batching(!args.no_batching);
    let ttl = Duration::from_secs(args.ttl_secs);
    let options = AcquireOptions::new().with_ttl(ttl).with_no_wait();
    let rss_before_kib = status_kib("VmRSS")?;
    let prefix = format!("bench/hold/{}", std::process::id());

    let in_flight = args.in_flight.max(1);
    let started = Instant::now();
    let guards: Vec<_> = stream::iter(0..args.leases)
        .map(|i| {
            let (locker, name) = (locker.clone(), format!("{prefix}/{i}"));
            let options = options.clone();
            async move { locker.acquire(name.as_str(), options).await }
        })
        .buffer_unordered(in_flight)
        .try_collect()
        .await?;
    let acquire_secs = started.elapsed().as_secs_f64();

    let renewed_before = counts.renewed.load(Ordering::Relaxed);
    let failed_before = counts.failed.load(Ordering::Relaxed);
    let calls_before = counts.calls.load(Ordering::Relaxed);
    let cpu_before = cpu_secs()?;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.hold_secs)).await;
    let held_secs = window.elapsed().as_secs_f64();
    let cpu = cpu_secs()? - cpu_before;
    let renewed = counts.renewed.load(Ordering::Relaxed) - renewed_before;
    let renew_failures = counts.failed.load(Ordering::Relaxed) - failed_before;
    let calls = counts.calls.load(Ordering::Relaxed) - calls_before;
    let rss_held_kib = status_kib("VmRSS")?;
    let peak_rss_kib = status_kib("VmHWM")?;
    let lost = guards
        .iter()
        .filter(|g| g.loss_reason().is_some() || !g.is_valid())
        .count();

    counts.releasing.store(true, Ordering::Relaxed);
    let releasing = Instant::now();
    let release_failures = stream::iter(guards)
        .map(|guard| async move { guard.release().await.is_err() })
        .buffer_unordered(in_flight)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let release_secs = releasing.elapsed().as_secs_f64();

    let renews_per_sec = renewed as f64 / held_secs;
    Ok(HoldReport {
        leases: args.leases,
        ttl_secs: args.ttl_secs,
        acquire_secs,
        in_flight,
        release_secs,
        held_secs,
        batching: !args.no_batching,
        renews_per_sec,
        renew_calls_per_sec: calls as f64 / held_secs,
        expected_renews_per_sec: args.leases as f64 / (ttl.as_secs_f64() / 3.0),
        renew_failures,
        lost,
        release_failures,
        cpu_share: cpu / held_secs,
        cpu_ms_per_1k_renews: if renewed > 0 {
            cpu * 1e6 / renewed as f64
        } else {
            0.0
        },
        rss_before_kib,
        rss_held_kib,
        peak_rss_kib,
    })
}

/// The parent: runs `hold` in a child process of this binary and reads its JSON.
pub async fn run_child(
    backend: &str,
    url: &str,
    leases: usize,
    hold_secs: f64,
    ttl_secs: u64,
    batching: bool,
) -> Result<HoldReport> {
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(exe)
        .args(["hold", "--backend", backend, "--url", url])
        .args(["--leases", &leases.to_string()])
        .args(["--hold-secs", &hold_secs.to_string()])
        .args(["--ttl-secs", &ttl_secs.to_string()])
        .args((!batching).then_some("--no-batching"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await?;
    if !output.status.success() {
        return Err(BenchError::new(format!(
            "the {backend} hold child failed ({})",
            output.status
        )));
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
