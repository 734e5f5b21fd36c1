//! `EtcdConfig`: everything an [`crate::EtcdBuilder`] can set, as plain data for a config file;
//! and `Settings`, the same with defaults applied and every value checked.

use std::fmt;
use std::time::Duration;

use fencelock_core::backend::{redact_url, timeout_from_ms as timeout};
use fencelock_core::{Error, TtlLimits};
use serde::{Deserialize, Serialize};

/// Everything [`crate::EtcdBuilder`] can set, as plain data for a config file (serde).
///
/// Every field is optional: absent means the default. Durations are whole milliseconds
/// (`*_ms`), as in every fencelock backend's config. An unknown field is an error, so a typo is
/// never silently ignored. `{"urls": ["http://10.0.0.1:2379"]}` is a complete config;
/// [`crate::EtcdLeaseStore::from_config`] connects with it. `Debug` never prints the password.
///
/// The struct is `#[non_exhaustive]`: start from [`EtcdConfig::new`] or `Default` and set
/// fields, or load it from a file.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// Client URLs of the cluster's members (etcd's "endpoints"): `http://host:2379`, or
    /// `https://…` for all of them (crate feature `tls`). Needed by `connect`; ignored by
    /// `from_client`.
    pub urls: Option<Vec<String>>,
    /// Prefix of every lock key (default empty: compatible with `etcdctl lock NAME`); at most
    /// 128 bytes, no control characters.
    pub key_prefix: Option<String>,
    /// How long one etcd request may take before it fails as `OutcomeUnknown` (default 5 s).
    pub op_timeout_ms: Option<u64>,
    /// How long connecting to the cluster may take (default 5 s).
    pub connect_timeout_ms: Option<u64>,
    /// The largest TTL accepted (default 24 h, at most 10 years).
    pub max_ttl_ms: Option<u64>,
    /// User name for etcd authentication.
    pub user: Option<String>,
    /// Password for etcd authentication (needs `user`).
    pub password: Option<String>,
}

impl EtcdConfig {
    /// The default operation timeout.
    pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The longest key prefix accepted, in bytes.
    pub const MAX_KEY_PREFIX_LEN: usize = 128;

    /// The defaults, with `urls` (the cluster members' client URLs).
    pub fn new<E: AsRef<str>>(urls: impl IntoIterator<Item = E>) -> Self {
        Self {
            urls: Some(urls.into_iter().map(|u| u.as_ref().to_owned()).collect()),
            ..Self::default()
        }
    }

    /// Defaults applied and every option checked; the URLs are checked by the builder's
    /// `connect`.
    pub(crate) fn settings(&self) -> Result<Settings, Error> {
        if self.password.is_some() && self.user.is_none() {
            return Err(Error::invalid(
                "etcd credentials",
                "a password without a user name",
            ));
        }
        Ok(Settings {
            key_prefix: key_prefix(self.key_prefix.as_deref().unwrap_or_default())?,
            limits: TtlLimits::with_max(
                self.max_ttl_ms
                    .map_or(TtlLimits::DEFAULT_MAX, Duration::from_millis),
            )?,
            op_timeout: timeout("op timeout", self.op_timeout_ms, Self::DEFAULT_OP_TIMEOUT)?,
            connect_timeout: timeout(
                "connect timeout",
                self.connect_timeout_ms,
                Self::DEFAULT_CONNECT_TIMEOUT,
            )?,
        })
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Option<Vec<String>> = self
            .urls
            .as_ref()
            .map(|urls| urls.iter().map(|u| redact_url(u)).collect());
        f.debug_struct("EtcdConfig")
            .field("urls", &urls)
            .field("key_prefix", &self.key_prefix)
            .field("op_timeout_ms", &self.op_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_ttl_ms", &self.max_ttl_ms)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// An [`EtcdConfig`] with its defaults applied and every value checked.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) key_prefix: String,
    pub(crate) limits: TtlLimits,
    pub(crate) op_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

/// A key prefix: any text lock names may hold, at most [`EtcdConfig::MAX_KEY_PREFIX_LEN`]
/// bytes. Control characters are refused as in lock names: they are never meant, and would make
/// keys unreadable in `etcdctl`.
fn key_prefix(prefix: &str) -> Result<String, Error> {
    if prefix.len() > EtcdConfig::MAX_KEY_PREFIX_LEN {
        return Err(Error::invalid(
            "key prefix",
            format!(
                "it is {} bytes long; the limit is {}",
                prefix.len(),
                EtcdConfig::MAX_KEY_PREFIX_LEN
            ),
        ));
    }
    if let Some(c) = prefix.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            "key prefix",
            format!("it contains the control character {c:?}; drop it"),
        ));
    }
    Ok(prefix.to_owned())
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;

    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let mut config = EtcdConfig::new(["http://root:hunter2@127.0.0.1:2379"]);
        config.user = Some("app".into());
        config.password = Some("s3cret".into());
        let shown = format!("{config:?}");
        for secret in ["s3cret", "hunter2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("app") && shown.contains("127.0.0.1:2379"),
            "{shown}"
        );
    }

    #[test]
    fn loads_from_a_file_with_defaults_and_rejects_unknown_fields() {
        let config: EtcdConfig =
            serde_json::from_str(r#"{"urls": ["http://127.0.0.1:2379"]}"#).unwrap();
        assert_eq!(config, EtcdConfig::new(["http://127.0.0.1:2379"]));
        let settings = config.settings().unwrap();
        assert_eq!(settings.key_prefix, "");
        assert_eq!(settings.op_timeout, EtcdConfig::DEFAULT_OP_TIMEOUT);
        assert_eq!(
            settings.connect_timeout,
            EtcdConfig::DEFAULT_CONNECT_TIMEOUT
        );
        assert_eq!(settings.limits.max(), TtlLimits::DEFAULT_MAX);

        let full: EtcdConfig = serde_json::from_str(
            r#"{"urls": ["http://a:2379", "http://b:2379"], "key_prefix": "locks/",
                "op_timeout_ms": 1000, "connect_timeout_ms": 2000, "max_ttl_ms": 3600000,
                "user": "app", "password": "s3cret"}"#,
        )
        .unwrap();
        let settings = full.settings().unwrap();
        assert_eq!(settings.key_prefix, "locks/");
        assert_eq!(settings.op_timeout, Duration::from_secs(1));
        assert_eq!(settings.connect_timeout, Duration::from_secs(2));
        assert_eq!(settings.limits.max(), Duration::from_secs(3600));
        let round_trip: EtcdConfig =
            serde_json::from_str(&serde_json::to_string(&full).unwrap()).unwrap();
        assert_eq!(round_trip, full);

        for typo in [
            r#"{"endpoints": ["http://a:2379"]}"#,
            r#"{"max_ttl_secs": 60}"#,
            r#"{"op_timeout_ms": -1}"#,
        ] {
            assert!(serde_json::from_str::<EtcdConfig>(typo).is_err(), "{typo}");
        }
    }

    /// What a bad value is, and how to set it.
    type Case = (&'static str, fn(&mut EtcdConfig));

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
            ("newline in prefix", |c| c.key_prefix = Some("a\nb".into())),
            ("NUL in prefix", |c| c.key_prefix = Some("a\0".into())),
            ("prefix too long", |c| c.key_prefix = Some("p".repeat(129))),
            ("password without user", |c| c.password = Some("p".into())),
        ];
        for (what, set) in cases {
            let mut config = EtcdConfig::new(["http://127.0.0.1:2379"]);
            set(&mut config);
            let err = config.settings().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        }
    }
}
