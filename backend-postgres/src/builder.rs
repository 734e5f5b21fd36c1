//! `PgBuilder`: the options of a `PgLeaseStore` (held in one `PgConfig`), then `connect()` or
//! `from_pool(pool)`.

use std::time::Duration;

use fencelock_core::backend::{redact_url, ttl_millis};
use fencelock_core::{Error, Operation};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::classify::classify;
use crate::config::Settings;
use crate::{PgConfig, PgLeaseStore};

/// Options for a [`PgLeaseStore`]: `with_*` for each option, then [`connect`](Self::connect),
/// or [`from_pool`](Self::from_pool) for the application's own pool.
///
/// Every option is a field of the [`PgConfig`] the builder holds (the same names, durations in
/// `*_ms`); identifiers and durations are checked when the store is built, before anything is
/// sent, so a hostile table name is an `InvalidInput` error.
///
/// ```no_run
/// # async fn demo() -> Result<(), fencelock_core::Error> {
/// use std::time::Duration;
/// use fencelock_postgres::PgLeaseStore;
///
/// let store = PgLeaseStore::builder()
///     .with_url("postgres://app@localhost/app")
///     .with_schema("locks")
///     .with_table("leases")
///     .with_max_ttl(Duration::from_secs(600))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct PgBuilder {
    config: PgConfig,
}

impl PgBuilder {
    /// Default options, no URL yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The options (and URL) of `config`, e.g. loaded from a file.
    pub fn from_config(config: PgConfig) -> Self {
        Self { config }
    }

    /// The options so far.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    /// The database [`connect`](Self::connect) opens a pool to:
    /// `postgres://user:password@host:port/database?…`.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.config.url = Some(url.into());
        self
    }

    /// The schema of the lease table (default `public`).
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.config.schema = Some(schema.into());
        self
    }

    /// The lease table (default `fencelock_leases`).
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.config.table = Some(table.into());
        self
    }

    /// How long one operation may take in all (default 10 s) before it fails as
    /// `OutcomeUnknown` (whole milliseconds, rounded up).
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.config.op_timeout_ms = Some(ttl_millis(timeout));
        self
    }

    /// How long getting a connection may take (default 5 s) before the operation fails as
    /// `Unavailable`: the acquire timeout of the pool the store opens (which includes opening a
    /// new connection), and the connect timeout of the LISTEN connection.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout_ms = Some(ttl_millis(timeout));
        self
    }

    /// The largest TTL accepted (default 24 h, at most 10 years).
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.config.max_ttl_ms = Some(ttl_millis(max));
        self
    }

    /// Whether waiters are woken by LISTEN/NOTIFY (default `true`) or poll.
    pub fn with_push_wakeups(mut self, push: bool) -> Self {
        self.config.push_wakeups = Some(push);
        self
    }

    /// The pool size when the store opens its own pool (default 10).
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.config.max_connections = Some(max);
        self
    }

    /// The NOTIFY channel (default: the table name). Stores sharing a channel only cost each
    /// other spurious wake-ups.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.config.channel = Some(channel.into());
        self
    }

    /// A separate URL for the LISTEN connection, e.g. straight to PostgreSQL while the pool
    /// goes through a transaction-mode pooler (LISTEN needs a session of its own).
    pub fn with_listen_url(mut self, url: impl Into<String>) -> Self {
        self.config.listen_url = Some(url.into());
        self
    }

    /// Whether to create the schema and table on connect if missing (default `true`).
    pub fn with_migrate_on_connect(mut self, migrate: bool) -> Self {
        self.config.migrate_on_connect = Some(migrate);
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
        self.config.prepared_statements = Some(prepared);
        self
    }

    /// Whether grants and renewals force `synchronous_commit = on` when the session has it
    /// `off` (default `true`). Turn off only if losing the last grants in a crash is fine.
    pub fn with_durable_grants(mut self, durable: bool) -> Self {
        self.config.durable_grants = Some(durable);
        self
    }

    /// Opens a pool to the URL given by [`with_url`](Self::with_url) or the config, creates the
    /// table if missing (unless disabled), and returns the store.
    ///
    /// # Errors
    /// `InvalidInput` for a bad option, or a missing or malformed URL; `Unavailable` when the
    /// server cannot be reached; `Backend` when the table cannot be created.
    pub async fn connect(self) -> Result<PgLeaseStore, Error> {
        let settings = Settings::from_config(&self.config)?;
        let Some(url) = self.config.url.as_deref() else {
            return Err(Error::invalid(
                "postgres url",
                "none given; pass one to PgLeaseStore::connect(url) or with_url(url), or set `url` in the config",
            ));
        };
        let options = parse_url(url)?;
        let listen = listen_options(&settings)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .connect_with(options)
            .await
            .map_err(|e| classify(Operation::Connect, e))?;
        finish(pool, settings, listen).await
    }

    /// A store over an existing pool (the application's own, say). The pool's options decide
    /// size and acquire timeout; the builder's URL and `max_connections` are not used. The
    /// store adds one LISTEN connection of its own once a waiter needs it.
    ///
    /// # Errors
    /// `InvalidInput` for a bad option; `Unavailable`/`Backend` from the migration.
    pub async fn from_pool(self, pool: PgPool) -> Result<PgLeaseStore, Error> {
        let settings = Settings::from_config(&self.config)?;
        let listen = listen_options(&settings)?;
        finish(pool, settings, listen).await
    }
}

/// The LISTEN connection's own URL, parsed before anything is sent.
fn listen_options(settings: &Settings) -> Result<Option<PgConnectOptions>, Error> {
    settings.listen_url.as_deref().map(parse_url).transpose()
}

async fn finish(
    pool: PgPool,
    settings: Settings,
    listen: Option<PgConnectOptions>,
) -> Result<PgLeaseStore, Error> {
    let listen = settings
        .push_wakeups
        .then(|| listen.unwrap_or_else(|| (*pool.connect_options()).clone()));
    PgLeaseStore::assemble(pool, settings, listen).await
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
