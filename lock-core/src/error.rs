//! The one error type of fencelock, and how errors classify themselves.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{FencingToken, LockName};

/// A boxed error from a driver, as the error constructors take it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A driver error kept as the `source()` of an [`Error`]. Shared, so that an [`Error`] is
/// `Clone` (one failed batch is every lease's error) and every copy keeps the whole chain.
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// The store operation an error happened in.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Opening or checking a connection.
    Connect,
    /// Setting up the store's schema, scripts or keys.
    Setup,
    /// [`crate::LeaseStore::try_acquire`] or a waiting acquire.
    Acquire,
    /// [`crate::LeaseStore::renew`].
    Renew,
    /// [`crate::LeaseStore::release`].
    Release,
    /// [`crate::LeaseStore::inspect`].
    Inspect,
    /// [`crate::LeaseStore::force_release`].
    ForceRelease,
    /// Subscribing to release notifications.
    Watch,
    /// A fenced write into a downstream store.
    FencedWrite,
    /// A fenced read from a downstream store.
    FencedRead,
    /// Asking the store about its own configuration.
    Diagnose,
    /// [`crate::LeaseStore::list`].
    List,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Setup => "setup",
            Self::Acquire => "acquire",
            Self::Renew => "renew",
            Self::Release => "release",
            Self::Inspect => "inspect",
            Self::ForceRelease => "force release",
            Self::Watch => "watch",
            Self::FencedWrite => "fenced write",
            Self::FencedRead => "fenced read",
            Self::Diagnose => "diagnose",
            Self::List => "list",
        })
    }
}

/// Why a lease stopped being held.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LossReason {
    /// The store no longer holds this grant: it expired, was force-released, or was released.
    NotHeld,
    /// The store holds a newer grant for the same name.
    Superseded {
        /// The token of the newer grant.
        by: FencingToken,
    },
    /// The client's conservative local deadline passed before a renewal was confirmed
    /// (the process may have been paused, or the store was unreachable).
    DeadlineReached,
    /// Renewal failed with an error that retrying cannot fix.
    RenewFailed {
        /// The error, rendered.
        error: String,
    },
    /// The renewal task panicked or was stopped; the lease is treated as lost.
    WatchdogFailed {
        /// What happened to the task.
        message: String,
    },
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotHeld => f.write_str("is no longer held (expired, released or broken)"),
            Self::Superseded { by } => write!(f, "was superseded by token {by}"),
            Self::DeadlineReached => {
                f.write_str("passed its local deadline before a renewal was confirmed")
            }
            Self::RenewFailed { error } => write!(f, "could not be renewed ({error})"),
            Self::WatchdogFailed { message } => write!(f, "lost its renewal task ({message})"),
        }
    }
}

/// The classification every [`Error`] reports through [`Error::kind`].
///
/// Retry decisions hang off this, in one place: [`Error::is_transient`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The lease is not (or no longer) held by this holder.
    LeaseLost,
    /// The lease was lost while guarded work ran; the work was cancelled.
    LostDuringWork,
    /// The store could not be reached and the operation was **not** applied.
    Unavailable,
    /// The request may or may not have been applied (e.g. a timeout after sending).
    OutcomeUnknown,
    /// A name, TTL, URL or option was rejected before anything was sent.
    InvalidInput,
    /// The store handed out a token lower than one this client already saw.
    TokenRegression,
    /// A fenced write carried a token below the resource's accepted high-water mark.
    StaleToken,
    /// Waiting for a lock took longer than the caller allowed.
    Timeout,
    /// The store does not offer this operation (a capability, not a failure).
    Unsupported,
    /// Any other failure reported by the store or its driver.
    Backend,
}

