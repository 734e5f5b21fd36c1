//! `PgConfig`: everything a [`crate::PgBuilder`] can set, as plain data for a config file; and
//! `Settings`, the same with defaults applied and every value checked.

use std::fmt;
use std::time::Duration;

use fencelock_core::backend::{redact_url, timeout_from_ms as timeout};
use fencelock_core::{Error, TtlLimits};
use serde::{Deserialize, Serialize};

use crate::{Ident, TableName};

/// Everything [`crate::PgBuilder`] can set, as plain data for a config file (serde).
///
/// Every field is optional: absent means the default. Durations are whole milliseconds
/// (`*_ms`), as in every fencelock backend's config. An unknown field is an error, so a typo is
/// never silently ignored. `{"url": "postgres://app@db/app"}` is a complete config;
/// [`crate::PgLeaseStore::from_config`] connects with it. `Debug` hides passwords.
///
/// The struct is `#[non_exhaustive]`: start from [`PgConfig::new`] or `Default` and set fields,
/// or load it from a file.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database?…` (any libpq-style URL sqlx accepts; TLS
    /// and its roots by `sslmode`/`sslrootcert`). Needed by `connect`; ignored by `from_pool`.
    pub url: Option<String>,
    /// The schema of the lease table (default `public`); created by the migration if missing.
    pub schema: Option<String>,
    /// The lease table (default `fencelock_leases`).
    pub table: Option<String>,
    /// How long one operation may take in all before it fails as `OutcomeUnknown`
    /// (default 10 s).
    pub op_timeout_ms: Option<u64>,
    /// How long getting a connection may take — from the pool, including opening a new one,
    /// and the LISTEN connection — before the operation fails as `Unavailable` (default 5 s).
    /// For a pool passed to `from_pool`, the pool's own acquire timeout applies to it instead.
    pub connect_timeout_ms: Option<u64>,
    /// The largest TTL accepted (default 24 h, at most 10 years).
    pub max_ttl_ms: Option<u64>,
    /// Wake waiters by LISTEN/NOTIFY (default `true`); without it, waiters poll.
    pub push_wakeups: Option<bool>,
    /// The pool size when the store opens its own pool (default 10).
    pub max_connections: Option<u32>,
    /// The NOTIFY channel for release wake-ups (default: the table name).
    pub channel: Option<String>,
    /// A separate URL for the one LISTEN connection, e.g. straight to PostgreSQL when `url`
    /// points at a transaction-mode pooler (default: the pool's own connect options).
    pub listen_url: Option<String>,
    /// Create the schema and table on connect if missing (default `true`). Without it, call
    /// [`crate::PgLeaseStore::migrate`] or create the table from the README yourself.
    pub migrate_on_connect: Option<bool>,
    /// Commit grants and renewals with `synchronous_commit = on` even where the server or role
    /// default is `off` (default `true`).
    pub durable_grants: Option<bool>,
    /// Send statements as sqlx's cached named prepared statements (default `false`: values
    /// inline, one message per statement, safe through any connection pooler). Faster on a
    /// direct connection; through a transaction-mode pooler only with pgbouncer 1.21+ and
    /// `max_prepared_statements`. PostgreSQL only.
    pub prepared_statements: Option<bool>,
}

impl PgConfig {
    /// The default schema.
    pub const DEFAULT_SCHEMA: &str = "public";
    /// The default table.
    pub const DEFAULT_TABLE: &str = "fencelock_leases";
    /// The default operation timeout.
    pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default pool size.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

    /// The defaults, with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("op_timeout_ms", &self.op_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_ttl_ms", &self.max_ttl_ms)
            .field("push_wakeups", &self.push_wakeups)
            .field("max_connections", &self.max_connections)
            .field("channel", &self.channel)
            .field("listen_url", &self.listen_url.as_deref().map(redact_url))
            .field("migrate_on_connect", &self.migrate_on_connect)
            .field("durable_grants", &self.durable_grants)
            .field("prepared_statements", &self.prepared_statements)
            .finish()
    }
}

/// The validated form of a [`PgConfig`]: defaults applied, identifiers checked, durations built.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) table: TableName,
    pub(crate) channel: Ident,
    pub(crate) limits: TtlLimits,
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) migrate_on_connect: bool,
    pub(crate) durable_grants: bool,
    pub(crate) push_wakeups: bool,
    pub(crate) listen_url: Option<String>,
    pub(crate) prepared_statements: bool,
}

