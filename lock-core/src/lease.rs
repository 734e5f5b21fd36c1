//! Leases: what a store grants, and the client's conservative view of how long it lasts.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, FencingToken, LockName, OwnerLabel, PermitLimit};

/// Identifies one grant's holder: 128 random bits, chosen per grant.
///
/// Renew and release compare it (together with the token), so one holder can never renew
/// or free another's grant. Backends whose server names holders itself (etcd lease ids)
/// store that id here.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HolderId([u64; 2]);

impl HolderId {
    /// A fresh random holder id.
    pub fn random() -> Self {
        Self::from_u128(rand::random())
    }

    /// Wraps a raw value (backends: [`crate::backend::holder_id`]).
    pub(crate) const fn from_u128(value: u128) -> Self {
        // Two halves, not a `u128`: 8-byte alignment keeps every lease (and the state a guard
        // shares with its watchdog) free of padding.
        Self([(value >> 64) as u64, value as u64])
    }

    /// The raw value.
    pub const fn as_u128(self) -> u128 {
        ((self.0[0] as u128) << 64) | self.0[1] as u128
    }

    /// Parses the 32-digit hex form printed by `Display`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `hex` is not 1 to 32 hex digits.
    pub fn parse_hex(hex: &str) -> Result<Self, Error> {
        if hex.is_empty() || hex.len() > 32 {
            return Err(Error::invalid("holder id", "expected 1 to 32 hex digits"));
        }
        u128::from_str_radix(hex, 16)
            .map(Self::from_u128)
            .map_err(|e| Error::invalid("holder id", format!("expected hex digits: {e}")))
    }
}

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.as_u128())
    }
}

impl fmt::Debug for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HolderId({self})")
    }
}

/// The margin subtracted from a granted TTL for the local deadline: 1 % of the TTL plus 2 ms
/// (the clock-drift allowance Redlock uses), at most half the TTL.
pub fn safety_margin(ttl: Duration) -> Duration {
    (ttl / 100 + Duration::from_millis(2)).min(ttl / 2)
}

/// One grant of a lock, as the holder sees it.
///
/// The `deadline` is conservative: the monotonic instant at which the acquire (or last renew)
/// request was *sent*, plus the granted TTL, minus [`crate::backend::safety_margin`]. The server started its
/// TTL no earlier than the send, so before the deadline the grant cannot have expired on the
/// server — even if this process was paused and has heard nothing since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    name: LockName,
    token: FencingToken,
    holder: HolderId,
    ttl: Duration,
    deadline: Instant,
    label: Option<OwnerLabel>,
    /// `Some` for a permit of a semaphore with this limit; `None` for a lock.
    permits: Option<PermitLimit>,
}

impl Lease {
    /// A grant as a backend reports it (backends: [`crate::backend::granted_lease`]).
    pub(crate) fn granted(
        name: LockName,
        token: FencingToken,
        holder: HolderId,
        ttl: Duration,
        sent_at: Instant,
    ) -> Self {
        Self {
            name,
            token,
            holder,
            ttl,
            deadline: deadline_after(sent_at, ttl),
            label: None,
            permits: None,
        }
    }

    /// This grant as a permit of a semaphore with `limit` (backends: [`crate::backend::permit`]).
    pub(crate) fn permit(self, limit: PermitLimit) -> Self {
        Self {
            permits: Some(limit),
            ..self
        }
    }

    /// This grant, stored with `label` (backends: [`crate::backend::labeled`]).
    pub(crate) fn labeled(self, label: Option<OwnerLabel>) -> Self {
        Self { label, ..self }
    }

    /// This grant after a successful renewal sent at `sent_at` for `ttl` (backends:
    /// [`crate::backend::renewed_lease`]).
    pub(crate) fn renewed(&self, ttl: Duration, sent_at: Instant) -> Self {
        Self {
            ttl,
            deadline: deadline_after(sent_at, ttl),
            ..self.clone()
        }
    }

    /// The lock's name (the semaphore's, for a permit).
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// For a permit of a semaphore, the semaphore's limit; `None` for a lock. Stores branch on
    /// it in `renew`, `renew_many` and `release`.
    pub fn permit_limit(&self) -> Option<PermitLimit> {
        self.permits
    }

    /// The fencing token of this grant.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// The holder id of this grant.
    pub fn holder(&self) -> HolderId {
        self.holder
    }

    /// The owner label stored with this grant, if it was given one.
    pub fn label(&self) -> Option<&OwnerLabel> {
        self.label.as_ref()
    }

    /// The TTL the server granted (backends may round requests up, e.g. etcd to whole seconds).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The conservative local deadline (see the type's docs).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the local deadline; zero once it passed.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether the local deadline has not passed yet.
    pub fn is_locally_valid(&self) -> bool {
        Instant::now() < self.deadline
    }
}

