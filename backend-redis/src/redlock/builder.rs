//! `RedlockBuilder`: the options of a `RedlockLeaseStore` (held in one `RedlockConfig`), then
//! `connect()`, or `from_clients` for clients you already configured.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::backend::{WakeupHub, redact_url, ttl_millis};
use fencelock_core::{Error, Operation};
use futures::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::config::{RedlockConfig, Settings, check_servers};
use super::instance::Instance;
use super::quorum::{no_majority, quorum};
use super::store::{Inner, RedlockLeaseStore};
use crate::classify::classify;
use crate::wakeups::Wakeups;

/// Options for a [`RedlockLeaseStore`]: `with_*` for each option, then
/// [`connect`](Self::connect), or [`from_clients`](Self::from_clients) for clients you already
/// configured.
///
/// Every option is a field of the [`RedlockConfig`] the builder holds (the same names,
/// durations in `*_ms`); they are checked when the store is built, before anything is sent, and
/// a bad one is `InvalidInput`.
#[derive(Clone, Debug, Default)]
pub struct RedlockBuilder {
    config: RedlockConfig,
}

impl RedlockBuilder {
    /// Default options, no servers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The options (and URLs) of `config`, e.g. loaded from a file.
    pub fn from_config(config: RedlockConfig) -> Self {
        Self { config }
    }

    /// The options so far.
    pub fn config(&self) -> &RedlockConfig {
        &self.config
    }

    /// The independent servers [`connect`](Self::connect) opens, one `redis://` URL each: an
    /// odd number, at least 3.
    pub fn with_urls<E: AsRef<str>>(mut self, urls: impl IntoIterator<Item = E>) -> Self {
        self.config.urls = Some(urls.into_iter().map(|u| u.as_ref().to_owned()).collect());
        self
    }

    /// Prefix of every key and release channel (default `fencelock:`).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = Some(prefix.into());
        self
    }

    /// The longest one request to one server may take (default 100 ms; an acquire uses at most
    /// a quarter of its TTL). A server that does not answer in time counts as a "no".
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.config.op_timeout_ms = Some(ttl_millis(timeout));
        self
    }

    /// How long opening a connection or a subscriber may take (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout_ms = Some(ttl_millis(timeout));
        self
    }

    /// The largest TTL accepted (default 24 h, at most 10 years).
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.config.max_ttl_ms = Some(ttl_millis(max));
        self
    }

    /// Whether waiters subscribe to release announcements (default `true`).
    pub fn with_push_wakeups(mut self, enabled: bool) -> Self {
        self.config.push_wakeups = Some(enabled);
        self
    }

    /// The share of the TTL not trusted because server clocks may drift (default 0.01; 2 ms
    /// are always added). At least 0, below 0.5.
    pub fn with_drift_factor(mut self, factor: f64) -> Self {
        self.config.drift_factor = Some(factor);
        self
    }

    /// Connects to every server. Succeeds when a majority answers `PING`; the others are
    /// connected to lazily, whenever they come back.
    ///
    /// # Errors
    /// `InvalidInput` for a bad URL or option (an even number of servers, fewer than 3, a
    /// server listed twice, a drift factor outside 0..0.5, a zero timeout); `Unavailable` when
    /// no majority can be reached.
    pub async fn connect(self) -> Result<RedlockLeaseStore, Error> {
        let settings = self.config.settings()?;
        let urls = self.config.urls.unwrap_or_default();
        check_servers(&urls)?;
        crate::tls::install_crypto_provider();
        let clients = urls
            .iter()
            .map(|url| {
                redis::Client::open(url.as_str())
                    .map_err(|e| Error::invalid("redis url", format!("{}: {e}", redact_url(url))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        open(clients, settings).await
    }

    /// A store over clients you configured yourself (TLS roots, credentials, …), one per
    /// independent server. The builder's URLs are not used.
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub async fn from_clients(
        self,
        clients: Vec<redis::Client>,
    ) -> Result<RedlockLeaseStore, Error> {
        let settings = self.config.settings()?;
        open(clients, settings).await
    }
}

/// Opens a lazy connection manager (and subscriber) per server and succeeds once a majority
/// answers `PING`.
async fn open(clients: Vec<redis::Client>, settings: Settings) -> Result<RedlockLeaseStore, Error> {
    let targets: Vec<String> = clients
        .iter()
        .map(|c| c.get_connection_info().addr().to_string())
        .collect();
    check_servers(&targets)?;
    let waiters = Arc::new(WakeupHub::new());
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(settings.op_timeout))
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_number_of_retries(0)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100));
    let mut instances = Vec::with_capacity(clients.len());
    for (client, target) in clients.into_iter().zip(targets) {
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
            .map_err(|e| classify(Operation::Connect, e))?;
        let wakeups = settings.push_wakeups.then(|| {
            Arc::new(Wakeups::with_waiters(
                client,
                settings.layout.clone(),
                settings.connect_timeout,
                Arc::clone(&waiters),
            ))
        });
        instances.push(Instance::new(target, conn, wakeups));
    }
    let n = instances.len();
    let pings = join_all(instances.iter().map(|i| i.ping(settings.connect_timeout))).await;
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
        layout: settings.layout,
        limits: settings.limits,
        drift_factor: settings.drift_factor,
        server_timeout: settings.op_timeout,
        waiters,
    }))
}

impl RedlockLeaseStore {
    /// Options for a store.
    pub fn builder() -> RedlockBuilder {
        RedlockBuilder::new()
    }

    /// Connects to `urls` (one `redis://` URL per independent server, an odd number, at least
    /// 3) with default options.
    ///
    /// # Errors
    /// As [`RedlockBuilder::connect`].
    pub async fn connect<E: AsRef<str>>(urls: impl IntoIterator<Item = E>) -> Result<Self, Error> {
        RedlockBuilder::new().with_urls(urls).connect().await
    }

    /// Connects with the options and URLs of `config`, e.g. loaded from a file.
    ///
    /// # Errors
    /// As [`RedlockBuilder::connect`].
    pub async fn from_config(config: RedlockConfig) -> Result<Self, Error> {
        RedlockBuilder::from_config(config).connect().await
    }

    /// A store with default options over clients you configured yourself.
    ///
    /// # Errors
    /// As [`RedlockBuilder::connect`].
    pub async fn from_clients(clients: Vec<redis::Client>) -> Result<Self, Error> {
        RedlockBuilder::new().from_clients(clients).await
    }
}
