//! `RedisBuilder`: the options of a `RedisLeaseStore` (held in one `RedisConfig`), then
//! `connect()`, or `from_client`/`from_connection` for a client you already have.

use std::time::Duration;

use fencelock_core::backend::{redact_url, ttl_millis};
use fencelock_core::{Error, Operation};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;

use crate::classify::classify;
use crate::config::{RedisConfig, Settings};
use crate::sentinel::SentinelConnection;
use crate::store::{RedisLeaseStore, Shared};
use crate::wakeups::Wakeups;

/// Options for a [`RedisLeaseStore`]: `with_*` for each option, then
/// [`connect`](Self::connect), or [`from_client`](Self::from_client) /
/// [`from_connection`](Self::from_connection) for a client you already have.
///
/// Every option is a field of the [`RedisConfig`] the builder holds (the same names, durations
/// in `*_ms`); they are checked when the store is built, before anything is sent, and a bad one
/// is `InvalidInput`.
///
/// ```no_run
/// # async fn demo() -> Result<(), fencelock_core::Error> {
/// use std::time::Duration;
/// use fencelock_redis::RedisLeaseStore;
///
/// let store = RedisLeaseStore::builder()
///     .with_url("redis://127.0.0.1:6379")
///     .with_key_prefix("app:")
///     .with_op_timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct RedisBuilder {
    config: RedisConfig,
    pubsub_client: Option<redis::Client>,
}

impl std::fmt::Debug for RedisBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's own Debug may show credentials; show only where it points.
        let pubsub = self
            .pubsub_client
            .as_ref()
            .map(|c| c.get_connection_info().addr().to_string());
        f.debug_struct("RedisBuilder")
            .field("config", &self.config)
            .field("pubsub_client", &pubsub)
            .finish()
    }
}

impl RedisBuilder {
    /// Default options, no URL yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The options (and URL) of `config`, e.g. loaded from a file.
    pub fn from_config(config: RedisConfig) -> Self {
        Self {
            config,
            pubsub_client: None,
        }
    }

