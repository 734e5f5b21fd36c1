//! Small pieces every backend needs, written once.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, FencingToken, HolderId, Lease, LockName, LossReason};

/// Locks `mutex` even if a thread panicked while holding it, so that one panic does not make
/// every later call panic too.
///
/// Use it for critical sections that only update plain maps, counters and handles, where a
/// half-done update leaves nothing unsafe behind. A section that runs caller code or must stay
/// atomic with a safety check (raising a fence's high-water mark) must make its own argument.
pub fn lock_unpoisoned<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A TTL in whole milliseconds, **rounded up**, saturating at `u64::MAX`.
///
/// The one rounding rule of every backend: a store is never asked for a grant shorter than the
/// caller's TTL, and the local deadline (counted from the caller's TTL, minus the safety margin)
/// can only be earlier than the server's expiry, never later. Sub-millisecond TTLs never reach
/// here: [`crate::TtlLimits::check`] rejects them.
pub fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// `url` with any password replaced by `***`, for `Debug`, logs and error messages:
/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`.
///
/// Only the userinfo before the last `@` of the authority is touched; a URL without a password
/// is returned as it is. A `user` alone is not a secret and is kept, so a message still says
/// who connected.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = authority.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}{user}:***{host}{tail}"),
        None => url.to_owned(),
    }
}

/// The [`Error::LeaseLost`] for `lease` when the store no longer holds it: `Superseded` when
/// the store's current grant of the name (`current`, its token) is newer, else `NotHeld`
/// (expired, released, broken, or a forged lease).
pub fn lost_or_superseded(lease: &Lease, current: Option<FencingToken>) -> Error {
    let reason = match current {
        Some(by) if by > lease.token() => LossReason::Superseded { by },
        _ => LossReason::NotHeld,
    };
    Error::lost(lease, reason)
}

/// One error for each of `n` operations that failed as a whole (a batch of renewals whose
/// connection broke, say): `n` clones of `error`, which share its source chain.
pub fn fail_each<T>(error: Error, n: usize) -> Vec<Result<T, Error>> {
    std::iter::repeat_n(error, n).map(Err).collect()
}

/// A grant as the store reports it: `ttl` is what the server granted (after any rounding), and
/// `sent_at` the monotonic instant the request left this process. The lease's local deadline
/// is `sent_at + ttl − safety_margin(ttl)`.
pub fn granted_lease(
    name: LockName,
    token: FencingToken,
    holder: HolderId,
    ttl: Duration,
    sent_at: Instant,
) -> Lease {
    Lease::granted(name, token, holder, ttl, sent_at)
}

/// `lease` after a renewal for `ttl` that was sent at `sent_at` and confirmed.
pub fn renewed_lease(lease: &Lease, ttl: Duration, sent_at: Instant) -> Lease {
    lease.renewed(ttl, sent_at)
}

/// A holder id the server chose (etcd's lease ids), or one read back from a store.
pub const fn holder_id(raw: u128) -> HolderId {
    HolderId::from_u128(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_millis_rounds_up_and_saturates() {
        assert_eq!(ttl_millis(Duration::from_millis(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1_001)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(30)), 30_000);
        assert_eq!(ttl_millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn redaction_table() {
        for (url, shown) in [
            ("redis://h:6379", "redis://h:6379"),
            ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://user:pw@h:6379/0", "redis://user:***@h:6379/0"),
            ("redis://user@h:6379", "redis://user@h:6379"),
            (
                "postgres://u:p@ss@db/app?x=@",
                "postgres://u:***@db/app?x=@",
            ),
            ("http://a:b@h:1/x@y", "http://a:***@h:1/x@y"),
            ("u:p@h:1", "u:***@h:1"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn loss_names_the_newer_grant_only_when_newer() {
        let name = LockName::new("n").unwrap();
        let lease = granted_lease(
            name,
            FencingToken::new(5),
            HolderId::random(),
            Duration::from_secs(1),
            Instant::now(),
        );
        let reason =
            |current: Option<u64>| match lost_or_superseded(&lease, current.map(FencingToken::new))
            {
                Error::LeaseLost { reason, .. } => reason,
                other => panic!("expected LeaseLost, got {other:?}"),
            };
        assert_eq!(
            reason(Some(6)),
            LossReason::Superseded {
                by: FencingToken::new(6)
            }
        );
        assert_eq!(reason(Some(5)), LossReason::NotHeld);
        assert_eq!(reason(Some(4)), LossReason::NotHeld);
        assert_eq!(reason(None), LossReason::NotHeld);
    }

    #[test]
    fn fail_each_answers_every_operation() {
        let answers: Vec<Result<(), Error>> = fail_each(Error::invalid("ttl", "zero"), 3);
        assert_eq!(answers.len(), 3);
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Err(e) if e.to_string() == "invalid ttl: zero"))
        );
        assert!(fail_each::<()>(Error::invalid("ttl", "zero"), 0).is_empty());
    }
}