fn deadline_after(sent_at: Instant, ttl: Duration) -> Instant {
    // Fail closed: a deadline that cannot be represented is treated as already passed.
    sent_at
        .checked_add(ttl.saturating_sub(safety_margin(ttl)))
        .unwrap_or(sent_at)
}

/// What [`crate::LeaseStore::inspect`] reports about a held lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The current holder's token.
    pub token: FencingToken,
    /// The current holder's id, where the store keeps it.
    pub holder: Option<HolderId>,
    /// Time left on the lease, as judged by the server's clock when it answered.
    pub remaining: Duration,
    /// The holder's owner label, if it set one (see [`OwnerLabel`]).
    pub label: Option<OwnerLabel>,
}

/// The TTLs a store accepts: at least [`TtlLimits::MIN`], at most a configurable maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlLimits {
    max: Duration,
}

impl TtlLimits {
    /// The shortest TTL any store accepts (1 ms); shorter ones are invalid input.
    pub const MIN: Duration = Duration::from_millis(1);
    /// The default maximum TTL (24 hours).
    pub const DEFAULT_MAX: Duration = Duration::from_secs(24 * 60 * 60);

    /// Limits with the given maximum TTL.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `max` is below [`TtlLimits::MIN`] or above 10 years.
    pub fn with_max(max: Duration) -> Result<Self, Error> {
        const CEILING: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
        if max < Self::MIN || max > CEILING {
            return Err(Error::invalid(
                "max ttl",
                format!("{max:?} is outside 1ms..=10 years"),
            ));
        }
        Ok(Self { max })
    }

    /// The maximum TTL.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Checks a requested TTL.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for zero, sub-millisecond, and above-maximum TTLs.
    pub fn check(&self, ttl: Duration) -> Result<Duration, Error> {
        Self::check_floor(ttl)?;
        if ttl > self.max {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "{ttl:?} is above this store's maximum of {:?}; raise it with with_max_ttl if you mean it",
                    self.max
                ),
            ));
        }
        Ok(ttl)
    }

    /// The part of [`TtlLimits::check`] that holds for every store: a TTL is at least
    /// [`TtlLimits::MIN`].
    pub(crate) fn check_floor(ttl: Duration) -> Result<(), Error> {
        if ttl.is_zero() {
            return Err(Error::invalid(
                "ttl",
                "it is zero; a lease needs a positive TTL",
            ));
        }
        if ttl < Self::MIN {
            return Err(Error::invalid(
                "ttl",
                format!("{ttl:?} is below the 1ms minimum; stores count TTLs in milliseconds"),
            ));
        }
        Ok(())
    }
}

impl Default for TtlLimits {
    fn default() -> Self {
        Self {
            max: Self::DEFAULT_MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn holder_ids_round_trip_through_hex() {
        let id = HolderId::random();
        assert_eq!(HolderId::parse_hex(&id.to_string()).unwrap(), id);
        assert_eq!(id.to_string().len(), 32);
        assert!(HolderId::parse_hex("xyz").is_err());
        assert!(HolderId::parse_hex("").is_err());
        assert!(HolderId::parse_hex(&"f".repeat(33)).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_is_conservative() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(10);
        let lease = Lease::granted(
            LockName::new("n").unwrap(),
            FencingToken::new(1),
            HolderId::random(),
            ttl,
            sent,
        );
        assert_eq!(lease.deadline(), sent + ttl - Duration::from_millis(102));
        assert!(lease.is_locally_valid());
        tokio::time::advance(ttl).await;
        assert!(!lease.is_locally_valid());
        assert_eq!(lease.remaining(), Duration::ZERO);
    }

    #[test]
    fn ttl_table() {
        let limits = TtlLimits::default();
        for (ttl, ok) in [
            (Duration::ZERO, false),
            (Duration::from_micros(999), false),
            (Duration::from_millis(1), true),
            (Duration::from_secs(30), true),
            (TtlLimits::DEFAULT_MAX, true),
            (TtlLimits::DEFAULT_MAX + Duration::from_millis(1), false),
            (Duration::MAX, false),
        ] {
            let got = limits.check(ttl);
            assert_eq!(got.is_ok(), ok, "{ttl:?}");
            if let Err(e) = got {
                assert_eq!(e.kind(), ErrorKind::InvalidInput);
            }
        }
        assert!(TtlLimits::with_max(Duration::ZERO).is_err());
        assert!(TtlLimits::with_max(Duration::MAX).is_err());
    }

    #[test]
    fn huge_ttl_never_overflows_the_deadline() {
        let now = Instant::now();
        let lease = Lease::granted(
            LockName::new("n").unwrap(),
            FencingToken::new(1),
            HolderId::random(),
            Duration::MAX,
            now,
        );
        // Fail closed: an unrepresentable deadline is already past.
        assert_eq!(lease.deadline(), now);
        assert!(!lease.is_locally_valid());
    }
}
