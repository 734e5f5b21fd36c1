//! `EtcdBuilder`: the options of an `EtcdLeaseStore` (held in one `EtcdConfig`), then
//! `connect()`, or `from_client` for a client you already have.

use std::fmt;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use fencelock_core::backend::ttl_millis;
use fencelock_core::{Error, Operation};

use crate::EtcdLeaseStore;
use crate::classify::classify;
use crate::config::EtcdConfig;

/// Options for an [`EtcdLeaseStore`]: `with_*` for each option, then
/// [`connect`](Self::connect), or [`from_client`](Self::from_client) for a client you already
/// have.
///
/// Every option but the pass-through [`ConnectOptions`] is a field of the [`EtcdConfig`] the
/// builder holds (the same names, durations in `*_ms`); they are checked when the store is
/// built, before anything is sent, and a bad one is `InvalidInput`.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), fencelock_core::Error> {
/// let store = fencelock_etcd::EtcdLeaseStore::builder()
///     .with_urls(["http://10.0.0.1:2379", "http://10.0.0.2:2379"])
///     .with_key_prefix("locks/")
///     .with_user("app", "s3cret")
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
///
/// `Debug` never prints the password or the pass-through [`ConnectOptions`].
#[derive(Clone, Default)]
pub struct EtcdBuilder {
    config: EtcdConfig,
    connect_options: Option<ConnectOptions>,
}

impl fmt::Debug for EtcdBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ConnectOptions may hold credentials and keys; only say whether they were given.
        f.debug_struct("EtcdBuilder")
            .field("config", &self.config)
            .field(
                "connect_options",
                &self.connect_options.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

impl EtcdBuilder {
    /// Default options, no URLs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The options (and URLs) of `config`, e.g. loaded from a file.
    pub fn from_config(config: EtcdConfig) -> Self {
        Self {
            config,
            connect_options: None,
        }
    }

    /// The options so far.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// The cluster members [`connect`](Self::connect) talks to, by their client URLs (etcd's
    /// "endpoints"): `http://host:2379`, or `https://` for all of them (crate feature `tls`).
    pub fn with_urls<E: AsRef<str>>(mut self, urls: impl IntoIterator<Item = E>) -> Self {
        self.config.urls = Some(urls.into_iter().map(|u| u.as_ref().to_owned()).collect());
        self
    }

    /// Puts every lock key under `prefix`: the lock `NAME` lives at `<prefix>NAME/<lease id>`.
    ///
    /// The default is the empty prefix, which is what `etcdctl lock NAME` and Go's
    /// `concurrency.NewMutex(session, "NAME/")` use. With a prefix `p`, fencelock's `NAME` and
    /// `etcdctl lock pNAME` are the same lock. At most 128 bytes, no control characters.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = Some(prefix.into());
        self
    }

    /// How long one etcd request may take (default 5 s; whole milliseconds, rounded up); after
    /// that its outcome is unknown (`OutcomeUnknown`).
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.config.op_timeout_ms = Some(ttl_millis(timeout));
        self
    }

    /// How long connecting to the cluster may take (default 5 s). Set explicitly, it also
    /// applies on top of [`with_connect_options`](Self::with_connect_options).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout_ms = Some(ttl_millis(timeout));
        self
    }

    /// The largest TTL accepted (default 24 h, at most 10 years).
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.config.max_ttl_ms = Some(ttl_millis(max));
        self
    }

    /// Authenticates as `user` with `password` (applied on top of
    /// [`with_connect_options`](Self::with_connect_options) too).
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.config.user = Some(user.into());
        self.config.password = Some(password.into());
        self
    }

    /// etcd-client's own options, passed through: TLS (crate feature `tls`) with your own
    /// roots or a client certificate, keepalive, … Not part of [`EtcdConfig`]: they are not
    /// plain data.
    ///
    /// These replace fencelock's own ([`Self::default_connect_options`]: `require_leader` on,
    /// so a member cut off from its cluster refuses requests instead of stalling them;
    /// `https://` URLs, with crate feature `tls`, verified against the system's root
    /// certificates or those in the file `SSL_CERT_FILE` names). Start from those to keep
    /// them. [`with_user`](Self::with_user) and an explicit
    /// [`with_connect_timeout`](Self::with_connect_timeout) are applied on top. For a private
    /// authority, add `.with_tls(TlsOptions::new().ca_certificate(…))`.
    pub fn with_connect_options(mut self, options: ConnectOptions) -> Self {
        self.connect_options = Some(options);
        self
    }

    /// The etcd-client options [`Self::connect`] uses when
    /// [`with_connect_options`](Self::with_connect_options) gave none: the connect timeout,
    /// `require_leader` on, and for `https://` URLs TLS verified against the system's roots
    /// (or `SSL_CERT_FILE`). Start from these to change one setting and keep the rest.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad connect timeout, a mix of `https://` and plain URLs,
    /// or `https://` URLs without the crate feature `tls`.
    pub fn default_connect_options(&self) -> Result<ConnectOptions, Error> {
        let settings = self.config.settings()?;
        let options = ConnectOptions::new()
            .with_connect_timeout(settings.connect_timeout)
            .with_require_leader(true);
        if !uses_tls(self.config.urls.as_deref().unwrap_or_default())? {
            return Ok(options);
        }
        #[cfg(feature = "tls")]
        {
            Ok(options.with_tls(etcd_client::TlsOptions::new().with_native_roots()))
        }
        #[cfg(not(feature = "tls"))]
        {
            Err(Error::invalid(
                "etcd urls",
                "https:// URLs need fencelock-etcd's crate feature `tls`",
            ))
        }
    }

    /// Connects to the URLs given by [`with_urls`](Self::with_urls) or the config.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no or malformed URLs, a password without a user, a bad
    /// timeout, key prefix or maximum TTL; [`Error::Unavailable`] when etcd cannot be reached
    /// (authentication included).
    pub async fn connect(self) -> Result<EtcdLeaseStore, Error> {
        let settings = self.config.settings()?;
        let urls = self.config.urls.as_deref().unwrap_or_default();
        if urls.is_empty() {
            return Err(Error::invalid(
                "etcd urls",
                "none given; pass the members' client URLs, such as http://127.0.0.1:2379, to EtcdLeaseStore::connect(urls) or with_urls(urls), or set `urls` in the config",
            ));
        }
        let mut options = match self.connect_options.clone() {
            Some(options) => match self.config.connect_timeout_ms {
                Some(_) => options.with_connect_timeout(settings.connect_timeout),
                None => options,
            },
            None => self.default_connect_options()?,
        };
        if let Some(user) = &self.config.user {
            options = options.with_user(
                user.clone(),
                self.config.password.clone().unwrap_or_default(),
            );
        }
        let client = Client::connect(urls, Some(options))
            .await
            .map_err(|e| classify(Operation::Connect, e))?;
        Ok(EtcdLeaseStore::assemble(client, settings))
    }

    /// A store over a client you already have (its endpoints, TLS, auth and connect timeout
    /// are kept; the builder's URLs, credentials and connect options are not used).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad option.
    pub fn from_client(self, client: Client) -> Result<EtcdLeaseStore, Error> {
        Ok(EtcdLeaseStore::assemble(client, self.config.settings()?))
    }
}

