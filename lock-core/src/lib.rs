#![doc = include_str!("../README.md")]

pub mod backend;
mod diagnosis;
mod election;
mod error;
mod fence;
mod guard;
mod label;
mod lease;
mod listing;
mod locker;
mod memory;
mod memory_permits;
pub mod metrics;
mod name;
mod options;
mod renewer;
mod seen;
mod semaphore;
mod store;
mod token;
mod wait;
mod wake;
mod watchdog;

/// The crate's own critical sections only update plain maps and counters; the one that runs
/// caller code (`Fenced::write`) has already raised the high-water mark, so a panicking update
/// never lets a lower token in afterwards.
use backend::lock_unpoisoned as lock;

pub use diagnosis::{Diagnosis, Finding, Verdict};
pub use election::{Election, Leader, LeaderWatch, Leadership};
pub use error::{BoxError, Error, ErrorKind, ErrorSource, LossReason, Operation};
pub use fence::{Fence, FenceGate, Fenced, FencedValue};
pub use guard::LockGuard;
pub use label::OwnerLabel;
pub use lease::{HolderId, Lease, LeaseInfo, TtlLimits};
pub use listing::{HeldLock, ListQuery, Listing};
pub use locker::Locker;
pub use memory::MemoryLeaseStore;
pub use name::{IntoLockName, LockName};
pub use options::{AcquireOptions, Renewal, Wait};
pub use semaphore::{PermitAttempt, PermitGuard, PermitLimit, Permits, Semaphore};
pub use store::LeaseStore;
pub use token::FencingToken;

/// Re-exported so backends and users name the same `async_trait`.
pub use async_trait::async_trait;
