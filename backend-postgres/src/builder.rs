//! Building a `PgLeaseStore`: options, then `connect(url)` or `from_pool(pool)`.

use std::time::Duration;

use fencelock_core::backend::{redact_url, ttl_millis};
use fencelock_core::{Error, Operation};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::classify::classify;
use crate::config::Settings;
use crate::{PgConfig, PgLeaseStore};

/// Options for a [`PgLeaseStore`]. Every `with_*` is optional; identifiers and durations are
/// validated when the store is built, so a hostile table name is an `InvalidInput` error.
///
/// ```no_run
/// # async fn demo() -> Result<(), fencelock_core::Error> {
/// use std::time::Duration;
/// use fencelock_postgres::PgLeaseStore;
///
/// let store = PgLeaseStore::builder()
///     .with_schema("locks")
///     .with_table("leases")
///     .with_max_ttl(Duration::from_secs(600))
///     .connect("postgres://app@localhost/app")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct PgLeaseStoreBuilder {
    config: PgConfig,
}

impl PgLeaseStoreBuilder {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options from a [`PgConfig`] (its `url` is used by [`PgLeaseStoreBuilder::connect_configured`]).
    pub fn from_config(config: PgConfig) -> Self {
        Self { config }
    }

    /// The schema of the lease table (default `public`).
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.config.schema = schema.into();
        self
    }

    /// The lease table (default `fencelock_leases`).
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.config.table = table.into();
        self
    }

    /// The NOTIFY channel (default: the table name). Stores sharing a channel only cost each
    /// other spurious wake-ups.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.config.channel = Some(channel.into());
        self
    }

    /// The largest TTL accepted (default 24 h; at most 10 years).
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.config.max_ttl_ms = ttl_millis(max);
        self
    }

    /// The pool size when the store opens its own pool (default 10).
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.config.max_connections = max;
        self
    }

    /// How long an operation waits for a pooled connection (default 5 s) before it fails as
    /// `Unavailable`. Applies to pools the store opens itself.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout_ms = ttl_millis(timeout);
        self
    }

    /// How long one operation may take in all (default 10 s) before it fails as
    /// `OutcomeUnknown`.
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.config.op_timeout_ms = ttl_millis(timeout);
        self
    }

    /// Whether to create the schema and table on connect if missing (default `true`).
    pub fn with_migrate_on_connect(mut self, migrate: bool) -> Self {
        self.config.migrate = migrate;
        self
    }

    /// Whether grants and renewals force `synchronous_commit = on` when the session has it
    /// `off` (default `true`). Turn off only if losing the last grants in a crash is fine.
    pub fn with_durable_grants(mut self, durable: bool) -> Self {
        self.config.durable_grants = durable;
        self
    }

    /// Whether waiters are woken by LISTEN/NOTIFY (default `true`) or poll.
    pub fn with_push_wakeups(mut self, push: bool) -> Self {
        self.config.push_wakeups = push;
        self
    }

    /// A separate URL for the LISTEN connection, e.g. straight to PostgreSQL while the pool
    /// goes through a transaction-mode pooler (LISTEN needs a session of its own).
    pub fn with_listen_url(mut self, url: impl Into<String>) -> Self {
        self.config.listen_url = Some(url.into());
        self
    }

    /// Whether statements are sqlx's cached named prepared statements (default `false`).
    ///
    /// The default sends every statement with its values inline, as one message that leaves
    /// nothing on the server connection: it works through any pooler (pgbouncer in transaction
    /// mode included), at the price of the server planning each statement. Turn this on for
    /// direct connections where that price matters; through a transaction-mode pooler it needs
    /// pgbouncer 1.21+ with `max_prepared_statements`.
    pub fn with_prepared_statements(mut self, prepared: bool) -> Self {
        self.config.prepared_statements = prepared;
        self
    }

    /// The configuration so far.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    /// Opens a pool to `url`, creates the table if missing (unless disabled), and returns the
    /// store.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed URL or option; `Unavailable` when the server cannot be
    /// reached; `Backend` when the table cannot be created.
    pub async fn connect(mut self, url: &str) -> Result<PgLeaseStore, Error> {
        url.clone_into(&mut self.config.url);
        self.connect_configured().await
    }

    /// [`PgLeaseStoreBuilder::connect`] to the URL of the configuration.
    ///
    /// # Errors
    /// As [`PgLeaseStoreBuilder::connect`].
    pub async fn connect_configured(self) -> Result<PgLeaseStore, Error> {
        let settings = Settings::from_config(&self.config)?;
        let options = parse_url(&self.config.url)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| classify(Operation::Connect, e))?;
        self.finish(pool, settings).await
    }

    /// A store over an existing pool (the application's own, say). The pool's options decide
    /// size and timeouts; the store adds one LISTEN connection of its own once a waiter needs it.
    ///
    /// # Errors
    /// `InvalidInput` for a bad option; `Unavailable`/`Backend` from the migration.
    pub async fn from_pool(self, pool: PgPool) -> Result<PgLeaseStore, Error> {
        let settings = Settings::from_config(&self.config)?;
        self.finish(pool, settings).await
    }

    async fn finish(self, pool: PgPool, settings: Settings) -> Result<PgLeaseStore, Error> {
        let listen = if settings.push_wakeups {
            Some(match &settings.listen_url {
                Some(url) => parse_url(url)?,
                None => (*pool.connect_options()).clone(),
            })
        } else {
            None
        };
        PgLeaseStore::assemble(pool, settings, listen).await
    }
}

fn parse_url(url: &str) -> Result<PgConnectOptions, Error> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(Error::invalid(
            "postgres url",
            format!(
                "{} does not start with postgres:// or postgresql://",
                redact_url(url)
            ),
        ));
    }
    // The store reads no floating-point values, and poolers refuse startup parameters they do
    // not know ("unsupported startup parameter: extra_float_digits" from pgbouncer unless
    // `ignore_startup_parameters` lists it), so it does not send sqlx's `extra_float_digits`.
    url.parse::<PgConnectOptions>()
        .map(|options| options.extra_float_digits(None))
        .map_err(|e| {
            Error::invalid(
                "postgres url",
                format!(
                    "{e}; expected postgres://user:password@host:port/database (given {})",
                    redact_url(url)
                ),
            )
        })
}
