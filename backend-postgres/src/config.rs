//! Plain configuration: what a deployment file or environment says about the store.

use std::fmt;
use std::time::Duration;

use fencelock_core::backend::{redact_url, ttl_millis};
use fencelock_core::{Error, TtlLimits};
use serde::{Deserialize, Serialize};

use crate::{Ident, TableName};

/// Configuration of a [`crate::PgLeaseStore`], e.g. from a config file (serde).
///
/// Every field has a default, so a file may name only the URL. `Debug` hides passwords.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database?…` (any libpq-style URL sqlx accepts).
    pub url: String,
    /// The schema of the lease table (default `public`); created by the migration if missing.
    pub schema: String,
    /// The lease table (default `fencelock_leases`).
    pub table: String,
    /// The NOTIFY channel for release wake-ups (default: the table name).
    pub channel: Option<String>,
    /// The largest TTL accepted, in milliseconds (default 24 h).
    pub max_ttl_ms: u64,
    /// The pool size when the store opens its own pool (default 10).
    pub max_connections: u32,
    /// How long an operation waits for a pooled connection before it is `Unavailable`
    /// (default 5 s).
    pub acquire_timeout_ms: u64,
    /// How long an operation may take in all before its outcome is `OutcomeUnknown`
    /// (default 10 s).
    pub op_timeout_ms: u64,
    /// Create the schema and table on connect if missing (default `true`). Without it, call
    /// [`crate::PgLeaseStore::migrate`] or create the table from the README yourself.
    pub migrate: bool,
    /// Commit grants and renewals with `synchronous_commit = on` even where the server or role
    /// default is `off` (default `true`).
    pub durable_grants: bool,
    /// Wake waiters by LISTEN/NOTIFY (default `true`); without it, waiters poll.
    pub push_wakeups: bool,
    /// A separate URL for the one LISTEN connection, e.g. straight to PostgreSQL when `url`
    /// points at a transaction-mode pooler (default: `url`, or the pool's own options).
    pub listen_url: Option<String>,
    /// Send statements as sqlx's cached named prepared statements (default `false`: values
    /// inline, one message per statement, safe through any connection pooler). Faster on a
    /// direct connection; through a transaction-mode pooler only with pgbouncer 1.21+ and
    /// `max_prepared_statements`.
    pub prepared_statements: bool,
}

impl PgConfig {
    /// The default schema.
    pub const DEFAULT_SCHEMA: &str = "public";
    /// The default table.
    pub const DEFAULT_TABLE: &str = "fencelock_leases";

    /// The defaults, with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            schema: Self::DEFAULT_SCHEMA.to_owned(),
            table: Self::DEFAULT_TABLE.to_owned(),
            channel: None,
            max_ttl_ms: ttl_millis(TtlLimits::DEFAULT_MAX),
            max_connections: 10,
            acquire_timeout_ms: 5_000,
            op_timeout_ms: 10_000,
            migrate: true,
            durable_grants: true,
            push_wakeups: true,
            listen_url: None,
            prepared_statements: false,
        }
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("channel", &self.channel)
            .field("max_ttl_ms", &self.max_ttl_ms)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("op_timeout_ms", &self.op_timeout_ms)
            .field("migrate", &self.migrate)
            .field("durable_grants", &self.durable_grants)
            .field("push_wakeups", &self.push_wakeups)
            .field("listen_url", &self.listen_url.as_deref().map(redact_url))
            .field("prepared_statements", &self.prepared_statements)
            .finish()
    }
}

/// The validated form of a [`PgConfig`]: identifiers checked, durations built.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) table: TableName,
    pub(crate) channel: Ident,
    pub(crate) limits: TtlLimits,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) migrate: bool,
    pub(crate) durable_grants: bool,
    pub(crate) push_wakeups: bool,
    pub(crate) listen_url: Option<String>,
    pub(crate) prepared_statements: bool,
}

impl Settings {
    pub(crate) fn from_config(config: &PgConfig) -> Result<Self, Error> {
        let table = TableName::new(&config.schema, &config.table)?;
        let channel = match &config.channel {
            Some(channel) => Ident::new("notification channel", channel)?,
            None => table.table().clone(),
        };
        if config.max_connections == 0 {
            return Err(Error::invalid(
                "max connections",
                "it is zero; the store needs at least one connection",
            ));
        }
        let positive = |what: &'static str, ms: u64| {
            if ms == 0 {
                Err(Error::invalid(
                    what,
                    "it is zero; give a positive number of milliseconds",
                ))
            } else {
                Ok(Duration::from_millis(ms))
            }
        };
        Ok(Self {
            table,
            channel,
            limits: TtlLimits::with_max(Duration::from_millis(config.max_ttl_ms))?,
            max_connections: config.max_connections,
            acquire_timeout: positive("acquire timeout", config.acquire_timeout_ms)?,
            op_timeout: positive("operation timeout", config.op_timeout_ms)?,
            migrate: config.migrate,
            durable_grants: config.durable_grants,
            push_wakeups: config.push_wakeups,
            listen_url: config.listen_url.clone(),
            prepared_statements: config.prepared_statements,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencelock_core::ErrorKind;

    #[test]
    fn debug_hides_passwords() {
        let mut config = PgConfig::new("postgres://app:s3cret@db:5432/app?sslmode=require");
        config.listen_url = Some("postgres://db/app?user=app&password=s3cret".to_owned());
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db:5432/app?sslmode=require"),
            "{shown}"
        );
        assert!(shown.contains("user=app&password=***"), "{shown}");
    }

    #[test]
    fn defaults_and_serde() {
        let config: PgConfig = serde_json::from_str(r#"{"url":"postgres://db/app"}"#).unwrap();
        assert_eq!(config, PgConfig::new("postgres://db/app"));
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.table.quoted(), "\"public\".\"fencelock_leases\"");
        assert_eq!(settings.channel.as_str(), "fencelock_leases");
        assert!(serde_json::from_str::<PgConfig>(r#"{"tabel":"x"}"#).is_err());
    }

    #[test]
    fn hostile_config_is_invalid_input() {
        for (field, value) in [
            ("table", "leases; DROP TABLE users; --"),
            ("table", "x\" CASCADE"),
            ("schema", "public.evil"),
            ("schema", ""),
            ("channel", "a b"),
        ] {
            let mut config = PgConfig::new("postgres://db/app");
            match field {
                "table" => config.table = value.to_owned(),
                "schema" => config.schema = value.to_owned(),
                _ => config.channel = Some(value.to_owned()),
            }
            let err = Settings::from_config(&config).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{field}={value:?}");
        }
        let zero = PgConfig {
            max_connections: 0,
            ..PgConfig::new("postgres://db/app")
        };
        assert!(Settings::from_config(&zero).is_err());
    }
}