    /// The options so far.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The server [`connect`](Self::connect) opens: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://…` (crate feature `tls`) or `redis+unix:///path`; or the seed nodes
    /// [`connect_cluster`](Self::connect_cluster) opens: `redis+cluster://[user:password@]h1:p1,h2:p2,…`;
    /// or the sentinels [`connect_sentinel`](Self::connect_sentinel) asks:
    /// `redis+sentinel://s1:p1,s2:p2,…/PRIMARY_NAME`.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.config.url = Some(url.into());
        self
    }

    /// Prefix of every key and release channel (default `fencelock:`). Stores that should see
    /// the same locks must use the same prefix. At most 128 bytes; no `{`, `}` or control
    /// characters.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = Some(prefix.into());
        self
    }

    /// How long a request waits for its reply before it fails as `OutcomeUnknown` (default
    /// 1 s; whole milliseconds, rounded up).
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.config.op_timeout_ms = Some(ttl_millis(timeout));
        self
    }

    /// How long opening a connection (and the subscriber) may take (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout_ms = Some(ttl_millis(timeout));
        self
    }

    /// The largest TTL accepted (default 24 h, at most 10 years).
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.config.max_ttl_ms = Some(ttl_millis(max));
        self
    }

    /// Whether waiters subscribe to release announcements (default `true`); without them they
    /// poll.
    pub fn with_push_wakeups(mut self, enabled: bool) -> Self {
        self.config.push_wakeups = Some(enabled);
        self
    }

    /// How many times a request retries opening a broken connection before it fails as
    /// `Unavailable` (default 1).
    pub fn with_reconnect_attempts(mut self, attempts: usize) -> Self {
        self.config.reconnect_attempts = Some(attempts);
        self
    }

    /// The client that opens the subscriber connection for push wake-ups, for stores built
    /// with [`Self::from_connection`] (which otherwise poll). Not part of [`RedisConfig`]: a
    /// client is not plain data.
    pub fn with_pubsub_client(mut self, client: redis::Client) -> Self {
        self.pubsub_client = Some(client);
        self
    }

    /// Connects to the URL given by [`with_url`](Self::with_url) or the config.
    ///
    /// # Errors
    /// `InvalidInput` for a bad option, or a missing or malformed URL; `Unavailable` when the
    /// server cannot be reached.
    pub async fn connect(self) -> Result<RedisLeaseStore, Error> {
        let settings = self.config.settings()?;
        let Some(url) = self.config.url.as_deref() else {
            return Err(Error::invalid(
                "redis url",
                "none given; pass one to RedisLeaseStore::connect(url) or with_url(url), or set `url` in the config",
            ));
        };
        if crate::sentinel::is_sentinel_url(url) {
            return Err(Error::invalid(
                "redis url",
                format!(
                    "{} names a Sentinel deployment; open it with connect_sentinel() (or fencelock::connect)",
                    redact_url(url)
                ),
            ));
        }
        if crate::cluster::is_cluster_url(url) {
            return Err(Error::invalid(
                "redis url",
                format!(
                    "{} names a Redis Cluster; open it with connect_cluster() (or fencelock::connect)",
                    redact_url(url)
                ),
            ));
        }
        crate::tls::install_crypto_provider();
        let client = redis::Client::open(url)
            .map_err(|e| Error::invalid("redis url", format!("{}: {e}", redact_url(url))))?;
        open(client, settings).await
    }

    /// Connects to the Redis Cluster whose seed nodes the URL names
    /// (`redis+cluster://[user:password@]h1:p1,h2:p2,…`; any reachable node is enough, the
    /// others are found through it). Every request, redirections and retries included, ends
    /// within the op timeout. Waiters are woken by sharded pub/sub (Redis 7.0+), unless
    /// `push_wakeups` is off.
    ///
    /// # Errors
    /// `InvalidInput` for a bad option, or a missing or malformed URL; `Unavailable` when no
    /// seed node can be reached.
    pub async fn connect_cluster(self) -> Result<RedisLeaseStore<ClusterConnection>, Error> {
        let settings = self.config.settings()?;
        let Some(url) = self.config.url.as_deref() else {
            return Err(Error::invalid(
                "redis cluster url",
                "none given; pass one to with_url(url) or set `url` in the config",
            ));
        };
        crate::cluster::open(url, settings).await
    }

    /// Connects to the primary the sentinels of the URL name
    /// (`redis+sentinel://s1:p1,s2:p2,…/PRIMARY_NAME`), and finds it again through them after
    /// losing it (a failover). Waiters poll: `push_wakeups` has no effect behind Sentinel, nor
    /// `reconnect_attempts` (each request that finds the connection lost fails, and the next one
    /// asks the sentinels).
    ///
    /// # Errors
    /// `InvalidInput` for a bad option, or a missing or malformed URL; `Unavailable` when no
    /// sentinel names a reachable primary.
    pub async fn connect_sentinel(self) -> Result<RedisLeaseStore<SentinelConnection>, Error> {
        let settings = self.config.settings()?;
        let Some(url) = self.config.url.as_deref() else {
            return Err(Error::invalid(
                "redis sentinel url",
                "none given; pass one to with_url(url) or set `url` in the config",
            ));
        };
        crate::sentinel::open(url, settings).await
    }

    /// A store over a client you configured yourself (TLS roots, credentials, …); opens a
    /// [`ConnectionManager`] with this builder's timeouts, and the subscriber for push wake-ups
    /// from the same client. The builder's URL is not used.
    ///
    /// # Errors
    /// `InvalidInput` for a bad option; `Unavailable` when the server cannot be reached.
    pub async fn from_client(self, client: redis::Client) -> Result<RedisLeaseStore, Error> {
        open(client, self.config.settings()?).await
    }

    /// A store over a connection you already have (a `ConnectionManager`, a
    /// `MultiplexedConnection`, …). Its timeouts and reconnects are yours: this builder's
    /// `op_timeout`, `connect_timeout` (but for the subscriber) and `reconnect_attempts` do not
    /// apply. Waiters poll unless [`with_pubsub_client`](Self::with_pubsub_client) was given.
    ///
    /// # Errors
    /// `InvalidInput` for a bad option.
    pub fn from_connection<C>(self, conn: C) -> Result<RedisLeaseStore<C>, Error>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let settings = self.config.settings()?;
        let target = match &self.pubsub_client {
            Some(client) => client.get_connection_info().addr().to_string(),
            None => "a caller-supplied connection".to_owned(),
        };
        let wakeups = match self.pubsub_client {
            Some(client) if settings.push_wakeups => Some(Wakeups::new(
                client,
                settings.layout.clone(),
                settings.connect_timeout,
            )),
            _ => None,
        };
        Ok(RedisLeaseStore::assemble(
            conn,
            Shared {
                layout: settings.layout,
                limits: settings.limits,
                target,
                wakeups,
                topology: crate::store::Topology::Single,
                sharded: None,
                nodes: None,
            },
        ))
    }
}

