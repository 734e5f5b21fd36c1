//! `RedlockConfig`: everything a [`super::RedlockBuilder`] can set, as plain data for a config
//! file; and `Settings`, the same with defaults applied and every value checked.

use std::fmt;
use std::time::Duration;

use fencelock_core::backend::{redact_url, timeout_from_ms as timeout};
use fencelock_core::{Error, TtlLimits};
use serde::{Deserialize, Serialize};

use crate::config::max_ttl;
use crate::keys::{DEFAULT_PREFIX, KeyLayout};

/// The default clock-drift factor: 1 % of the TTL (plus 2 ms) is not trusted.
pub const DEFAULT_DRIFT_FACTOR: f64 = 0.01;

/// The most servers a Redlock store accepts.
pub const MAX_SERVERS: usize = 31;

/// Everything [`crate::RedlockBuilder`] can set, as plain data for a config file (serde).
///
/// Every field is optional: absent means the default. Durations are whole milliseconds
/// (`*_ms`), as in every fencelock backend's config. An unknown field is an error.
/// `{"urls": ["redis://a:6379", "redis://b:6379", "redis://c:6379"]}` is a complete config;
/// [`crate::RedlockLeaseStore::from_config`] connects with it. `Debug` masks passwords in the
/// URLs.
///
/// The struct is `#[non_exhaustive]`: start from [`RedlockConfig::new`] or `Default` and set
/// fields, or load it from a file.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedlockConfig {
    /// One `redis://[user:password@]host[:port][/db]` URL per independent server: an odd
    /// number, at least 3, at most 31, none twice. Needed by `connect`; ignored by
    /// `from_clients`.
    pub urls: Option<Vec<String>>,
    /// Prepended to every key and release channel (default `fencelock:`); as for
    /// [`crate::RedisConfig::key_prefix`].
    pub key_prefix: Option<String>,
    /// The longest one request to one server may take (default 100 ms). An acquire waits at
    /// most a quarter of its TTL, whichever is shorter; a server that does not answer in time
    /// counts as a "no" and never holds the others up.
    pub op_timeout_ms: Option<u64>,
    /// How long opening a connection (and the subscriber) to one server may take (default 1 s).
    pub connect_timeout_ms: Option<u64>,
    /// The largest TTL accepted (default 24 h, at most 10 years).
    pub max_ttl_ms: Option<u64>,
    /// Whether waiters subscribe to release announcements on every server (default `true`).
    pub push_wakeups: Option<bool>,
    /// The share of the TTL not trusted because server clocks may run fast (default 0.01);
    /// 2 ms are always added. At least 0, below 0.5.
    pub drift_factor: Option<f64>,
}

impl RedlockConfig {
    /// The default operation timeout (per request to one server).
    pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(100);
    /// The default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

    /// The defaults, with `urls` (one per independent server).
    pub fn new<E: AsRef<str>>(urls: impl IntoIterator<Item = E>) -> Self {
        Self {
            urls: Some(urls.into_iter().map(|u| u.as_ref().to_owned()).collect()),
            ..Self::default()
        }
    }

    /// Defaults applied and every option checked; the servers are checked by
    /// [`check_servers`], once their number is known.
    pub(crate) fn settings(&self) -> Result<Settings, Error> {
        let drift_factor = self.drift_factor.unwrap_or(DEFAULT_DRIFT_FACTOR);
        if !drift_factor.is_finite() || !(0.0..0.5).contains(&drift_factor) {
            return Err(Error::invalid(
                "drift factor",
                format!(
                    "{drift_factor} is outside 0.0..0.5; it is the share of the TTL not trusted, e.g. 0.01"
                ),
            ));
        }
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
            drift_factor,
        })
    }
}

impl fmt::Debug for RedlockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Option<Vec<String>> = self
            .urls
            .as_ref()
            .map(|urls| urls.iter().map(|u| redact_url(u)).collect());
        f.debug_struct("RedlockConfig")
            .field("urls", &urls)
            .field("key_prefix", &self.key_prefix)
            .field("op_timeout_ms", &self.op_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_ttl_ms", &self.max_ttl_ms)
            .field("push_wakeups", &self.push_wakeups)
            .field("drift_factor", &self.drift_factor)
            .finish()
    }
}

/// A [`RedlockConfig`] with its defaults applied and every value checked.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) layout: KeyLayout,
    pub(crate) limits: TtlLimits,
    pub(crate) op_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) push_wakeups: bool,
    pub(crate) drift_factor: f64,
}

