//! Which store, and connecting to it within a bounded time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fencelock::{LeaseStore, StoreUrl};

use crate::args::StoreArgs;
use crate::duration::short;
use crate::exit::{Failure, status};

/// A store URL from `--store` / `FENCELOCK_STORE`. The raw URL may hold a password and is never
/// printed.
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) parsed: StoreUrl,
    pub(crate) timeout: Duration,
}

impl Target {
    /// The URL from the arguments (or the environment, through clap).
    ///
    /// # Errors
    /// A usage failure when no store is given or the URL does not parse.
    pub(crate) fn from_args(args: &StoreArgs) -> Result<Self, Failure> {
        let Some(url) = args.store.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Err(Failure::usage(
                "no store given: pass --store URL or set FENCELOCK_STORE (e.g. redis://127.0.0.1:6379)",
            ));
        };
        if args.connect_timeout.is_zero() {
            return Err(Failure::usage("--connect-timeout must be above zero"));
        }
        let parsed = StoreUrl::parse(url)?;
        Ok(Self {
            url: url.trim().to_owned(),
            parsed,
            timeout: args.connect_timeout,
        })
    }

    /// The scheme's backend name, for messages.
    pub(crate) fn backend(&self) -> &'static str {
        match self.parsed {
            StoreUrl::Memory => "memory",
            StoreUrl::Redis(_) | StoreUrl::RedisCluster(_) | StoreUrl::RedisSentinel(_) => "redis",
            StoreUrl::Redlock(_) => "redlock",
            StoreUrl::Postgres(_) => "postgres",
            StoreUrl::Etcd(_) => "etcd",
            _ => "store",
        }
    }

    /// Warns on stderr that `memory://` excludes nothing across processes (commands that
    /// take locks call this).
    pub(crate) fn warn_if_memory(&self) {
        if self.parsed == StoreUrl::Memory {
            eprintln!(
                "fencelock: warning: memory:// locks live inside this one process and exclude nothing across processes; use it only to try fencelock out"
            );
        }
    }

    /// Connects, giving up after the connect timeout.
    ///
    /// # Errors
    /// [`status::UNAVAILABLE`] when the store cannot be reached in time; the library's
    /// classification otherwise (e.g. a backend this build lacks is a usage error).
    pub(crate) async fn connect(&self) -> Result<Arc<dyn LeaseStore>, Failure> {
        match tokio::time::timeout(self.timeout, open(self)).await {
            Ok(Ok(store)) => Ok(store),
            Ok(Err(error)) => Err(self.connect_failure(error)),
            Err(_) => Err(self.no_answer("connect")),
        }
    }

    /// Errors while connecting say so plainly ("outcome unknown" means nothing for a connect).
    fn connect_failure(&self, error: fencelock::Error) -> Failure {
        match &error {
            fencelock::Error::Unavailable { source, .. }
            | fencelock::Error::OutcomeUnknown { source, .. }
            | fencelock::Error::Backend { source, .. } => Failure::new(
                status::UNAVAILABLE,
                format!(
                    "cannot connect to the {} store: {source}; check that the server is up and the URL is right",
                    self.backend()
                ),
            ),
            _ => Failure::from(error),
        }
    }

    fn no_answer(&self, what: &str) -> Failure {
        Failure::new(
            status::UNAVAILABLE,
            format!(
                "{} store did not answer {what} within {}; check that the server is up and the URL is right (or raise --connect-timeout)",
                self.backend(),
                short(self.timeout)
            ),
        )
    }

    /// The failure for an error of a semaphore request: a store without semaphores says which
    /// stores have them; anything else as [`Failure::from`].
    pub(crate) fn permit_failure(&self, error: fencelock::Error) -> Failure {
        if error.kind() != fencelock::ErrorKind::Unsupported {
            return Failure::from(error);
        }
        Failure::new(
            status::UNAVAILABLE,
            format!(
                "{error}; --permits needs a store with semaphores: Redis (one server, Cluster or Sentinel), PostgreSQL or etcd"
            ),
        )
    }

    /// Runs one semaphore request as [`Target::bounded`] does, failing as
    /// [`Target::permit_failure`] says.
    ///
    /// # Errors
    /// [`status::UNAVAILABLE`] on timeout or on a store without semaphores; the request's own
    /// error otherwise.
    pub(crate) async fn bounded_permits<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, fencelock::Error>>,
    ) -> Result<T, Failure> {
        self.bounded_as(what, request, |e| self.permit_failure(e))
            .await
    }

    /// Runs one store request, giving up after the connect timeout.
    ///
    /// # Errors
    /// [`status::UNAVAILABLE`] on timeout; the request's own error otherwise.
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, fencelock::Error>>,
    ) -> Result<T, Failure> {
        self.bounded_as(what, request, Failure::from).await
    }

    async fn bounded_as<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, fencelock::Error>>,
        failure: impl FnOnce(fencelock::Error) -> Failure,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(failure),
            Err(_) => Err(self.no_answer(what)),
        }
    }
}

/// Opens the store. Backends compiled into this CLI are opened through their crates (so that
/// their own timeouts can be bounded too); everything else goes through `fencelock::connect`.
async fn open(target: &Target) -> Result<Arc<dyn LeaseStore>, fencelock::Error> {
    match &target.parsed {
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(url) => {
            let store = fencelock_postgres::PgLeaseStore::builder()
                .with_url(url)
                .with_op_timeout(target.timeout)
                .with_connect_timeout(target.timeout)
                .with_max_connections(2)
                .connect()
                .await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "redis")]
        StoreUrl::Redis(url) => {
            let store = fencelock_redis::RedisLeaseStore::builder()
                .with_url(url)
                .with_op_timeout(target.timeout)
                .with_connect_timeout(target.timeout)
                .connect()
                .await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "redis")]
        StoreUrl::RedisCluster(url) => {
            let store = fencelock_redis::RedisLeaseStore::builder()
                .with_url(url)
                .with_op_timeout(target.timeout)
                .with_connect_timeout(target.timeout)
                .connect_cluster()
                .await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "redis")]
        StoreUrl::RedisSentinel(url) => {
            let store = fencelock_redis::RedisLeaseStore::builder()
                .with_url(url)
                .with_op_timeout(target.timeout)
                .with_connect_timeout(target.timeout)
                .connect_sentinel()
                .await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "redis")]
        StoreUrl::Redlock(urls) => {
            let store = fencelock_redis::RedlockLeaseStore::builder()
                .with_urls(urls)
                .with_connect_timeout(target.timeout)
                .connect()
                .await?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "etcd")]
        StoreUrl::Etcd(urls) => {
            let store = fencelock_etcd::EtcdLeaseStore::builder()
                .with_urls(urls)
                .with_op_timeout(target.timeout)
                .with_connect_timeout(target.timeout)
                .connect()
                .await?;
            Ok(Arc::new(store))
        }
        _ => fencelock::connect(&target.url).await,
    }
}
