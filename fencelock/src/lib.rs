#![doc = include_str!("../README.md")]

mod connect;

pub use connect::{StoreUrl, connect};
// Only what users of locks call; a backend author depends on `fencelock-core` and finds the
// rest in `fencelock_core::backend`.
pub use fencelock_core::{
    AcquireOptions, Diagnosis, Election, Error, ErrorKind, ErrorSource, Fence, FenceGate, Fenced,
    FencedValue, FencingToken, Finding, HeldLock, HolderId, IntoLockName, Leader, LeaderWatch,
    Leadership, Lease, LeaseInfo, LeaseStore, ListQuery, Listing, LockGuard, LockName, Locker,
    LossReason, MemoryLeaseStore, Operation, OwnerLabel, PermitGuard, PermitLimit, Permits,
    Renewal, Semaphore, TtlLimits, Verdict, Wait, metrics,
};

/// The Redis backend (feature `redis`).
#[cfg(feature = "redis")]
pub use fencelock_redis as redis;

/// The PostgreSQL backend (feature `postgres`).
#[cfg(feature = "postgres")]
pub use fencelock_postgres as postgres;

/// The etcd backend (feature `etcd`).
#[cfg(feature = "etcd")]
pub use fencelock_etcd as etcd;

/// The workspace README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