/// Checks the servers (URLs, or the addresses of caller-supplied clients): an odd number, at
/// least 3, at most [`MAX_SERVERS`], none twice.
pub(crate) fn check_servers(servers: &[String]) -> Result<(), Error> {
    let n = servers.len();
    if n < 3 || n.is_multiple_of(2) || n > MAX_SERVERS {
        return Err(Error::invalid(
            "redlock servers",
            format!(
                "got {n}; Redlock needs an odd number of independent servers, at least 3 and at most {MAX_SERVERS} (a majority of an even number tolerates no more failures than one server fewer)"
            ),
        ));
    }
    for (i, url) in servers.iter().enumerate() {
        if servers[..i].iter().any(|u| u.trim() == url.trim()) {
            return Err(Error::invalid(
                "redlock servers",
                format!(
                    "{} is listed twice; every server must be independent or one failure counts twice",
                    redact_url(url)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;

    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("redis://h{i}:6379")).collect()
    }

    #[test]
    fn server_table() {
        assert!(check_servers(&servers(3)).is_ok());
        assert!(check_servers(&servers(5)).is_ok());
        for (what, list) in [
            ("none", servers(0)),
            ("one", servers(1)),
            ("even", servers(4)),
            ("too many", servers(MAX_SERVERS + 2)),
            (
                "duplicate",
                vec![
                    "redis://a:1".into(),
                    "redis://b:1".into(),
                    "redis://a:1 ".into(),
                ],
            ),
        ] {
            let err = check_servers(&list).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        }
    }

    /// What a bad value is, and how to set it.
    type Case = (&'static str, fn(&mut RedlockConfig));

    #[test]
    fn bad_values_are_invalid_input() {
        let cases: &[Case] = &[
            ("negative drift", |c| c.drift_factor = Some(-0.1)),
            ("half drift", |c| c.drift_factor = Some(0.5)),
            ("nan drift", |c| c.drift_factor = Some(f64::NAN)),
            ("infinite drift", |c| c.drift_factor = Some(f64::INFINITY)),
            ("zero op timeout", |c| c.op_timeout_ms = Some(0)),
            ("zero connect timeout", |c| c.connect_timeout_ms = Some(0)),
            ("connect timeout above a day", |c| {
                c.connect_timeout_ms = Some(u64::MAX);
            }),
            ("zero max ttl", |c| c.max_ttl_ms = Some(0)),
            ("max ttl above 10 years", |c| c.max_ttl_ms = Some(u64::MAX)),
            ("brace in prefix", |c| c.key_prefix = Some("a{b".into())),
        ];
        for (what, set) in cases {
            let mut config = RedlockConfig::new(servers(3));
            set(&mut config);
            let err = config.settings().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        }
    }

    #[test]
    fn debug_never_prints_passwords_and_a_file_needs_only_the_urls() {
        let config = RedlockConfig::new(["redis://:hunter2@a:1", "redis://b:1", "redis://c:1"]);
        assert!(!format!("{config:?}").contains("hunter2"));
        let parsed: RedlockConfig =
            serde_json::from_str(r#"{"urls": ["redis://a:1", "redis://b:1", "redis://c:1"]}"#)
                .unwrap();
        assert_eq!(
            parsed,
            RedlockConfig::new(["redis://a:1", "redis://b:1", "redis://c:1"])
        );
        let settings = parsed.settings().unwrap();
        assert_eq!(settings.drift_factor, DEFAULT_DRIFT_FACTOR);
        assert_eq!(settings.op_timeout, RedlockConfig::DEFAULT_OP_TIMEOUT);
        let full: RedlockConfig = serde_json::from_str(
            r#"{"urls": ["redis://a:1"], "key_prefix": "app:", "op_timeout_ms": 50,
                "connect_timeout_ms": 500, "max_ttl_ms": 60000, "push_wakeups": false,
                "drift_factor": 0.02}"#,
        )
        .unwrap();
        let settings = full.settings().unwrap();
        assert_eq!(settings.op_timeout, Duration::from_millis(50));
        assert_eq!(settings.drift_factor, 0.02);
        assert!(!settings.push_wakeups);
        for typo in [r#"{"servers": []}"#, r#"{"server_timeout_ms": 5}"#] {
            assert!(
                serde_json::from_str::<RedlockConfig>(typo).is_err(),
                "{typo}"
            );
        }
    }
}
