//! The lock servers of one run, started fresh through the conformance harness.

use std::net::SocketAddr;

use std::time::Duration;

use fencelock_conformance::harness::{
    EtcdCluster, PgBouncer, PgBouncerOptions, PostgresServer, PostgresServerOptions, RedisCluster,
    RedisSentinel, RedisServer, RedisServerOptions, TcpProxy,
};

use crate::scenario::{Backend, Scenario};

/// The servers behind one run.
#[derive(Debug)]
pub enum Servers {
    /// A Redis primary, and for the failover scenario its replica.
    Redis {
        /// The primary.
        primary: RedisServer,
        /// The replica, if any.
        replica: Option<RedisServer>,
    },
    /// A PostgreSQL server, with a standby for the failover scenario or a pooler in front of
    /// it for the pooled backend.
    Postgres {
        /// The server (the primary).
        server: PostgresServer,
        /// The standby, if any.
        standby: Option<Standby>,
        /// pgbouncer in transaction mode in front of `server`, if any.
        pooler: Option<PgBouncer>,
    },
    /// An etcd cluster (1 or 3 members).
    Etcd(EtcdCluster),
    /// A Redis Cluster (three primaries with a replica each).
    RedisCluster(RedisCluster),
    /// A Redis primary and replica behind three sentinels.
    RedisSentinel(RedisSentinel),
}

/// A streaming standby, replicating through a proxy that can hold back and drop the WAL the
/// primary sends.
#[derive(Debug)]
pub struct Standby {
    /// The standby server.
    pub server: PostgresServer,
    /// The replication connection's proxy.
    pub replication: TcpProxy,
}

impl Servers {
    /// Starts what `backend` needs for `scenario`.
    ///
    /// # Errors
    /// Harness failures (a missing binary included).
    pub async fn start(backend: Backend, scenario: Scenario) -> Result<Self, String> {
        let e = |e: fencelock_conformance::harness::HarnessError| e.to_string();
        Ok(match backend {
            Backend::Redis | Backend::RedisAof => {
                let config = if backend == Backend::RedisAof {
                    RedisServerOptions::aof()
                } else {
                    RedisServerOptions::ephemeral()
                };
                let primary = RedisServer::start(config).await.map_err(e)?;
                let replica = if scenario == Scenario::RedisFailover {
                    Some(RedisServer::start_replica_of(&primary).await.map_err(e)?)
                } else {
                    None
                };
                Self::Redis { primary, replica }
            }
            Backend::Postgres | Backend::PostgresPooled => {
                let server = PostgresServer::start(PostgresServerOptions::default())
                    .await
                    .map_err(e)?;
                let standby = if scenario == Scenario::PgFailover {
                    let replication = TcpProxy::start(server.addr()).map_err(e)?;
                    let standby = PostgresServer::start_standby_via(replication.port())
                        .await
                        .map_err(e)?;
                    Some(Standby {
                        server: standby,
                        replication,
                    })
                } else {
                    None
                };
                let pooler = if backend == Backend::PostgresPooled {
                    Some(
                        PgBouncer::start(server.addr(), PgBouncerOptions::default())
                            .await
                            .map_err(e)?,
                    )
                } else {
                    None
                };
                Self::Postgres {
                    server,
                    standby,
                    pooler,
                }
            }
            Backend::Etcd => Self::Etcd(EtcdCluster::start(1).await.map_err(e)?),
            Backend::Etcd3 => Self::Etcd(EtcdCluster::start(3).await.map_err(e)?),
            Backend::RedisCluster => Self::RedisCluster(RedisCluster::start().await.map_err(e)?),
            Backend::RedisSentinel => Self::RedisSentinel(RedisSentinel::start().await.map_err(e)?),
        })
    }

    /// The URL workers connect to.
    pub fn store_url(&self) -> String {
        match self {
            Self::Redis { primary, .. } => primary.url(),
            Self::Postgres {
                pooler: Some(pooler),
                ..
            } => pooler.url(),
            Self::Postgres { server, .. } => server.url(),
            Self::Etcd(cluster) => {
                let hosts: Vec<String> = cluster
                    .members()
                    .iter()
                    .map(|m| m.client_addr().to_string())
                    .collect();
                format!("etcd://{}", hosts.join(","))
            }
            Self::RedisCluster(cluster) => cluster.url(),
            Self::RedisSentinel(deployment) => deployment.url(),
        }
    }

