//! Small pieces every backend needs, written once.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, FencingToken, HolderId, Lease, LockName, LossReason, OwnerLabel, PermitLimit};

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

/// The longest timeout a backend accepts (a day). Longer ones are mistakes (a lock store that
/// answers after a day has failed), and a near-`u64::MAX` one would overflow instant arithmetic
/// in the drivers.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A timeout from its `*_ms` config field: `default` when absent; zero or above
/// [`MAX_TIMEOUT`] is `InvalidInput` naming `what`.
///
/// # Errors
/// [`Error::InvalidInput`] for zero or more than a day.
pub fn timeout_from_ms(
    what: &'static str,
    ms: Option<u64>,
    default: Duration,
) -> Result<Duration, Error> {
    let Some(ms) = ms else {
        return Ok(default);
    };
    let timeout = Duration::from_millis(ms);
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(Error::invalid(
            what,
            format!(
                "{ms} ms is outside 1 ms..={} ms; give it a positive duration of at most a day",
                MAX_TIMEOUT.as_millis()
            ),
        ));
    }
    Ok(timeout)
}

/// `url` with every secret replaced by `***`, for `Debug`, logs and error messages: the
/// password of the user info (`redis://app:***@host`), a lone user info (Redis reads
/// `redis://secret@host` as a password, so any lone user info is masked: fail closed), and a
/// `password=` query parameter (`postgres://db/app?user=app&password=***`). Endpoints without
/// a scheme (`user:pass@host:2379`) are masked the same way.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let path = mask_query_password(path);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return format!("{scheme}{authority}{path}");
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None if userinfo.is_empty() => String::new(),
        None => "***".to_owned(),
    };
    format!("{scheme}{user}@{host}{path}")
}

fn mask_query_password(path: &str) -> String {
    let Some((before, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{before}?{}", params.join("&"))
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

/// `lease` as a permit of a semaphore with `limit`: what
/// [`LeaseStore::try_acquire_permit`](crate::LeaseStore::try_acquire_permit) returns.
pub fn permit(lease: Lease, limit: PermitLimit) -> Lease {
    lease.permit(limit)
}

/// `lease` as granted with `label` stored beside it (acquire paths: the label the caller passed
/// to [`crate::LeaseStore::try_acquire_as`]).
pub fn labeled(lease: Lease, label: Option<&OwnerLabel>) -> Lease {
    lease.labeled(label.cloned())
}

/// The owner label a store kept, as read back: `None` for an empty value or one that is not a
/// valid label (another tool's value under the key). A label is information, never a reason
/// to fail an inspect or a listing.
pub fn stored_label(stored: &str) -> Option<OwnerLabel> {
    OwnerLabel::from_stored(stored)
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
    fn timeouts_are_positive_and_at_most_a_day() {
        let default = Duration::from_secs(5);
        assert_eq!(
            timeout_from_ms("op timeout", None, default).unwrap(),
            default
        );
        assert_eq!(
            timeout_from_ms("op timeout", Some(1), default).unwrap(),
            Duration::from_millis(1)
        );
        assert!(timeout_from_ms("op timeout", Some(86_400_000), default).is_ok());
        for bad in [0, 86_400_001, u64::MAX] {
            let err = timeout_from_ms("op timeout", Some(bad), default).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains("op timeout"), "{err}");
        }
    }

    #[test]
    fn redaction_table() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:hunter2@host:6379/0", "redis://:***@host:6379/0"),
            ("rediss://app:hunter2@host", "rediss://app:***@host"),
            ("redis://hunter2@host", "redis://***@host"),
            (
                "redis://h:1/0?password=hunter2&x=1",
                "redis://h:1/0?password=***&x=1",
            ),
            ("redis://u:p@ss:hunter2@host", "redis://u:***@host"),
            (
                "postgres://app:hunter2@db:5432/app?sslmode=require",
                "postgres://app:***@db:5432/app?sslmode=require",
            ),
            (
                "postgres://db/app?user=app&PASSWORD=hunter2",
                "postgres://db/app?user=app&PASSWORD=***",
            ),
            ("postgres://u:p@db/app?x=@", "postgres://u:***@db/app?x=@"),
            ("http://a:hunter2@h:1/x@y", "http://a:***@h:1/x@y"),
            ("a:hunter2@h:2379", "a:***@h:2379"),
            ("http://h:2379", "http://h:2379"),
            ("not a url", "not a url"),
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