/// Everything that can go wrong in fencelock.
///
/// Messages say what happened and what to do. Driver errors are kept as [`std::error::Error::source`].
#[non_exhaustive]
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The lease is no longer held by this holder.
    #[error("lease on `{name}` lost: token {token} {reason}; stop writing with token {token}")]
    LeaseLost {
        /// The lock.
        name: LockName,
        /// The token of the lost grant.
        token: FencingToken,
        /// Why it was lost.
        reason: LossReason,
    },
    /// Guarded work was cancelled because its lease was lost.
    #[error(
        "lease on `{name}` lost during guarded work: token {token} {reason}; the work was cancelled, compensate anything it did with token {token}"
    )]
    LostDuringWork {
        /// The lock.
        name: LockName,
        /// The token the work ran under.
        token: FencingToken,
        /// Why the lease was lost.
        reason: LossReason,
    },
    /// The store could not be reached; nothing was applied, so retrying is safe.
    #[error(
        "{store} unavailable during {op}; nothing was applied, retry when it is back: {source}"
    )]
    Unavailable {
        /// Which store ("redis", "postgres", "etcd", "memory", …).
        store: &'static str,
        /// The operation.
        op: Operation,
        /// The driver's error.
        #[source]
        source: ErrorSource,
    },
    /// The request may or may not have been applied.
    #[error(
        "{store}: outcome of {op} unknown, the request may have been applied; check with inspect before relying on it: {source}"
    )]
    OutcomeUnknown {
        /// Which store.
        store: &'static str,
        /// The operation.
        op: Operation,
        /// The driver's error.
        #[source]
        source: ErrorSource,
    },
    /// Input rejected before anything was sent.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was rejected ("lock name", "ttl", "store url", …).
        what: &'static str,
        /// Why, and what would be accepted.
        reason: String,
    },
    /// A store granted a token lower than (or equal to) one this client already saw for the name.
    #[error(
        "token regression on `{name}`: the store granted token {got} after this client already saw token {seen}; the grant is not used. Check the store's persistence and clocks"
    )]
    TokenRegression {
        /// The lock.
        name: LockName,
        /// The highest token seen before.
        seen: FencingToken,
        /// The token just granted.
        got: FencingToken,
    },
    /// A fenced write was rejected.
    #[error(
        "stale write to `{resource}` rejected: token {presented} is below the accepted token {high_water}; the writer's lease was superseded, stop writing with token {presented}"
    )]
    StaleToken {
        /// The fenced resource.
        resource: String,
        /// The token the writer presented.
        presented: FencingToken,
        /// The highest token the resource has accepted.
        high_water: FencingToken,
    },
    /// Waiting for a lock timed out.
    #[error(
        "timed out after {waited:?} waiting for lock `{name}`; it is still held by someone else"
    )]
    Timeout {
        /// The lock.
        name: LockName,
        /// How long this call waited.
        waited: Duration,
    },
    /// The store does not offer the operation; nothing was sent.
    #[error("{store} does not support {op}: {reason}")]
    Unsupported {
        /// Which store.
        store: &'static str,
        /// The operation.
        op: Operation,
        /// Why, and what to use instead.
        reason: String,
    },
    /// Any other store failure.
    #[error("{store} error during {op}: {source}")]
    Backend {
        /// Which store.
        store: &'static str,
        /// The operation.
        op: Operation,
        /// The driver's error.
        #[source]
        source: ErrorSource,
    },
}

/// A driver error as an [`ErrorSource`]: the box becomes the shared allocation, so the chain
/// below it is kept as it was.
fn shared(source: BoxError) -> ErrorSource {
    Arc::from(source)
}

