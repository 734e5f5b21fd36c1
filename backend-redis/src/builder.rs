//! Building a `RedisLeaseStore`: options, `connect(url)`, and `from_*` for existing clients.

use std::time::Duration;

use fencelock_core::backend::{redact_url, ttl_millis};
use fencelock_core::{Error, Operation, TtlLimits};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

use crate::classify::classify;
use crate::config::RedisConfig;
use crate::keys::KeyLayout;
use crate::store::{RedisLeaseStore, Shared};
use crate::wakeups::Wakeups;

/// Options for a [`RedisLeaseStore`]; finish with [`connect`](Self::connect),
/// [`from_client`](Self::from_client) or [`from_connection`](Self::from_connection).
///
/// Options are checked when the store is built, before anything is sent.
#[derive(Clone, Default)]
pub struct RedisStoreBuilder {
    config: RedisConfig,
    pubsub_client: Option<redis::Client>,
}

impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's own Debug may show credentials; show only where it points.
        let pubsub = self
            .pubsub_client
            .as_ref()
            .map(|c| c.get_connection_info().addr().to_string());
        f.debug_struct("RedisStoreBuilder")
            .field("config", &self.config)
            .field("pubsub_client", &pubsub)
            .finish()
    }
}

impl RedisStoreBuilder {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options from a config struct (its `url` is used by [`Self::connect_config`]).
    pub fn from_config(config: RedisConfig) -> Self {
        Self {
            config,
            pubsub_client: None,
        }
    }

    /// Prefix of every key and of the release channel (default `fencelock:`). Stores that
    /// should see the same locks must use the same prefix. No `{`, `}` or control characters.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// The largest TTL accepted (default 24 h).
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.config.max_ttl_ms = ttl_millis(max);
        self
    }

    /// How long a request waits for its reply before failing as `OutcomeUnknown` (default 1 s).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.config.response_timeout_ms = ttl_millis(timeout);
        self
    }

    /// How long opening a connection may take (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout_ms = ttl_millis(timeout);
        self
    }

    /// How many times a request retries opening a broken connection before it fails as
    /// `Unavailable` (default 1).
    pub fn with_reconnect_attempts(mut self, attempts: usize) -> Self {
        self.config.reconnect_attempts = attempts;
        self
    }

    /// Whether waiters subscribe to release announcements (default `true`); without them they
    /// poll.
    pub fn with_push_wakeups(mut self, enabled: bool) -> Self {
        self.config.push_wakeups = enabled;
        self
    }

    /// The client that opens the subscriber connection for push wake-ups, for stores built
    /// with [`Self::from_connection`] (which otherwise poll).
    pub fn with_pubsub_client(mut self, client: redis::Client) -> Self {
        self.pubsub_client = Some(client);
        self
    }

    /// Connects to `url` (`redis://`, `rediss://` with the `tls` feature, `redis+unix://`).
    ///
    /// # Errors
    /// `InvalidInput` for a bad URL or option; `Unavailable` when the server cannot be reached.
    pub async fn connect(mut self, url: &str) -> Result<RedisLeaseStore, Error> {
        url.clone_into(&mut self.config.url);
        self.connect_config().await
    }

    /// Connects to the URL in the config this builder was made from.
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub async fn connect_config(self) -> Result<RedisLeaseStore, Error> {
        self.validate()?;
        crate::tls::install_crypto_provider();
        let client = redis::Client::open(self.config.url.as_str()).map_err(|e| {
            Error::invalid(
                "redis url",
                format!("{}: {e}", redact_url(&self.config.url)),
            )
        })?;
        self.from_client(client).await
    }

    /// A store over a client you configured yourself; opens a [`ConnectionManager`] with this
    /// builder's timeouts, and the subscriber for push wake-ups from the same client.
    ///
    /// # Errors
    /// `InvalidInput` for a bad option; `Unavailable` when the server cannot be reached.
    pub async fn from_client(self, client: redis::Client) -> Result<RedisLeaseStore, Error> {
        let layout = self.validate()?;
        let limits = TtlLimits::with_max(self.config.max_ttl())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.config.response_timeout()))
            .set_connection_timeout(Some(self.config.connect_timeout()))
            .set_number_of_retries(self.config.reconnect_attempts)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|e| classify(Operation::Connect, e))?;
        let target = client.get_connection_info().addr().to_string();
        let wakeups = self
            .config
            .push_wakeups
            .then(|| Wakeups::new(client, layout.clone(), self.config.connect_timeout()));
        Ok(RedisLeaseStore::assemble(
            manager,
            Shared {
                layout,
                limits,
                target,
                wakeups,
            },
        ))
    }

    /// A store over a connection you already have (a `ConnectionManager`, a
    /// `MultiplexedConnection`, …). Its timeouts and reconnects are yours; this builder's
    /// timeout options do not apply. Waiters poll unless
    /// [`with_pubsub_client`](Self::with_pubsub_client) was given.
    ///
    /// # Errors
    /// `InvalidInput` for a bad option.
    pub fn from_connection<C>(self, conn: C) -> Result<RedisLeaseStore<C>, Error>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let layout = self.validate()?;
        let limits = TtlLimits::with_max(self.config.max_ttl())?;
        let target = match &self.pubsub_client {
            Some(client) => client.get_connection_info().addr().to_string(),
            None => "a caller-supplied connection".to_owned(),
        };
        let wakeups = match self.pubsub_client {
            Some(client) if self.config.push_wakeups => Some(Wakeups::new(
                client,
                layout.clone(),
                self.config.connect_timeout(),
            )),
            _ => None,
        };
        Ok(RedisLeaseStore::assemble(
            conn,
            Shared {
                layout,
                limits,
                target,
                wakeups,
            },
        ))
    }

    fn validate(&self) -> Result<KeyLayout, Error> {
        TtlLimits::with_max(self.config.max_ttl())?;
        for (what, value) in [
            ("response timeout", self.config.response_timeout_ms),
            ("connect timeout", self.config.connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(Error::invalid(
                    what,
                    "it is zero; give it a positive duration",
                ));
            }
        }
        KeyLayout::new(self.config.key_prefix.clone())
    }
}

impl RedisLeaseStore {
    /// Options for a store.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::new()
    }

    /// Connects to `url` with default options.
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, Error> {
        RedisStoreBuilder::new().connect(url).await
    }

    /// Connects with a config struct.
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::connect`].
    pub async fn from_config(config: RedisConfig) -> Result<Self, Error> {
        RedisStoreBuilder::from_config(config)
            .connect_config()
            .await
    }

    /// A store with default options over a client you configured yourself.
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::from_client`].
    pub async fn from_client(client: redis::Client) -> Result<Self, Error> {
        RedisStoreBuilder::new().from_client(client).await
    }
}

impl<C> RedisLeaseStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store with default options over a connection you already have; waiters poll (see
    /// [`RedisStoreBuilder::with_pubsub_client`] for push wake-ups).
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::from_connection`].
    pub fn from_connection(conn: C) -> Result<Self, Error> {
        RedisStoreBuilder::new().from_connection(conn)
    }
}
