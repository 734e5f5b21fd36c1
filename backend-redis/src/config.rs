//! Plain, serde-friendly configuration, and URL redaction for `Debug`.

use std::fmt;
use std::time::Duration;

use fencelock_core::TtlLimits;
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
            max_ttl_ms: millis(TtlLimits::DEFAULT_MAX),
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

/// A duration in whole milliseconds, rounded up, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// `url` with any password replaced by `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let masked_query = mask_query_password(path);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return format!("{scheme}://{authority}{masked_query}");
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None if userinfo.is_empty() => String::new(),
        // `redis://secret@host` puts the password where a user name would be.
        None => "***".to_owned(),
    };
    format!("{scheme}://{user}@{host}{masked_query}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_passwords() {
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
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            let debug = format!("{:?}", RedisConfig::new(url));
            assert!(!debug.contains("hunter2"), "{debug}");
        }
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let config: RedisConfig = serde_json::from_str(r#"{"url": "redis://cache:6379"}"#).unwrap();
        assert_eq!(config, RedisConfig::new("redis://cache:6379"));
        assert!(serde_json::from_str::<RedisConfig>(r#"{"urll": "x"}"#).is_err());
    }

    #[test]
    fn millis_round_up() {
        assert_eq!(millis(Duration::from_micros(1_001)), 2);
        assert_eq!(millis(Duration::from_millis(5)), 5);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
