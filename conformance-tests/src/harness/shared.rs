//! External servers named by environment variables, and servers shared by
//! all tests of one test process.

use std::sync::OnceLock;

use super::blocking;
use super::error::{HarnessError, Result};
use super::etcd::EtcdCluster;
use super::pgbouncer::{PgBouncer, PgBouncerOptions};
use super::postgres::{PostgresServer, PostgresServerOptions};
use super::redis::{RedisServer, RedisServerOptions};
use super::redis_cluster::RedisCluster;
use super::redis_sentinel::RedisSentinel;

/// Use this Redis (`redis://HOST:PORT`) instead of starting one.
pub const REDIS_URL_VAR: &str = "FENCELOCK_REDIS_URL";
/// Use this Redis Cluster (`redis+cluster://H1:P1,H2:P2,…`) instead of starting one.
pub const REDIS_CLUSTER_URL_VAR: &str = "FENCELOCK_REDIS_CLUSTER_URL";
/// Use this Sentinel deployment (`redis+sentinel://S1:P1,…/MASTER`) instead of starting one.
pub const REDIS_SENTINEL_URL_VAR: &str = "FENCELOCK_REDIS_SENTINEL_URL";
/// Use this PostgreSQL (`postgres://USER@HOST:PORT/DB`) instead of starting one.
pub const POSTGRES_URL_VAR: &str = "FENCELOCK_POSTGRES_URL";
/// Use these etcd client URLs (comma-separated) instead of starting etcd.
pub const ETCD_ENDPOINTS_VAR: &str = "FENCELOCK_ETCD_ENDPOINTS";
/// Use this pooler (`postgres://USER@HOST:PORT/DB`, transaction mode, in front of the server
/// of `FENCELOCK_POSTGRES_URL`) instead of starting pgbouncer.
pub const PGBOUNCER_URL_VAR: &str = "FENCELOCK_PGBOUNCER_URL";

/// Where a backend's server is: the URLs to connect to, and the local server
/// when the harness started one (`None` for an external server named by an
/// environment variable, which the harness cannot kill or restart).
#[derive(Debug)]
pub struct Target<S> {
    endpoints: Vec<String>,
    server: Option<S>,
}

impl<S> Target<S> {
    /// The (first) URL.
    pub fn url(&self) -> &str {
        self.endpoints.first().map_or("", String::as_str)
    }

    /// All URLs (several for an etcd cluster).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The local server, if the harness started one.
    pub fn server(&self) -> Option<&S> {
        self.server.as_ref()
    }

    /// Whether the server is external (named by an environment variable).
    pub fn is_external(&self) -> bool {
        self.server.is_none()
    }

    /// The local server, if the harness started one.
    pub fn into_server(self) -> Option<S> {
        self.server
    }
}

/// The non-empty value of `var`.
fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// `FENCELOCK_REDIS_URL` if set, else a new [`RedisServer`] (no persistence)
/// owned by the returned target.
pub async fn redis_url_or_start() -> Result<Target<RedisServer>> {
    blocking(redis_blocking).await
}

/// `FENCELOCK_REDIS_CLUSTER_URL` if set, else a new [`RedisCluster`] (three primaries with a
/// replica each) owned by the returned target.
pub async fn redis_cluster_url_or_start() -> Result<Target<RedisCluster>> {
    blocking(redis_cluster_blocking).await
}

/// `FENCELOCK_REDIS_SENTINEL_URL` if set, else a new [`RedisSentinel`] deployment owned by the
/// returned target.
pub async fn redis_sentinel_url_or_start() -> Result<Target<RedisSentinel>> {
    blocking(redis_sentinel_blocking).await
}

/// `FENCELOCK_POSTGRES_URL` if set, else a new [`PostgresServer`].
pub async fn postgres_url_or_start() -> Result<Target<PostgresServer>> {
    blocking(postgres_blocking).await
}

/// `FENCELOCK_ETCD_ENDPOINTS` if set, else a new single-member
/// [`EtcdCluster`].
pub async fn etcd_endpoints_or_start() -> Result<Target<EtcdCluster>> {
    blocking(etcd_blocking).await
}

fn redis_blocking() -> Result<Target<RedisServer>> {
    if let Some(url) = env(REDIS_URL_VAR) {
        return Ok(Target {
            endpoints: vec![url],
            server: None,
        });
    }
    let server = RedisServer::start_blocking(RedisServerOptions::ephemeral())?;
    Ok(Target {
        endpoints: vec![server.url()],
        server: Some(server),
    })
}

fn redis_cluster_blocking() -> Result<Target<RedisCluster>> {
    if let Some(url) = env(REDIS_CLUSTER_URL_VAR) {
        return Ok(Target {
            endpoints: vec![url],
            server: None,
        });
    }
    let cluster = RedisCluster::start_blocking()?;
    Ok(Target {
        endpoints: vec![cluster.url()],
        server: Some(cluster),
    })
}

fn redis_sentinel_blocking() -> Result<Target<RedisSentinel>> {
    if let Some(url) = env(REDIS_SENTINEL_URL_VAR) {
        return Ok(Target {
            endpoints: vec![url],
            server: None,
        });
    }
    let deployment = RedisSentinel::start_blocking()?;
    Ok(Target {
        endpoints: vec![deployment.url()],
        server: Some(deployment),
    })
}

