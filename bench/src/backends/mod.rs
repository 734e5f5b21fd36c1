//! Per backend: our operations and the raw floor they are measured against.

pub mod etcd;
pub mod memory;
pub mod postgres;
pub mod redis;

use std::time::Duration;

use fencelock_core::{AcquireOptions, LeaseStore, LockName, Locker};

use crate::cycle::{Cycle, cycle};
use crate::error::BenchError;

/// TTL of every lease in the latency and throughput benchmarks.
pub const TTL: Duration = Duration::from_secs(10);

/// A prefix no earlier run used, so fresh names are really fresh.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{nanos:x}", std::process::id())
}

/// `Locker::acquire` (no wait) + `LockGuard::release` on `{prefix}/{i}`: what users call.
pub fn locker_cycle(locker: &Locker, prefix: String) -> Cycle {
    let locker = locker.clone();
    let options = AcquireOptions::new().with_ttl(TTL).with_no_wait();
    cycle(move |i| {
        let locker = locker.clone();
        let name = format!("{prefix}/{i}");
        let options = options.clone();
        async move {
            let guard = locker.acquire(name.as_str(), options).await?;
            guard.release().await?;
            Ok(())
        }
    })
}

/// The limit of the semaphores the permit rows take a permit of.
pub const PERMITS: u32 = 8;

/// The permit row's label.
pub const PERMIT_ROW: &str = "fencelock `Semaphore` permit acquire + release (limit 8)";

/// `Semaphore::acquire` (no wait) + `PermitGuard::release` of a semaphore with
/// [`PERMITS`] permits named `{prefix}/{i}`: a permit, what users of semaphores call.
pub fn permit_cycle(locker: &Locker, prefix: String) -> Cycle {
    let locker = locker.clone();
    let options = AcquireOptions::new().with_ttl(TTL).with_no_wait();
    cycle(move |i| {
        let semaphore = locker.semaphore(format!("{prefix}/{i}"), PERMITS);
        let options = options.clone();
        async move {
            let permit = semaphore?.acquire(options).await?;
            permit.release().await?;
            Ok(())
        }
    })
}

/// Ours through the store alone (no `Locker`): `try_acquire` + `release` on a fresh name per
/// call.
pub fn store_cycle<S>(store: &S, prefix: String) -> Cycle
where
    S: LeaseStore + Clone + 'static,
{
    let store = store.clone();
    cycle(move |i| {
        let store = store.clone();
        let name = LockName::new(format!("{prefix}/{i}"));
        async move {
            let name = name?;
            let lease = store
                .try_acquire(&name, TTL)
                .await?
                .ok_or_else(|| unexpectedly_held("try_acquire"))?;
            store.release(&lease).await?;
            Ok(())
        }
    })
}

/// The error for a raw floor that found its fresh key taken (it never should).
pub fn unexpectedly_held(what: &str) -> BenchError {
    BenchError::new(format!("{what}: a fresh key was already held"))
}