impl Settings {
    pub(crate) fn from_config(config: &PgConfig) -> Result<Self, Error> {
        let table = TableName::new(
            config.schema.as_deref().unwrap_or(PgConfig::DEFAULT_SCHEMA),
            config.table.as_deref().unwrap_or(PgConfig::DEFAULT_TABLE),
        )?;
        let channel = match &config.channel {
            Some(channel) => Ident::new("notification channel", channel)?,
            None => table.table().clone(),
        };
        let max_connections = config
            .max_connections
            .unwrap_or(PgConfig::DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(Error::invalid(
                "max connections",
                "it is zero; the store needs at least one connection",
            ));
        }
        Ok(Self {
            table,
            channel,
            limits: TtlLimits::with_max(
                config
                    .max_ttl_ms
                    .map_or(TtlLimits::DEFAULT_MAX, Duration::from_millis),
            )?,
            max_connections,
            connect_timeout: timeout(
                "connect timeout",
                config.connect_timeout_ms,
                PgConfig::DEFAULT_CONNECT_TIMEOUT,
            )?,
            op_timeout: timeout(
                "op timeout",
                config.op_timeout_ms,
                PgConfig::DEFAULT_OP_TIMEOUT,
            )?,
            migrate_on_connect: config.migrate_on_connect.unwrap_or(true),
            durable_grants: config.durable_grants.unwrap_or(true),
            push_wakeups: config.push_wakeups.unwrap_or(true),
            listen_url: config.listen_url.clone(),
            prepared_statements: config.prepared_statements.unwrap_or(false),
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
    fn loads_from_a_file_with_defaults_and_rejects_unknown_fields() {
        let config: PgConfig = serde_json::from_str(r#"{"url":"postgres://db/app"}"#).unwrap();
        assert_eq!(config, PgConfig::new("postgres://db/app"));
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.table.quoted(), "\"public\".\"fencelock_leases\"");
        assert_eq!(settings.channel.as_str(), "fencelock_leases");
        assert_eq!(settings.op_timeout, PgConfig::DEFAULT_OP_TIMEOUT);
        assert_eq!(settings.connect_timeout, PgConfig::DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(settings.limits.max(), TtlLimits::DEFAULT_MAX);
        assert!(settings.migrate_on_connect && settings.durable_grants && settings.push_wakeups);
        assert!(!settings.prepared_statements);

        let full: PgConfig = serde_json::from_str(
            r#"{"url": "postgres://db/app", "schema": "locks", "table": "leases",
                "op_timeout_ms": 2000, "connect_timeout_ms": 1500, "max_ttl_ms": 60000,
                "push_wakeups": false, "max_connections": 3, "channel": "wake",
                "listen_url": "postgres://direct/app", "migrate_on_connect": false,
                "durable_grants": false, "prepared_statements": true}"#,
        )
        .unwrap();
        let settings = Settings::from_config(&full).unwrap();
        assert_eq!(settings.table.quoted(), "\"locks\".\"leases\"");
        assert_eq!(settings.channel.as_str(), "wake");
        assert_eq!(settings.op_timeout, Duration::from_secs(2));
        assert_eq!(settings.connect_timeout, Duration::from_millis(1500));
        assert_eq!(settings.limits.max(), Duration::from_secs(60));
        assert_eq!(settings.max_connections, 3);
        assert!(!settings.migrate_on_connect && !settings.durable_grants);
        assert!(!settings.push_wakeups);
        assert!(settings.prepared_statements);
        let round_trip: PgConfig =
            serde_json::from_str(&serde_json::to_string(&full).unwrap()).unwrap();
        assert_eq!(round_trip, full);

        for typo in [
            r#"{"tabel":"x"}"#,
            r#"{"acquire_timeout_ms": 5}"#,
            r#"{"migrate": true}"#,
        ] {
            assert!(serde_json::from_str::<PgConfig>(typo).is_err(), "{typo}");
        }
    }

    /// What a bad value is, and how to set it.
    type Case = (&'static str, fn(&mut PgConfig));

    #[test]
    fn bad_values_are_invalid_input() {
        let cases: &[Case] = &[
            ("injection in table", |c| {
                c.table = Some("leases; DROP TABLE users; --".into());
            }),
            ("quote in table", |c| c.table = Some("x\" CASCADE".into())),
            ("dotted schema", |c| c.schema = Some("public.evil".into())),
            ("empty schema", |c| c.schema = Some(String::new())),
            ("space in channel", |c| c.channel = Some("a b".into())),
            ("zero pool", |c| c.max_connections = Some(0)),
            ("zero op timeout", |c| c.op_timeout_ms = Some(0)),
            ("zero connect timeout", |c| c.connect_timeout_ms = Some(0)),
            ("op timeout above a day", |c| {
                c.op_timeout_ms = Some(u64::MAX)
            }),
            ("connect timeout above a day", |c| {
                c.connect_timeout_ms = Some(86_400_001);
            }),
            ("zero max ttl", |c| c.max_ttl_ms = Some(0)),
            ("max ttl above 10 years", |c| c.max_ttl_ms = Some(u64::MAX)),
        ];
        for (what, set) in cases {
            let mut config = PgConfig::new("postgres://db/app");
            set(&mut config);
            let err = Settings::from_config(&config).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        }
    }
}
