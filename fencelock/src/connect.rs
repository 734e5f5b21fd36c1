//! `connect(url)`: pick a backend by URL scheme.

use std::sync::Arc;

use fencelock_core::{Error, LeaseStore, MemoryLeaseStore};

/// A parsed store URL: which backend, and the URL to hand it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreUrl {
    /// `memory://`: an in-process store (only useful inside one process).
    Memory,
    /// `redis://` or `rediss://`.
    Redis(String),
    /// `redis+cluster://[user:pass@]host:port,host:port,…`: the seed nodes of a Redis Cluster.
    RedisCluster(String),
    /// `redis+sentinel://host:port,host:port,…/PRIMARY_NAME`: the sentinels of a Redis primary.
    RedisSentinel(String),
    /// `postgres://` or `postgresql://`.
    Postgres(String),
    /// `etcd://host:port[,host:port…]`, as `http://` endpoints.
    Etcd(Vec<String>),
    /// `redlock://[user:pass@]host:port,host:port,host:port[/db]`: independent Redis servers
    /// for a Redlock store, as `redis://` URLs.
    Redlock(Vec<String>),
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry passwords: show the scheme only.
        match self {
            Self::Memory => f.write_str("StoreUrl::Memory"),
            Self::Redis(_) => f.write_str("StoreUrl::Redis(..)"),
            Self::RedisCluster(_) => f.write_str("StoreUrl::RedisCluster(..)"),
            Self::RedisSentinel(_) => f.write_str("StoreUrl::RedisSentinel(..)"),
            Self::Postgres(_) => f.write_str("StoreUrl::Postgres(..)"),
            Self::Etcd(endpoints) => write!(f, "StoreUrl::Etcd({} endpoints)", endpoints.len()),
            Self::Redlock(servers) => write!(f, "StoreUrl::Redlock({} servers)", servers.len()),
        }
    }
}

impl StoreUrl {
    /// Parses `url` by its scheme.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty URL, an unknown scheme or an etcd URL without
    /// endpoints. The message never repeats the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(Error::invalid(
                "store url",
                "expected scheme://…, e.g. redis://127.0.0.1:6379, postgres://user@host/db, etcd://127.0.0.1:2379 or memory://",
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "memory" => Ok(Self::Memory),
            "redis" | "rediss" | "redis+unix" => Ok(Self::Redis(url.to_owned())),
            "redis+cluster" => Ok(Self::RedisCluster(url.to_owned())),
            "redis+sentinel" => Ok(Self::RedisSentinel(url.to_owned())),
            "postgres" | "postgresql" => Ok(Self::Postgres(url.to_owned())),
            "etcd" | "etcd+http" | "etcd+https" => {
                let tls = scheme.eq_ignore_ascii_case("etcd+https");
                let hosts = rest.split('/').next().unwrap_or_default();
                let endpoints: Vec<String> = hosts
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(|h| format!("{}://{h}", if tls { "https" } else { "http" }))
                    .collect();
                if endpoints.is_empty() {
                    return Err(Error::invalid(
                        "store url",
                        "etcd:// needs at least one host:port, e.g. etcd://127.0.0.1:2379",
                    ));
                }
                Ok(Self::Etcd(endpoints))
            }
            "redlock" => {
                // Every server gets the same credentials and database.
                let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
                let (auth, hosts) = match authority.rsplit_once('@') {
                    Some((auth, hosts)) => (format!("{auth}@"), hosts),
                    None => (String::new(), authority),
                };
                let db = if db.is_empty() {
                    String::new()
                } else {
                    format!("/{db}")
                };
                Ok(Self::Redlock(
                    hosts
                        .split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(|h| format!("redis://{auth}{h}{db}"))
                        .collect(),
                ))
            }
            other => Err(Error::invalid(
                "store url",
                format!(
                    "unknown scheme `{other}`; use redis://, rediss://, redis+cluster://, redis+sentinel://, redlock://, postgres://, etcd:// or memory://"
                ),
            )),
        }
    }
}