/// Whether the URLs are `https://`: all of them or none.
fn uses_tls(urls: &[String]) -> Result<bool, Error> {
    let https = |u: &String| {
        u.get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    };
    match urls.iter().filter(|u| https(u)).count() {
        0 => Ok(false),
        n if n == urls.len() => Ok(true),
        _ => Err(Error::invalid(
            "etcd urls",
            "a mix of https:// and plain URLs; use one scheme for the whole cluster",
        )),
    }
}

impl EtcdLeaseStore {
    /// Options for a store.
    pub fn builder() -> EtcdBuilder {
        EtcdBuilder::new()
    }

    /// Connects to `urls` (the members' client URLs, `http://host:2379`, …) with default
    /// options.
    ///
    /// # Errors
    /// As [`EtcdBuilder::connect`].
    pub async fn connect<E: AsRef<str>>(urls: impl IntoIterator<Item = E>) -> Result<Self, Error> {
        EtcdBuilder::new().with_urls(urls).connect().await
    }

    /// Connects with the options and URLs of `config`, e.g. loaded from a file.
    ///
    /// # Errors
    /// As [`EtcdBuilder::connect`].
    pub async fn from_config(config: EtcdConfig) -> Result<Self, Error> {
        EtcdBuilder::from_config(config).connect().await
    }

    /// A store with default options over a client you already have (its endpoints, TLS and
    /// auth are kept): empty key prefix, 24 h maximum TTL, 5 s operation timeout.
    ///
    /// # Errors
    /// As [`EtcdBuilder::from_client`]; never with the default options.
    pub fn from_client(client: Client) -> Result<Self, Error> {
        EtcdBuilder::new().from_client(client)
    }
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;

    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let builder = EtcdBuilder::new()
            .with_urls(["http://root:hunter2@127.0.0.1:2379"])
            .with_user("app", "s3cret")
            .with_connect_options(ConnectOptions::new().with_user("x", "inner-secret"));
        let shown = format!("{builder:?}");
        for secret in ["s3cret", "hunter2", "inner-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("<set>"), "{shown}");
    }

    #[tokio::test]
    async fn bad_input_is_typed_before_anything_is_sent() {
        let none: [&str; 0] = [];
        let builders = [
            ("no urls at all", EtcdBuilder::new()),
            ("empty urls", EtcdBuilder::new().with_urls(none)),
            (
                "malformed url",
                EtcdBuilder::new().with_urls(["http://[::1"]),
            ),
            (
                "mixed schemes",
                EtcdBuilder::new().with_urls(["http://127.0.0.1:1", "https://127.0.0.1:2"]),
            ),
            (
                "zero op timeout",
                EtcdBuilder::new()
                    .with_urls(["http://127.0.0.1:1"])
                    .with_op_timeout(Duration::ZERO),
            ),
            (
                "zero max ttl",
                EtcdBuilder::new()
                    .with_urls(["http://127.0.0.1:1"])
                    .with_max_ttl(Duration::ZERO),
            ),
            (
                "hostile prefix",
                EtcdBuilder::new()
                    .with_urls(["http://127.0.0.1:1"])
                    .with_key_prefix("a\u{7f}"),
            ),
        ];
        for (what, builder) in builders {
            let err = builder.connect().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        }
    }
}