fn postgres_blocking() -> Result<Target<PostgresServer>> {
    if let Some(url) = env(POSTGRES_URL_VAR) {
        return Ok(Target {
            endpoints: vec![url],
            server: None,
        });
    }
    let server = PostgresServer::start_blocking(PostgresServerOptions::default())?;
    Ok(Target {
        endpoints: vec![server.url()],
        server: Some(server),
    })
}

fn etcd_blocking() -> Result<Target<EtcdCluster>> {
    if let Some(list) = env(ETCD_ENDPOINTS_VAR) {
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        if !endpoints.is_empty() {
            return Ok(Target {
                endpoints,
                server: None,
            });
        }
    }
    let cluster = EtcdCluster::start_blocking(1)?;
    Ok(Target {
        endpoints: cluster.endpoints(),
        server: Some(cluster),
    })
}

/// Initialize `cell` once with `init`, remembering a failure too (every
/// later caller gets the same error).
fn shared<S: Send + Sync>(
    cell: &'static OnceLock<Result<Target<S>, HarnessError>>,
    init: fn() -> Result<Target<S>>,
) -> Result<&'static Target<S>> {
    cell.get_or_init(init).as_ref().map_err(Clone::clone)
}

/// The Redis shared by every test of this process: external if
/// `FENCELOCK_REDIS_URL` is set, else started on first use and killed when
/// the process exits. Tests must not kill, pause or flush it; start a
/// dedicated [`RedisServer`] for that.
pub async fn shared_redis() -> Result<&'static Target<RedisServer>> {
    static CELL: OnceLock<Result<Target<RedisServer>, HarnessError>> = OnceLock::new();
    blocking(|| shared(&CELL, redis_blocking)).await
}

/// The PostgreSQL shared by every test of this process (see
/// [`shared_redis`]; variable `FENCELOCK_POSTGRES_URL`).
pub async fn shared_postgres() -> Result<&'static Target<PostgresServer>> {
    static CELL: OnceLock<Result<Target<PostgresServer>, HarnessError>> = OnceLock::new();
    blocking(|| shared(&CELL, postgres_blocking)).await
}

/// The etcd shared by every test of this process (see [`shared_redis`];
/// variable `FENCELOCK_ETCD_ENDPOINTS`). A single member when started
/// locally.
pub async fn shared_etcd() -> Result<&'static Target<EtcdCluster>> {
    static CELL: OnceLock<Result<Target<EtcdCluster>, HarnessError>> = OnceLock::new();
    blocking(|| shared(&CELL, etcd_blocking)).await
}

/// The pgbouncer shared by every test of this process: external if `FENCELOCK_PGBOUNCER_URL`
/// is set, else a [`PgBouncer`] with the default [`PgBouncerOptions`] (transaction mode, two
/// server connections) in front of [`shared_postgres`], started on first use. Tests must not
/// kill or pause it.
///
/// # Errors
/// When `FENCELOCK_POSTGRES_URL` names an external server but `FENCELOCK_PGBOUNCER_URL` is
/// not set: the harness cannot put a pooler in front of a server it does not know how to log
/// into.
pub async fn shared_pgbouncer() -> Result<&'static Target<PgBouncer>> {
    static CELL: OnceLock<Result<Target<PgBouncer>, HarnessError>> = OnceLock::new();
    let external = env(PGBOUNCER_URL_VAR);
    let upstream = if external.is_some() {
        None
    } else {
        let postgres = shared_postgres().await?;
        let Some(server) = postgres.server() else {
            return Err(HarnessError::new(format!(
                "{POSTGRES_URL_VAR} names an external server; set {PGBOUNCER_URL_VAR} to a \
                 transaction-mode pooler in front of it"
            )));
        };
        Some(server.addr())
    };
    blocking(move || {
        CELL.get_or_init(|| match (external, upstream) {
            (Some(url), _) => Ok(Target {
                endpoints: vec![url],
                server: None,
            }),
            (None, Some(upstream)) => {
                let pooler = PgBouncer::start_blocking(upstream, &PgBouncerOptions::default())?;
                Ok(Target {
                    endpoints: vec![pooler.url()],
                    server: Some(pooler),
                })
            }
            (None, None) => Err(HarnessError::new(
                "no pooler and no server to put one in front of",
            )),
        })
        .as_ref()
        .map_err(Clone::clone)
    })
    .await
}

/// The Redis Cluster shared by every test of this process (see [`shared_redis`]; variable
/// `FENCELOCK_REDIS_CLUSTER_URL`). Tests must not kill or pause its nodes; start a dedicated
/// [`RedisCluster`] for that.
pub async fn shared_redis_cluster() -> Result<&'static Target<RedisCluster>> {
    static CELL: OnceLock<Result<Target<RedisCluster>, HarnessError>> = OnceLock::new();
    blocking(|| shared(&CELL, redis_cluster_blocking)).await
}

/// The Sentinel deployment shared by every test of this process (see [`shared_redis`];
/// variable `FENCELOCK_REDIS_SENTINEL_URL`).
pub async fn shared_redis_sentinel() -> Result<&'static Target<RedisSentinel>> {
    static CELL: OnceLock<Result<Target<RedisSentinel>, HarnessError>> = OnceLock::new();
    blocking(|| shared(&CELL, redis_sentinel_blocking)).await
}