/// Opens the connection manager (and, lazily, the subscriber) over `client`.
async fn open(client: redis::Client, settings: Settings) -> Result<RedisLeaseStore, Error> {
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(settings.op_timeout))
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_number_of_retries(settings.reconnect_attempts)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(500));
    let manager = ConnectionManager::new_with_config(client.clone(), manager_config)
        .await
        .map_err(|e| classify(Operation::Connect, e))?;
    let target = client.get_connection_info().addr().to_string();
    let wakeups = settings
        .push_wakeups
        .then(|| Wakeups::new(client, settings.layout.clone(), settings.connect_timeout));
    Ok(RedisLeaseStore::assemble(
        manager,
        Shared {
            layout: settings.layout,
            limits: settings.limits,
            target,
            wakeups,
            topology: crate::store::Topology::Single,
            sharded: None,
            nodes: None,
        },
    ))
}

impl RedisLeaseStore {
    /// Options for a store.
    pub fn builder() -> RedisBuilder {
        RedisBuilder::new()
    }

    /// Connects to `url` with default options.
    ///
    /// # Errors
    /// As [`RedisBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, Error> {
        RedisBuilder::new().with_url(url).connect().await
    }

    /// Connects with the options and URL of `config`, e.g. loaded from a file.
    ///
    /// # Errors
    /// As [`RedisBuilder::connect`].
    pub async fn from_config(config: RedisConfig) -> Result<Self, Error> {
        RedisBuilder::from_config(config).connect().await
    }

    /// A store with default options over a client you configured yourself.
    ///
    /// # Errors
    /// As [`RedisBuilder::from_client`].
    pub async fn from_client(client: redis::Client) -> Result<Self, Error> {
        RedisBuilder::new().from_client(client).await
    }
}

impl RedisLeaseStore<ClusterConnection> {
    /// Connects to the Redis Cluster whose seed nodes `url` names
    /// (`redis+cluster://h1:p1,h2:p2,…`), with default options.
    ///
    /// # Errors
    /// As [`RedisBuilder::connect_cluster`].
    pub async fn connect_cluster(url: &str) -> Result<Self, Error> {
        RedisBuilder::new().with_url(url).connect_cluster().await
    }
}

impl RedisLeaseStore<SentinelConnection> {
    /// Connects to the primary the sentinels of `url` name
    /// (`redis+sentinel://s1:p1,s2:p2,…/PRIMARY_NAME`), with default options.
    ///
    /// # Errors
    /// As [`RedisBuilder::connect_sentinel`].
    pub async fn connect_sentinel(url: &str) -> Result<Self, Error> {
        RedisBuilder::new().with_url(url).connect_sentinel().await
    }
}

impl<C> RedisLeaseStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store with default options over a connection you already have; waiters poll (see
    /// [`RedisBuilder::with_pubsub_client`] for push wake-ups).
    ///
    /// # Errors
    /// As [`RedisBuilder::from_connection`].
    pub fn from_connection(conn: C) -> Result<Self, Error> {
        RedisBuilder::new().from_connection(conn)
    }
}
