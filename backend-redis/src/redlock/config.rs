//! Plain, serde-friendly configuration of a Redlock store.

use std::fmt;
use std::time::Duration;

use fencelock_core::backend::{redact_url, ttl_millis};
use fencelock_core::{Error, TtlLimits};
use serde::{Deserialize, Serialize};

use crate::keys::DEFAULT_PREFIX;

/// The default clock-drift factor: 1 % of the TTL (plus 2 ms) is not trusted.
pub const DEFAULT_DRIFT_FACTOR: f64 = 0.01;

/// The most servers a Redlock store accepts.
pub const MAX_SERVERS: usize = 31;

/// Everything [`crate::RedlockStoreBuilder`] can set, as a plain struct for config files.
///
/// Every field but `servers` has a default, so
/// `{"servers": ["redis://a:6379", "redis://b:6379", "redis://c:6379"]}` is a complete config.
/// `Debug` masks passwords in the URLs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedlockConfig {
    /// One `redis://[user:password@]host[:port][/db]` URL per independent server: an odd
    /// number, at least 3.
    pub servers: Vec<String>,
    /// Prepended to every key and to the release channel (default `fencelock:`); no braces.
    pub key_prefix: String,
    /// The largest TTL accepted, in milliseconds (default 24 h).
    pub max_ttl_ms: u64,
    /// The share of the TTL not trusted because server clocks may run fast (default 0.01);
    /// 2 ms are always added. At least 0, below 0.5.
    pub drift_factor: f64,
    /// The longest one request to one server may take, in milliseconds (default 100). An
    /// acquire waits at most a quarter of its TTL, whichever is shorter; a server that does not
    /// answer in time counts as a "no" and never holds the others up.
    pub server_timeout_ms: u64,
    /// How long opening a connection (and the subscriber) may take (default 1 s).
    pub connect_timeout_ms: u64,
    /// Whether waiters subscribe to release announcements on every server (default `true`).
    pub push_wakeups: bool,
}

impl RedlockConfig {
    /// The defaults with `servers`.
    pub fn new<I, S>(servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    pub(crate) fn max_ttl(&self) -> Duration {
        Duration::from_millis(self.max_ttl_ms)
    }

    pub(crate) fn server_timeout(&self) -> Duration {
        Duration::from_millis(self.server_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Checks every option; nothing is sent.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let n = self.servers.len();
        if n < 3 || n.is_multiple_of(2) || n > MAX_SERVERS {
            return Err(Error::invalid(
                "redlock servers",
                format!(
                    "got {n}; Redlock needs an odd number of independent servers, at least 3 and at most {MAX_SERVERS} (a majority of an even number tolerates no more failures than one server fewer)"
                ),
            ));
        }
        for (i, url) in self.servers.iter().enumerate() {
            if self.servers[..i].iter().any(|u| u.trim() == url.trim()) {
                return Err(Error::invalid(
                    "redlock servers",
                    format!(
                        "{} is listed twice; every server must be independent or one failure counts twice",
                        redact_url(url)
                    ),
                ));
            }
        }
        if !self.drift_factor.is_finite() || !(0.0..0.5).contains(&self.drift_factor) {
            return Err(Error::invalid(
                "drift factor",
                format!(
                    "{} is outside 0.0..0.5; it is the share of the TTL not trusted, e.g. 0.01",
                    self.drift_factor
                ),
            ));
        }
        for (what, value) in [
            ("server timeout", self.server_timeout_ms),
            ("connect timeout", self.connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(Error::invalid(
                    what,
                    "it is zero; give it a positive duration",
                ));
            }
        }
        TtlLimits::with_max(self.max_ttl())?;
        Ok(())
    }
}

impl Default for RedlockConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            key_prefix: DEFAULT_PREFIX.to_owned(),
            max_ttl_ms: ttl_millis(TtlLimits::DEFAULT_MAX),
            drift_factor: DEFAULT_DRIFT_FACTOR,
            server_timeout_ms: 100,
            connect_timeout_ms: 1_000,
            push_wakeups: true,
        }
    }
}

impl fmt::Debug for RedlockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("RedlockConfig")
            .field("servers", &servers)
            .field("key_prefix", &self.key_prefix)
            .field("max_ttl_ms", &self.max_ttl_ms)
            .field("drift_factor", &self.drift_factor)
            .field("server_timeout_ms", &self.server_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("push_wakeups", &self.push_wakeups)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;

    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("redis://h{i}:6379")).collect()
    }

    #[test]
    fn validation_table() {
        let ok = RedlockConfig::new(servers(3));
        assert!(ok.validate().is_ok());
        assert!(RedlockConfig::new(servers(5)).validate().is_ok());
        let mut cases: Vec<(&str, RedlockConfig)> = vec![
            ("none", RedlockConfig::new(servers(0))),
            ("one", RedlockConfig::new(servers(1))),
            ("even", RedlockConfig::new(servers(4))),
            ("too many", RedlockConfig::new(servers(MAX_SERVERS + 2))),
            (
                "duplicate",
                RedlockConfig::new(["redis://a:1", "redis://b:1", "redis://a:1"]),
            ),
        ];
        for (what, drift) in [
            ("negative drift", -0.1),
            ("half drift", 0.5),
            ("nan drift", f64::NAN),
            ("infinite drift", f64::INFINITY),
        ] {
            let mut c = ok.clone();
            c.drift_factor = drift;
            cases.push((what, c));
        }
        let mut zero_timeout = ok.clone();
        zero_timeout.server_timeout_ms = 0;
        cases.push(("zero timeout", zero_timeout));
        let mut zero_ttl = ok.clone();
        zero_ttl.max_ttl_ms = 0;
        cases.push(("zero max ttl", zero_ttl));
        for (what, config) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        }
    }

    #[test]
    fn debug_never_prints_passwords_and_serde_has_defaults() {
        let config = RedlockConfig::new(["redis://:hunter2@a:1", "redis://b:1", "redis://c:1"]);
        assert!(!format!("{config:?}").contains("hunter2"));
        let parsed: RedlockConfig =
            serde_json::from_str(r#"{"servers": ["redis://a:1", "redis://b:1", "redis://c:1"]}"#)
                .unwrap();
        assert_eq!(parsed.drift_factor, DEFAULT_DRIFT_FACTOR);
        assert_eq!(parsed.servers.len(), 3);
        assert!(serde_json::from_str::<RedlockConfig>(r#"{"server": []}"#).is_err());
    }
}