    /// The address workers reach the server at (the primary, or the first etcd member).
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Redis { primary, .. } => primary.addr(),
            Self::Postgres {
                pooler: Some(pooler),
                ..
            } => pooler.addr(),
            Self::Postgres { server, .. } => server.addr(),
            Self::Etcd(cluster) => cluster.members().first().map_or_else(
                || SocketAddr::from(([127, 0, 0, 1], 0)),
                |m| m.client_addr(),
            ),
            Self::RedisCluster(cluster) => cluster
                .nodes()
                .first()
                .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), RedisServer::addr),
            Self::RedisSentinel(deployment) => deployment
                .servers()
                .first()
                .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), RedisServer::addr),
        }
    }

    /// Kills the server (every member) with SIGKILL.
    ///
    /// # Errors
    /// Signal failures.
    pub fn kill(&self) -> Result<(), String> {
        let e = |e: fencelock_conformance::harness::HarnessError| e.to_string();
        match self {
            Self::Redis { primary, .. } => primary.kill().map_err(e),
            Self::Postgres { server, .. } => server.kill().map_err(e),
            Self::Etcd(cluster) => cluster
                .members()
                .iter()
                .try_for_each(|m| m.kill())
                .map_err(e),
            Self::RedisCluster(_) | Self::RedisSentinel(_) => Err(NO_SINGLE_SERVER.to_owned()),
        }
    }

    /// Restarts the server (every member) on its data directory.
    ///
    /// # Errors
    /// Harness failures.
    pub async fn restart(&self) -> Result<(), String> {
        let e = |e: fencelock_conformance::harness::HarnessError| e.to_string();
        match self {
            Self::Redis { primary, .. } => primary.restart().await.map_err(e),
            Self::Postgres { server, .. } => server.restart().await.map_err(e),
            Self::Etcd(cluster) => {
                for member in cluster.members() {
                    member.restart().await.map_err(e)?;
                }
                Ok(())
            }
            Self::RedisCluster(_) | Self::RedisSentinel(_) => Err(NO_SINGLE_SERVER.to_owned()),
        }
    }

    /// Kills (SIGKILL) the primary that serves `key` (a Redis Cluster: the primary owning its
    /// slot; behind Sentinel: the primary) and waits, at most `within`, until a replica is
    /// promoted in its place: by the cluster (every node reports `cluster_state:ok`) or by the
    /// sentinels (all of them name it, and it says `role:master`). Returns the old and the new
    /// primary's ports.
    ///
    /// # Errors
    /// Not a Redis Cluster or Sentinel deployment; harness failures; no promotion in time.
    pub async fn kill_primary(&self, key: &str, within: Duration) -> Result<(u16, u16), String> {
        let e = |e: fencelock_conformance::harness::HarnessError| e.to_string();
        match self {
            Self::RedisCluster(cluster) => {
                let slot = cluster.slot_of(key).await.map_err(e)?;
                let victim = cluster.primary_of_key(key).await.map_err(e)?;
                let node = cluster
                    .node(victim)
                    .ok_or_else(|| format!("no cluster node on port {victim}"))?;
                node.kill().map_err(e)?;
                let promoted = cluster
                    .wait_for_new_primary(slot, victim, within)
                    .await
                    .map_err(e)?;
                Ok((victim, promoted))
            }
            Self::RedisSentinel(deployment) => {
                let primary = deployment.primary_blocking().map_err(e)?;
                let victim = primary.port();
                primary.kill().map_err(e)?;
                let promoted = deployment
                    .wait_for_failover(victim, within)
                    .await
                    .map_err(e)?;
                Ok((victim, promoted))
            }
            _ => Err("only a Redis Cluster or Sentinel deployment fails over by itself".into()),
        }
    }
}

/// Why a topology that fails over by itself is never killed or restarted as a whole.
const NO_SINGLE_SERVER: &str = "a Redis Cluster or Sentinel deployment is not restarted as one server; its primary is killed (kill_primary)";

impl Servers {
    /// Where a PostgreSQL store's LISTEN goes when its pool goes through the pooler: straight
    /// to PostgreSQL.
    pub fn listen_url(&self) -> Option<String> {
        match self {
            Self::Postgres {
                server,
                pooler: Some(_),
                ..
            } => Some(server.url()),
            _ => None,
        }
    }
}

/// The versions of the server binaries, for the report.
pub fn versions() -> Vec<(String, String)> {
    let run = |program: &str, arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .output()
            .ok()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "not found".to_owned())
    };
    vec![
        ("redis-server".to_owned(), run("redis-server", "--version")),
        ("postgres".to_owned(), run("postgres", "--version")),
        ("etcd".to_owned(), run("etcd", "--version")),
        (
            "pgbouncer".to_owned(),
            run("/usr/sbin/pgbouncer", "--version"),
        ),
    ]
}
