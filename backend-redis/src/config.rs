//! Plain, serde-friendly configuration, and URL redaction for `Debug`.

use std::fmt;
use std::time::Duration;

use fencelock_core::TtlLimits;
use fencelock_core::backend::{redact_url, ttl_millis};
use serde::{Deserialize, Serialize};

use crate::keys::DEFAULT_PREFIX;

/// Everything [`crate::RedisStoreBuilder`] can set, as a plain struct for config files.
///
/// Every field has a default, so `{"url": "redis://cache:6379"}` is a complete config.
/// `Debug` masks the password in `url`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` (crate feature `tls`) or
    /// `redis+unix:///path`.
    pub url: String,
    /// Prepended to every key and to the release channel (default `fencelock:`); no braces.
    pub key_prefix: String,
    /// The largest TTL accepted, in milliseconds (default 24 h).
    pub max_ttl_ms: u64,
    /// How long a request may wait for its reply before it is `OutcomeUnknown` (default 1 s).
    pub response_timeout_ms: u64,
    /// How long opening a connection may take (default 1 s).
    pub connect_timeout_ms: u64,
    /// How many times a request retries opening a broken connection before it fails as
    /// `Unavailable` (default 1).
    pub reconnect_attempts: usize,
    /// Whether waiters subscribe to release announcements (default `true`). Without them,
    /// waiters poll.
    pub push_wakeups: bool,
}

impl RedisConfig {
    /// The defaults with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    pub(crate) fn max_ttl(&self) -> Duration {
        Duration::from_millis(self.max_ttl_ms)
    }

    pub(crate) fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: DEFAULT_PREFIX.to_owned(),
            max_ttl_ms: ttl_millis(TtlLimits::DEFAULT_MAX),
            response_timeout_ms: 1_000,
            connect_timeout_ms: 1_000,
            reconnect_attempts: 1,
            push_wakeups: true,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("max_ttl_ms", &self.max_ttl_ms)
            .field("response_timeout_ms", &self.response_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("push_wakeups", &self.push_wakeups)
            .finish()
    }
}

#[cfg(test)]
mod tests {
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
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let config: RedisConfig = serde_json::from_str(r#"{"url": "redis://cache:6379"}"#).unwrap();
        assert_eq!(config, RedisConfig::new("redis://cache:6379"));
        assert!(serde_json::from_str::<RedisConfig>(r#"{"urll": "x"}"#).is_err());
    }
}
