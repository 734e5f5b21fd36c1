//! Configuration: a plain (serde) struct with `with_*` methods and `connect()`.

use std::fmt;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use fencelock_core::backend::{redact_url, ttl_millis};
use fencelock_core::{Error, Operation};
use serde::{Deserialize, Serialize};

use crate::EtcdLeaseStore;
use crate::classify::classify;

/// How to reach etcd and lay out lock keys.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), fencelock_core::Error> {
/// let store = fencelock_etcd::EtcdLeaseStore::builder(["http://10.0.0.1:2379", "http://10.0.0.2:2379"])
///     .with_key_prefix("locks/")
///     .with_user("app", "s3cret")
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
///
/// `Debug` never prints the password or the pass-through [`ConnectOptions`].
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EtcdConfig {
    /// Client URLs of the cluster's members.
    pub endpoints: Vec<String>,
    /// Prefix of every lock key (default empty: compatible with `etcdctl lock NAME`).
    pub key_prefix: String,
    /// User name for etcd authentication.
    pub user: Option<String>,
    /// Password for etcd authentication.
    pub password: Option<String>,
    /// Per-request timeout in milliseconds (0: the default, 5000).
    pub op_timeout_ms: u64,
    /// Largest TTL accepted, in seconds (0: the default, 24 h).
    pub max_ttl_secs: u64,
    #[serde(skip)]
    connect_options: Option<ConnectOptions>,
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<String> = self.endpoints.iter().map(|e| redact_url(e)).collect();
        f.debug_struct("EtcdConfig")
            .field("endpoints", &endpoints)
            .field("key_prefix", &self.key_prefix)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("op_timeout_ms", &self.op_timeout_ms)
            .field("max_ttl_secs", &self.max_ttl_secs)
            .field(
                "connect_options",
                &self.connect_options.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

impl EtcdConfig {
    /// A configuration for `endpoints` with every option at its default.
    pub fn new<E: AsRef<str>>(endpoints: impl IntoIterator<Item = E>) -> Self {
        Self {
            endpoints: endpoints
                .into_iter()
                .map(|e| e.as_ref().to_owned())
                .collect(),
            ..Self::default()
        }
    }

    /// See [`EtcdLeaseStore::with_key_prefix`].
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Authenticates as `user` with `password`.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// See [`EtcdLeaseStore::with_op_timeout`].
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout_ms = ttl_millis(timeout);
        self
    }

    /// See [`EtcdLeaseStore::with_max_ttl`].
    pub fn with_max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl_secs = max.as_secs();
        self
    }

    /// etcd-client's own options, passed through: TLS (crate feature `tls`), keepalive, connect
    /// timeout, … [`EtcdConfig::with_user`] is applied on top.
    ///
    /// These replace fencelock's own ([`Self::default_connect_options`]: a connect timeout
    /// equal to the op timeout; `require_leader` on, so a member cut off from its cluster
    /// refuses requests instead of stalling them; `https://` endpoints, with crate feature
    /// `tls`, verified against the system's root certificates or those in the file
    /// `SSL_CERT_FILE` names). Start from those to keep them. For a private authority in
    /// code, or a client certificate, add
    /// `.with_tls(TlsOptions::new().ca_certificate(…))`.
    pub fn with_connect_options(mut self, options: ConnectOptions) -> Self {
        self.connect_options = Some(options);
        self
    }

    /// Connects and returns the store.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no or malformed endpoints, a password without a user, a zero
    /// timeout or a bad maximum TTL; [`Error::Unavailable`] when etcd cannot be reached.
    pub async fn connect(self) -> Result<EtcdLeaseStore, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::invalid(
                "etcd endpoints",
                "none given; pass at least one client URL such as http://127.0.0.1:2379",
            ));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(Error::invalid(
                "etcd credentials",
                "a password without a user name",
            ));
        }
        let op_timeout = self.op_timeout();
        let mut options = match self.connect_options.clone() {
            Some(options) => options,
            None => self.default_connect_options()?,
        };
        if let Some(user) = &self.user {
            options = options.with_user(user.clone(), self.password.clone().unwrap_or_default());
        }
        let client = Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(|e| classify(Operation::Connect, e))?;
        let mut store = EtcdLeaseStore::from_client(client)
            .with_key_prefix(self.key_prefix)
            .with_op_timeout(op_timeout)?;
        if self.max_ttl_secs > 0 {
            store = store.with_max_ttl(Duration::from_secs(self.max_ttl_secs))?;
        }
        Ok(store)
    }

    fn op_timeout(&self) -> Duration {
        match self.op_timeout_ms {
            0 => EtcdLeaseStore::DEFAULT_OP_TIMEOUT,
            ms => Duration::from_millis(ms),
        }
    }

    /// The etcd-client options [`Self::connect`] uses when
    /// [`with_connect_options`](Self::with_connect_options) gave none: a connect timeout equal
    /// to the op timeout, `require_leader` on, and for `https://` endpoints TLS verified against
    /// the system's roots (or `SSL_CERT_FILE`). Start from these to change one setting and
    /// keep the rest.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a mix of `https://` and plain endpoints, or `https://`
    /// endpoints without the crate feature `tls`.
    pub fn default_connect_options(&self) -> Result<ConnectOptions, Error> {
        let options = ConnectOptions::new()
            .with_connect_timeout(self.op_timeout())
            .with_require_leader(true);
        if !self.uses_tls()? {
            return Ok(options);
        }
        #[cfg(feature = "tls")]
        {
            Ok(options.with_tls(etcd_client::TlsOptions::new().with_native_roots()))
        }
        #[cfg(not(feature = "tls"))]
        {
            Err(Error::invalid(
                "etcd endpoints",
                "https:// endpoints need fencelock-etcd's crate feature `tls`",
            ))
        }
    }

    /// Whether the endpoints are `https://`: all of them or none.
    fn uses_tls(&self) -> Result<bool, Error> {
        let https = |e: &String| {
            e.get(..8)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        };
        match self.endpoints.iter().filter(|e| https(e)).count() {
            0 => Ok(false),
            n if n == self.endpoints.len() => Ok(true),
            _ => Err(Error::invalid(
                "etcd endpoints",
                "a mix of https:// and plain endpoints; use one scheme for the whole cluster",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secrets() {
        let config = EtcdConfig::new(["http://root:hunter2@127.0.0.1:2379"])
            .with_user("app", "s3cret")
            .with_connect_options(ConnectOptions::new().with_user("x", "inner-secret"));
        let shown = format!("{config:?}");
        for secret in ["s3cret", "hunter2", "inner-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("app") && shown.contains("127.0.0.1:2379"),
            "{shown}"
        );
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redact_url("http://a:b@h:1/x@y"), "http://a:***@h:1/x@y");
        assert_eq!(redact_url("http://h:1"), "http://h:1");
        assert_eq!(redact_url("u:p@h:1"), "u:***@h:1");
    }

    #[tokio::test]
    async fn bad_input_is_typed() {
        use fencelock_core::ErrorKind;
        let none: [&str; 0] = [];
        for config in [
            EtcdConfig::new(none),
            EtcdConfig {
                password: Some("p".into()),
                ..EtcdConfig::new(["http://127.0.0.1:1"])
            },
            EtcdConfig::new(["http://[::1"]),
        ] {
            let err = config.connect().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        }
    }
}
