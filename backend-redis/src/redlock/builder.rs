//! Building a `RedlockLeaseStore`: options, `connect()`, and `from_clients` for clients you
//! already configured.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::backend::{WakeupHub, redact_url, ttl_millis};
use fencelock_core::{Error, Operation, TtlLimits};
use futures::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::config::RedlockConfig;
use super::instance::Instance;
use super::quorum::{no_majority, quorum};
use super::store::{Inner, RedlockLeaseStore};
use crate::classify::classify;
use crate::keys::KeyLayout;
use crate::wakeups::Wakeups;

/// Options for a [`RedlockLeaseStore`]; finish with [`connect`](Self::connect) or
/// [`from_clients`](Self::from_clients).
///
/// Options are checked when the store is built, before anything is sent.
#[derive(Clone, Debug, Default)]
pub struct RedlockStoreBuilder {
    config: RedlockConfig,
}

impl RedlockStoreBuilder {
    /// Default options, no servers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options from a config struct.
    pub fn from_config(config: RedlockConfig) -> Self {
        Self { config }
    }

    /// The independent servers, one `redis://` URL each: an odd number, at least 3.
    pub fn with_servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Prefix of every key and of the release channel (default `fencelock:`).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// The largest TTL accepted (default 24 h).
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.config.max_ttl_ms = ttl_millis(max);
        self
    }

    /// The share of the TTL not trusted because server clocks may drift (default 0.01; 2 ms
    /// are always added). At least 0, below 0.5.
    pub fn with_drift_factor(mut self, factor: f64) -> Self {
        self.config.drift_factor = factor;
        self
    }

    /// The longest one request to one server may take (default 100 ms; an acquire uses at most
    /// a quarter of its TTL). A server that does not answer in time counts as a "no".
    pub fn with_server_timeout(mut self, timeout: Duration) -> Self {
        self.config.server_timeout_ms = ttl_millis(timeout);
        self
    }

    /// How long opening a connection or a subscriber may take (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout_ms = ttl_millis(timeout);
        self
    }

    /// Whether waiters subscribe to release announcements (default `true`).
    pub fn with_push_wakeups(mut self, enabled: bool) -> Self {
        self.config.push_wakeups = enabled;
        self
    }

    /// Connects to every server. Succeeds when a majority answers `PING`; the others are
    /// connected to lazily, whenever they come back.
    ///
    /// # Errors
    /// `InvalidInput` for a bad URL or option (an even number of servers, fewer than 3, a
    /// server listed twice, a drift factor outside 0..0.5); `Unavailable` when no majority can
    /// be reached.
    pub async fn connect(self) -> Result<RedlockLeaseStore, Error> {
        self.config.validate()?;
        crate::tls::install_crypto_provider();
        let clients = self
            .config
            .servers
            .iter()
            .map(|url| {
                redis::Client::open(url.as_str())
                    .map_err(|e| Error::invalid("redis url", format!("{}: {e}", redact_url(url))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.from_clients(clients).await
    }

    /// A store over clients you configured yourself, one per independent server.
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub async fn from_clients(
        mut self,
        clients: Vec<redis::Client>,
    ) -> Result<RedlockLeaseStore, Error> {
        self.config.servers = clients
            .iter()
            .map(|c| c.get_connection_info().addr().to_string())
            .collect();
        self.config.validate()?;
        let layout = KeyLayout::new(self.config.key_prefix.clone())?;
        let limits = TtlLimits::with_max(self.config.max_ttl())?;
        let waiters = Arc::new(WakeupHub::new());
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.config.server_timeout()))
            .set_connection_timeout(Some(self.config.connect_timeout()))
            .set_number_of_retries(0)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let mut instances = Vec::with_capacity(clients.len());
        for (client, target) in clients.into_iter().zip(&self.config.servers) {
            let conn =
                ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                    .map_err(|e| classify(Operation::Connect, e))?;
            let wakeups = self.config.push_wakeups.then(|| {
                Arc::new(Wakeups::with_waiters(
                    client,
                    layout.clone(),
                    self.config.connect_timeout(),
                    Arc::clone(&waiters),
                ))
            });
            instances.push(Instance::new(target.clone(), conn, wakeups));
        }
        let n = instances.len();
        let pings = join_all(
            instances
                .iter()
                .map(|i| i.ping(self.config.connect_timeout())),
        )
        .await;
        let failed: Vec<(usize, Error)> = pings
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.err().map(|e| (i, e)))
            .collect();
        if n - failed.len() < quorum(n) {
            return Err(no_majority(Operation::Connect, n, failed));
        }
        for (i, error) in &failed {
            tracing::warn!(server = %instances[*i].target, %error, "Redlock server unreachable at connect; continuing with a majority");
        }
        Ok(RedlockLeaseStore::assemble(Inner {
            instances,
            layout,
            limits,
            drift_factor: self.config.drift_factor,
            server_timeout: self.config.server_timeout(),
            waiters,
        }))
    }
}

impl RedlockLeaseStore {
    /// Options for a store.
    pub fn builder() -> RedlockStoreBuilder {
        RedlockStoreBuilder::new()
    }

    /// Connects to `servers` (one `redis://` URL each, an odd number, at least 3) with default
    /// options.
    ///
    /// # Errors
    /// As [`RedlockStoreBuilder::connect`].
    pub async fn connect<I, S>(servers: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedlockStoreBuilder::new()
            .with_servers(servers)
            .connect()
            .await
    }

    /// Connects with a config struct.
    ///
    /// # Errors
    /// As [`RedlockStoreBuilder::connect`].
    pub async fn from_config(config: RedlockConfig) -> Result<Self, Error> {
        RedlockStoreBuilder::from_config(config).connect().await
    }

    /// A store with default options over clients you configured yourself.
    ///
    /// # Errors
    /// As [`RedlockStoreBuilder::connect`].
    pub async fn from_clients(clients: Vec<redis::Client>) -> Result<Self, Error> {
        RedlockStoreBuilder::new().from_clients(clients).await
    }
}
