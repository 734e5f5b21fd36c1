//! Everything a backend author needs and a user of locks does not: the guide to writing a
//! [`LeaseStore`](crate::LeaseStore).
//!
//! Users call [`Locker`](crate::Locker) and the types at the crate root. A backend implements
//! the small [`LeaseStore`](crate::LeaseStore) contract, and leaves waiting, renewal, retries,
//! loss signals, guarded runs and regression checks to core, which does them once for every
//! store. This module holds the pieces a store is built from.
//!
//! # The contract in five rules
//!
//! 1. **Tokens only rise.** Mint the [`FencingToken`](crate::FencingToken) in the same atomic
//!    step that grants the lock (one script, one statement, one txn), strictly above every
//!    token ever granted for the name: across release, expiry, restart and failover. Keep it
//!    below [`FencingToken::MAX_EXACT`](crate::FencingToken::MAX_EXACT); overflow is an error,
//!    never a wrap.
//! 2. **The server's clock judges expiry.** Never compare client wall clocks. Report the TTL
//!    the server granted and the instant the request was *sent*: [`granted_lease`] turns them
//!    into the conservative local deadline ([`safety_margin`]).
//! 3. **Renew and release compare the exact grant**, holder id *and* token, and never revive an
//!    expired grant. When they find it gone, answer [`lost_or_superseded`] with the current
//!    holder's token, so the client can say who took over.
//! 4. **Contention is a value** (`Ok(None)`); failure is an [`Error`](crate::Error) that
//!    classifies itself, decided in one `classify` function per backend: not applied →
//!    [`Error::unavailable`](crate::Error::unavailable); maybe applied (a timeout after
//!    sending) → [`Error::outcome_unknown`](crate::Error::outcome_unknown); bad input →
//!    [`Error::invalid`](crate::Error::invalid), before anything is sent (validate TTLs with
//!    [`TtlLimits::check`](crate::TtlLimits::check)).
//! 5. **Waiters are woken, not left to poll**, where the store can push: feed a
//!    [`WakeupHub`] from the store's channel (pub/sub, `NOTIFY`, watch) and answer
//!    [`LeaseStore::watch_released`](crate::LeaseStore::watch_released) with
//!    [`WakeupHub::subscribe`]. The default
//!    [`acquire_waiting`](crate::LeaseStore::acquire_waiting) is [`acquire_with_polling`]; a
//!    store with a native queue (etcd) overrides it.
//!
//! # The pieces
//!
//! | item | for |
//! | --- | --- |
//! | [`granted_lease`], [`renewed_lease`], [`holder_id`], [`safety_margin`] | building the [`Lease`](crate::Lease) a grant or renewal returns |
//! | [`permit`], [`limit_mismatch`], [`Permits::new`](crate::Permits::new), [`PermitAttempt`](crate::PermitAttempt), [`acquire_permit_with_polling`] | semaphores: a grant marked as a permit, the error for a limit other than the holders', the holders as `inspect_permits` answers them, a refusal with the first permit's time left (answer it from the grant's own request in `try_acquire_permit_or_next_expiry` if the store can: the default reads every permit), the generic permit wait |
//! | [`labeled`], [`stored_label`] | the owner label a grant was given; a label read back from the store (`None` for anything not a valid label) |
//! | [`ListQuery::page`](crate::ListQuery::page), [`ListQuery::admits`](crate::ListQuery::admits) | one page of a listing from whatever a backend found under the prefix |
//! | [`lost_or_superseded`], [`fail_each`] | the `LeaseLost` of a grant that is gone; one error for every lease of a failed batch |
//! | [`WakeupHub`], [`ReleaseWatch`] | push wake-ups: one waiter per release, FIFO; which names are watched |
//! | [`acquire_with_polling`], [`WaitPolicy`], [`with_jitter`] | the generic waiting loop behind `acquire_waiting` |
//! | [`ttl_millis`] | a TTL in whole milliseconds, rounded up: the one rounding rule |
//! | [`timeout_from_ms`], [`MAX_TIMEOUT`] | a timeout from its `*_ms` config field, validated the same way in every backend |
//! | [`redact_url`] | a URL without its password, for `Debug` and messages |
//! | [`lock_unpoisoned`] | a `Mutex` lock that survives an earlier panic |
//! | [`ForwardingStore`] | wrapping a store (instrumentation, fault injection) without skipping a method |
//!
//! # Proving it
//!
//! `fencelock-conformance` holds the proof, run against a real server from your crate's tests
//! (it needs no `tokio` dependency of yours):
//!
//! - `conformance_suite!(fixture)`: one named test per `# Behavior` bullet of
//!   [`LeaseStore`](crate::LeaseStore), [`Locker`](crate::Locker) and
//!   [`LockGuard`](crate::LockGuard); a failure names the operation at fault and its values.
//! - `fence_suite!(fixture)`: one per bullet of [`Fence`](crate::Fence).
//! - `history::check_store(store, options)`: contending workers, holders whose calls stall
//!   past the TTL, your own server faults, and the checkers I1–I6 over the history.
//!
//! Its harness starts real Redis, PostgreSQL and etcd servers, or uses the external ones that
//! `FENCELOCK_REDIS_URL`, `FENCELOCK_POSTGRES_URL` and `FENCELOCK_ETCD_ENDPOINTS` name. The
//! guide, `docs/WRITING_A_BACKEND.md` in the repository, walks through a complete backend
//! written outside the library crates (`examples/table-store`); its code compiles as that
//! crate's doctests.

mod forward;
mod helpers;

pub use crate::lease::safety_margin;
pub use crate::semaphore::limit_mismatch;
pub use crate::wait::{WaitPolicy, acquire_permit_with_polling, acquire_with_polling, with_jitter};
pub use crate::wake::{ReleaseWatch, WakeupHub};
pub use forward::ForwardingStore;
pub use helpers::{
    MAX_TIMEOUT, fail_each, granted_lease, holder_id, labeled, lock_unpoisoned, lost_or_superseded,
    permit, redact_url, renewed_lease, stored_label, timeout_from_ms, ttl_millis,
};