/// Connects to the store named by `url` and returns it ready for [`fencelock_core::Locker`].
///
/// Schemes: `memory://`, and with their features `redis://`/`rediss://` (`redis`),
/// `postgres://` (`postgres`), `etcd://host:port[,host:port]` (`etcd`),
/// `redlock://host:port,host:port,host:port` (`redis`; an odd number of servers, at least 3),
/// `redis+cluster://host:port,host:port,…` (`redis`; any reachable node of a Redis Cluster),
/// `redis+sentinel://host:port,host:port,…/PRIMARY_NAME` (`redis`; the sentinels).
///
/// # Errors
/// [`Error::InvalidInput`] for a malformed URL or a backend this build does not include;
/// the backend's connection errors otherwise.
pub async fn connect(url: &str) -> Result<Arc<dyn LeaseStore>, Error> {
    match StoreUrl::parse(url)? {
        StoreUrl::Memory => Ok(Arc::new(MemoryLeaseStore::new())),
        #[cfg(feature = "redis")]
        StoreUrl::Redis(url) => Ok(Arc::new(
            fencelock_redis::RedisLeaseStore::connect(&url).await?,
        )),
        #[cfg(not(feature = "redis"))]
        StoreUrl::Redis(_) => Err(missing_feature("redis")),
        #[cfg(feature = "redis")]
        StoreUrl::RedisCluster(url) => Ok(Arc::new(
            fencelock_redis::RedisLeaseStore::connect_cluster(&url).await?,
        )),
        #[cfg(not(feature = "redis"))]
        StoreUrl::RedisCluster(_) => Err(missing_feature("redis")),
        #[cfg(feature = "redis")]
        StoreUrl::RedisSentinel(url) => Ok(Arc::new(
            fencelock_redis::RedisLeaseStore::connect_sentinel(&url).await?,
        )),
        #[cfg(not(feature = "redis"))]
        StoreUrl::RedisSentinel(_) => Err(missing_feature("redis")),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(url) => Ok(Arc::new(
            fencelock_postgres::PgLeaseStore::connect(&url).await?,
        )),
        #[cfg(not(feature = "postgres"))]
        StoreUrl::Postgres(_) => Err(missing_feature("postgres")),
        #[cfg(feature = "etcd")]
        StoreUrl::Etcd(endpoints) => Ok(Arc::new(
            fencelock_etcd::EtcdLeaseStore::connect(endpoints).await?,
        )),
        #[cfg(not(feature = "etcd"))]
        StoreUrl::Etcd(_) => Err(missing_feature("etcd")),
        #[cfg(feature = "redis")]
        StoreUrl::Redlock(servers) => Ok(Arc::new(
            fencelock_redis::RedlockLeaseStore::connect(servers).await?,
        )),
        #[cfg(not(feature = "redis"))]
        StoreUrl::Redlock(_) => Err(missing_feature("redis")),
    }
}

#[allow(dead_code)] // unused once every backend feature is on
fn missing_feature(feature: &str) -> Error {
    Error::invalid(
        "store url",
        format!(
            "this build of fencelock has no `{feature}` backend; enable the `{feature}` feature"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencelock_core::ErrorKind;

    #[test]
    fn parse_table() {
        assert_eq!(StoreUrl::parse("memory://").unwrap(), StoreUrl::Memory);
        assert_eq!(
            StoreUrl::parse("redis://:secret@127.0.0.1:6379/0").unwrap(),
            StoreUrl::Redis("redis://:secret@127.0.0.1:6379/0".into())
        );
        assert_eq!(
            StoreUrl::parse("redis+cluster://:pw@a:1,b:2").unwrap(),
            StoreUrl::RedisCluster("redis+cluster://:pw@a:1,b:2".into())
        );
        assert_eq!(
            StoreUrl::parse("redis+sentinel://a:1,b:2/mymaster").unwrap(),
            StoreUrl::RedisSentinel("redis+sentinel://a:1,b:2/mymaster".into())
        );
        assert_eq!(
            StoreUrl::parse("postgresql://u@h/db").unwrap(),
            StoreUrl::Postgres("postgresql://u@h/db".into())
        );
        assert_eq!(
            StoreUrl::parse("etcd://a:2379,b:2379").unwrap(),
            StoreUrl::Etcd(vec!["http://a:2379".into(), "http://b:2379".into()])
        );
        assert_eq!(
            StoreUrl::parse("redlock://:pw@a:1,b:2, c:3/2").unwrap(),
            StoreUrl::Redlock(vec![
                "redis://:pw@a:1/2".into(),
                "redis://:pw@b:2/2".into(),
                "redis://:pw@c:3/2".into(),
            ])
        );
        assert_eq!(
            StoreUrl::parse("redlock://a:1,b:2,c:3").unwrap(),
            StoreUrl::Redlock(vec![
                "redis://a:1".into(),
                "redis://b:2".into(),
                "redis://c:3".into()
            ])
        );
        for bad in ["", "nonsense", "ftp://x", "etcd://", "etcd://,"] {
            let err = StoreUrl::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn debug_and_errors_hide_passwords() {
        let url = StoreUrl::parse("redis://:hunter2@h:1").unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
        let err = StoreUrl::parse("gopher://:hunter2@h").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
