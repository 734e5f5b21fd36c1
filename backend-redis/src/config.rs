//! `RedisConfig`: everything a [`crate::RedisBuilder`] can set, as plain data for a config file;
//! and `Settings`, the same with defaults applied and every value checked.

use std::fmt;
use std::time::Duration;

use fencelock_core::backend::{redact_url, timeout_from_ms as timeout};
use fencelock_core::{Error, TtlLimits};
use serde::{Deserialize, Serialize};

use crate::keys::{DEFAULT_PREFIX, KeyLayout};

/// Everything [`crate::RedisBuilder`] can set, as plain data for a config file (serde).
///
/// Every field is optional: absent means the default. Durations are whole milliseconds
/// (`*_ms`), as in every fencelock backend's config. An unknown field is an error, so a typo is
/// never silently ignored. `{"url": "redis://cache:6379"}` is a complete config;
/// [`crate::RedisLeaseStore::from_config`] connects with it. `Debug` masks the password.
///
/// The struct is `#[non_exhaustive]`: start from [`RedisConfig::new`] or `Default` and set fields,
/// or load it from a file.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` (crate feature `tls`) or
    /// `redis+unix:///path` (for `connect`); `redis+cluster://h1:p1,h2:p2,…` (for
    /// `connect_cluster`); `redis+sentinel://s1:p1,s2:p2,…/PRIMARY_NAME` (for
    /// `connect_sentinel`). Ignored by `from_client`/`from_connection`.
    pub url: Option<String>,
    /// Prepended to every key and release channel (default `fencelock:`); at most 128 bytes, no
    /// `{`, `}` or control characters.
    pub key_prefix: Option<String>,
    /// How long a request may wait for its reply before it fails as `OutcomeUnknown`
    /// (default 1 s).
    pub op_timeout_ms: Option<u64>,
    /// How long opening a connection (and the subscriber) may take (default 1 s).
    pub connect_timeout_ms: Option<u64>,
    /// The largest TTL accepted (default 24 h, at most 10 years).
    pub max_ttl_ms: Option<u64>,
    /// Whether waiters subscribe to release announcements (default `true`); without them,
    /// waiters poll.
    pub push_wakeups: Option<bool>,
    /// How many times a request retries opening a broken connection before it fails as
    /// `Unavailable` (default 1).
    pub reconnect_attempts: Option<usize>,
}

impl RedisConfig {
    /// The default key prefix.
    pub const DEFAULT_KEY_PREFIX: &str = DEFAULT_PREFIX;
    /// The default operation timeout.
    pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default number of reconnect attempts per request.
    pub const DEFAULT_RECONNECT_ATTEMPTS: usize = 1;

    /// The defaults, with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Defaults applied and every option checked; the URL is the caller's to check.
    pub(crate) fn settings(&self) -> Result<Settings, Error> {
        Ok(Settings {
            layout: KeyLayout::new(self.key_prefix.as_deref().unwrap_or(DEFAULT_PREFIX))?,
            limits: max_ttl(self.max_ttl_ms)?,
            op_timeout: timeout("op timeout", self.op_timeout_ms, Self::DEFAULT_OP_TIMEOUT)?,
            connect_timeout: timeout(
                "connect timeout",
                self.connect_timeout_ms,
                Self::DEFAULT_CONNECT_TIMEOUT,
            )?,
            push_wakeups: self.push_wakeups.unwrap_or(true),
            reconnect_attempts: self
                .reconnect_attempts
                .unwrap_or(Self::DEFAULT_RECONNECT_ATTEMPTS),
        })
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("key_prefix", &self.key_prefix)
            .field("op_timeout_ms", &self.op_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_ttl_ms", &self.max_ttl_ms)
            .field("push_wakeups", &self.push_wakeups)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .finish()
    }
}

/// A [`RedisConfig`] with its defaults applied and every value checked.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) layout: KeyLayout,
    pub(crate) limits: TtlLimits,
    pub(crate) op_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) push_wakeups: bool,
    pub(crate) reconnect_attempts: usize,
}

/// The TTL limits from the `max_ttl_ms` field (default [`TtlLimits::DEFAULT_MAX`]).
pub(crate) fn max_ttl(ms: Option<u64>) -> Result<TtlLimits, Error> {
    TtlLimits::with_max(ms.map_or(TtlLimits::DEFAULT_MAX, Duration::from_millis))
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;

    use super::*;

    #[test]
    fn debug_never_prints_passwords() {
        for url in [
            "redis://:hunter2@host:6379/0",
            "rediss://app:hunter2@host",
            "redis://hunter2@host",
            "redis://h:1/0?password=hunter2&x=1",
        ] {
            let debug = format!("{:?}", RedisConfig::new(url));
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(debug.contains("***"), "{debug}");
        }
    }

    #[test]
    fn loads_from_a_file_with_defaults_and_rejects_unknown_fields() {
        let config: RedisConfig = serde_json::from_str(r#"{"url": "redis://cache:6379"}"#).unwrap();
        assert_eq!(config, RedisConfig::new("redis://cache:6379"));
        let settings = config.settings().unwrap();
        assert_eq!(settings.layout.prefix(), "fencelock:");
        assert_eq!(settings.op_timeout, RedisConfig::DEFAULT_OP_TIMEOUT);
        assert_eq!(settings.limits.max(), TtlLimits::DEFAULT_MAX);
        assert!(settings.push_wakeups);

        let full: RedisConfig = serde_json::from_str(
            r#"{"url": "redis://cache:6379", "key_prefix": "app:", "op_timeout_ms": 250,
                "connect_timeout_ms": 2000, "max_ttl_ms": 60000, "push_wakeups": false,
                "reconnect_attempts": 3}"#,
        )
        .unwrap();
        let settings = full.settings().unwrap();
        assert_eq!(settings.layout.prefix(), "app:");
        assert_eq!(settings.op_timeout, Duration::from_millis(250));
        assert_eq!(settings.connect_timeout, Duration::from_secs(2));
        assert_eq!(settings.limits.max(), Duration::from_secs(60));
        assert!(!settings.push_wakeups);
        assert_eq!(settings.reconnect_attempts, 3);
        let round_trip: RedisConfig =
            serde_json::from_str(&serde_json::to_string(&full).unwrap()).unwrap();
        assert_eq!(round_trip, full);

        for typo in [
            r#"{"urll": "x"}"#,
            r#"{"response_timeout_ms": 5}"#,
            r#"{"op_timeout_ms": "1s"}"#,
        ] {
            assert!(serde_json::from_str::<RedisConfig>(typo).is_err(), "{typo}");
        }
    }

    /// What a bad value is, and how to set it.
    type Case = (&'static str, fn(&mut RedisConfig));

    #[test]
    fn bad_values_are_invalid_input() {
        let cases: &[Case] = &[
            ("zero op timeout", |c| c.op_timeout_ms = Some(0)),
            ("zero connect timeout", |c| c.connect_timeout_ms = Some(0)),
            ("op timeout above a day", |c| {
                c.op_timeout_ms = Some(u64::MAX)
            }),
            ("zero max ttl", |c| c.max_ttl_ms = Some(0)),
            ("max ttl above 10 years", |c| c.max_ttl_ms = Some(u64::MAX)),
            ("brace in prefix", |c| c.key_prefix = Some("{tag}".into())),
            ("control character in prefix", |c| {
                c.key_prefix = Some("a\nb".into());
            }),
            ("prefix too long", |c| c.key_prefix = Some("p".repeat(129))),
        ];
        for (what, set) in cases {
            let mut config = RedisConfig::new("redis://h:1");
            set(&mut config);
            let err = config.settings().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        }
    }
}
