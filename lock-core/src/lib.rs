#![doc = include_str!("../README.md")]

mod error;
mod fence;
mod guard;
mod lease;
mod locker;
mod memory;
pub mod metrics;
mod name;
mod options;
mod renewer;
mod seen;
mod store;
mod token;
pub mod wait;
mod wake;
mod watchdog;

/// Locks `mutex` even if a thread panicked while holding it, so that one panic does not make
/// every later call panic too. The crate's own critical sections only update plain maps and
/// counters; the one that runs caller code (`Fenced::write`) has already raised the high-water
/// mark, so a panicking update never lets a lower token in afterwards.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub use error::{BoxError, Error, ErrorKind, LossReason, Operation};
pub use fence::{FenceGate, Fenced};
pub use guard::LockGuard;
pub use lease::{HolderId, Lease, LeaseInfo, TtlLimits, safety_margin};
pub use locker::Locker;
pub use memory::MemoryLeaseStore;
pub use name::{IntoLockName, LockName};
pub use options::{AcquireOptions, Renewal, Wait};
pub use store::LeaseStore;
pub use token::FencingToken;
pub use wait::WaitPolicy;
pub use wake::{ReleaseWatch, WakeupHub};

/// Re-exported so backends and users name the same `async_trait`.
pub use async_trait::async_trait;