impl Error {
    /// The classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::LeaseLost { .. } => ErrorKind::LeaseLost,
            Self::LostDuringWork { .. } => ErrorKind::LostDuringWork,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::TokenRegression { .. } => ErrorKind::TokenRegression,
            Self::StaleToken { .. } => ErrorKind::StaleToken,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether retrying the same operation may succeed: the store was unreachable, or the
    /// outcome is unknown. Renew, release and inspect are idempotent, so the watchdog retries
    /// them while the lease is still locally valid; everything else is final.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
        )
    }

    /// Whether this error says the lease is gone.
    pub fn is_lease_lost(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::LeaseLost | ErrorKind::LostDuringWork
        )
    }

    /// An [`Error::InvalidInput`].
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            what,
            reason: reason.into(),
        }
    }

    /// An [`Error::Unavailable`]: the operation was not applied.
    pub fn unavailable(store: &'static str, op: Operation, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            store,
            op,
            source: shared(source.into()),
        }
    }

    /// An [`Error::OutcomeUnknown`]: the request may have been applied.
    pub fn outcome_unknown(
        store: &'static str,
        op: Operation,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::OutcomeUnknown {
            store,
            op,
            source: shared(source.into()),
        }
    }

    /// An [`Error::Unsupported`].
    pub fn unsupported(store: &'static str, op: Operation, reason: impl Into<String>) -> Self {
        Self::Unsupported {
            store,
            op,
            reason: reason.into(),
        }
    }

    /// An [`Error::Backend`].
    pub fn backend(store: &'static str, op: Operation, source: impl Into<BoxError>) -> Self {
        Self::Backend {
            store,
            op,
            source: shared(source.into()),
        }
    }

    /// An [`Error::LeaseLost`] for `lease`.
    pub fn lost(lease: &crate::Lease, reason: LossReason) -> Self {
        Self::LeaseLost {
            name: lease.name().clone(),
            token: lease.token(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn clones_keep_kind_message_and_source_chain() {
        let root = std::io::Error::other("root cause");
        let outer = Error::outcome_unknown("etcd", Operation::Renew, root);
        let copies = vec![outer.clone(), outer.clone()];
        for copy in &copies {
            assert_eq!(copy.kind(), ErrorKind::OutcomeUnknown);
            assert_eq!(copy.to_string(), outer.to_string());
            let source = copy.source().expect("the driver error is kept");
            assert_eq!(source.to_string(), "root cause");
        }
        let lost = Error::LeaseLost {
            name: LockName::new("n").unwrap(),
            token: FencingToken::new(7),
            reason: LossReason::NotHeld,
        };
        assert_eq!(lost.clone().to_string(), lost.to_string());
    }

    #[test]
    fn classification_table() {
        let name = LockName::new("n").unwrap();
        let io = || std::io::Error::other("boom");
        let cases: Vec<(Error, ErrorKind, bool)> = vec![
            (
                Error::LeaseLost {
                    name: name.clone(),
                    token: FencingToken::new(1),
                    reason: LossReason::NotHeld,
                },
                ErrorKind::LeaseLost,
                false,
            ),
            (
                Error::unavailable("redis", Operation::Renew, io()),
                ErrorKind::Unavailable,
                true,
            ),
            (
                Error::outcome_unknown("redis", Operation::Renew, io()),
                ErrorKind::OutcomeUnknown,
                true,
            ),
            (
                Error::invalid("ttl", "zero"),
                ErrorKind::InvalidInput,
                false,
            ),
            (
                Error::backend("etcd", Operation::Acquire, io()),
                ErrorKind::Backend,
                false,
            ),
            (
                Error::unsupported("memory", Operation::Diagnose, "no server"),
                ErrorKind::Unsupported,
                false,
            ),
            (
                Error::Timeout {
                    name,
                    waited: Duration::from_secs(1),
                },
                ErrorKind::Timeout,
                false,
            ),
        ];
        for (err, kind, transient) in cases {
            assert_eq!(err.kind(), kind, "{err}");
            assert_eq!(err.is_transient(), transient, "{err}");
        }
    }

    #[test]
    fn keeps_the_source_chain() {
        let err = Error::backend(
            "redis",
            Operation::Acquire,
            std::io::Error::other("root cause"),
        );
        assert_eq!(err.source().unwrap().to_string(), "root cause");
    }

    #[test]
    fn lost_message_names_the_token_and_what_to_do() {
        let err = Error::LeaseLost {
            name: LockName::new("jobs/42").unwrap(),
            token: FencingToken::new(17),
            reason: LossReason::Superseded {
                by: FencingToken::new(18),
            },
        };
        assert_eq!(
            err.to_string(),
            "lease on `jobs/42` lost: token 17 was superseded by token 18; stop writing with token 17"
        );
    }
}
