//! Options of one acquire: TTL, how long to wait, how to renew.

use std::time::Duration;

use crate::wait::WaitPolicy;
use crate::{Error, OwnerLabel};

/// How long [`crate::Locker::acquire`] waits for a held lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Try once.
    No,
    /// Wait up to this long.
    Timeout(Duration),
    /// Wait until granted (or the future is dropped).
    Forever,
}

/// Whether the guard's watchdog renews the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Renew every `every`, or every TTL/3 when `None`.
    Auto {
        /// The renew interval; must be below TTL/2.
        every: Option<Duration>,
    },
    /// Never renew: the lease ends at its TTL, and the guard reports loss at its local deadline.
    Off,
}

/// The owner label an acquire stores with its grant.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelChoice {
    /// [`OwnerLabel::this_process`].
    ThisProcess,
    Given(OwnerLabel),
    Unlabeled,
}

/// Options of one acquire. Build with [`AcquireOptions::new`] and the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use fencelock_core::AcquireOptions;
///
/// let opts = AcquireOptions::new()
///     .with_ttl(Duration::from_secs(10))
///     .with_timeout(Duration::from_secs(2));
/// assert_eq!(opts.ttl(), Duration::from_secs(10));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcquireOptions {
    ttl: Duration,
    wait: Wait,
    renewal: Renewal,
    poll_interval: Duration,
    label: LabelChoice,
}

impl Default for AcquireOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl AcquireOptions {
    /// The default TTL (30 s, as Redisson's watchdog).
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

    /// TTL 30 s, wait forever, renew automatically every TTL/3, labelled with
    /// [`OwnerLabel::this_process`] (host and pid).
    pub const fn new() -> Self {
        Self {
            ttl: Self::DEFAULT_TTL,
            wait: Wait::Forever,
            renewal: Renewal::Auto { every: None },
            poll_interval: WaitPolicy::DEFAULT_POLL_INTERVAL,
            label: LabelChoice::ThisProcess,
        }
    }

    /// Stores `label` with the grant instead of the default host and pid (`fencelock status`
    /// and [`crate::LeaseStore::inspect`] show it).
    pub fn with_label(mut self, label: OwnerLabel) -> Self {
        self.label = LabelChoice::Given(label);
        self
    }

    /// Stores no owner label with the grant.
    pub fn without_label(mut self) -> Self {
        self.label = LabelChoice::Unlabeled;
        self
    }

    /// The owner label the grant will carry: the one given, else host and pid, unless
    /// [`AcquireOptions::without_label`].
    pub fn label(&self) -> Option<OwnerLabel> {
        match &self.label {
            LabelChoice::ThisProcess => Some(OwnerLabel::this_process()),
            LabelChoice::Given(label) => Some(label.clone()),
            LabelChoice::Unlabeled => None,
        }
    }

    /// Sets the lease TTL.
    pub const fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Waits up to `timeout` for a held lock.
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.wait = Wait::Timeout(timeout);
        self
    }

    /// Tries once and does not wait.
    pub const fn with_no_wait(mut self) -> Self {
        self.wait = Wait::No;
        self
    }

    /// Waits until granted.
    pub const fn with_wait_forever(mut self) -> Self {
        self.wait = Wait::Forever;
        self
    }

    /// Renews every `every` instead of TTL/3; rejected at acquire if not below TTL/2.
    pub const fn with_renew_interval(mut self, every: Duration) -> Self {
        self.renewal = Renewal::Auto { every: Some(every) };
        self
    }

    /// Turns renewal off: the lease lasts one TTL.
    pub const fn without_renewal(mut self) -> Self {
        self.renewal = Renewal::Off;
        self
    }

    /// The longest a waiter sleeps between attempts when no notification wakes it.
    pub const fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// The lease TTL.
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The wait mode.
    pub const fn wait(&self) -> Wait {
        self.wait
    }

    /// The renewal mode.
    pub const fn renewal(&self) -> Renewal {
        self.renewal
    }

    /// The poll interval.
    pub const fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The renew interval to use, validated against the TTL; `None` when renewal is off.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a TTL below [`crate::TtlLimits::MIN`], a zero interval, or
    /// one not below TTL/2.
    pub fn renew_every(&self) -> Result<Option<Duration>, Error> {
        // An interval is a fraction of the TTL, so a TTL no store accepts is the error to report
        // (the store's maximum is the store's to check, once, when the request is made).
        crate::TtlLimits::check_floor(self.ttl)?;
        let every = match self.renewal {
            Renewal::Off => return Ok(None),
            Renewal::Auto { every: None } => self.ttl / 3,
            Renewal::Auto { every: Some(every) } => every,
        };
        if every.is_zero() || every >= self.ttl / 2 {
            return Err(Error::invalid(
                "renew interval",
                format!(
                    "{every:?} must be above zero and below half the TTL ({:?}), so that one failed renewal still leaves time for another",
                    self.ttl / 2
                ),
            ));
        }
        Ok(Some(every))
    }

    /// Validates the poll interval.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a zero poll interval.
    pub(crate) fn checked_poll_interval(&self) -> Result<Duration, Error> {
        if self.poll_interval.is_zero() {
            return Err(Error::invalid(
                "poll interval",
                "it is zero; use at least 1ms",
            ));
        }
        Ok(self.poll_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_defaults_to_this_process() {
        let opts = AcquireOptions::new();
        assert_eq!(opts.label(), Some(OwnerLabel::this_process()));
        let worker = OwnerLabel::new("worker-3").unwrap();
        assert_eq!(
            opts.clone().with_label(worker.clone()).label(),
            Some(worker)
        );
        assert_eq!(opts.without_label().label(), None);
    }

    #[test]
    fn renew_interval_table() {
        let ttl = Duration::from_secs(9);
        let base = AcquireOptions::new().with_ttl(ttl);
        assert_eq!(base.renew_every().unwrap(), Some(Duration::from_secs(3)));
        assert_eq!(base.clone().without_renewal().renew_every().unwrap(), None);
        for (every, ok) in [
            (Duration::ZERO, false),
            (Duration::from_millis(1), true),
            (Duration::from_millis(4499), true),
            (Duration::from_millis(4500), false),
            (ttl, false),
        ] {
            assert_eq!(
                base.clone()
                    .with_renew_interval(every)
                    .renew_every()
                    .is_ok(),
                ok,
                "{every:?}"
            );
        }
    }
}
