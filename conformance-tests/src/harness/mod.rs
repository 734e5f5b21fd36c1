//! Real servers as child processes, for tests.
//!
//! - [`RedisServer`], [`PostgresServer`] and [`EtcdCluster`] start the real
//!   binaries on free 127.0.0.1 ports in temporary directories, wait until
//!   they answer, and kill them (SIGKILL) and remove their directories on
//!   drop, also when a test panics.
//! - Every server is a [`ServerProcess`]: [`kill`](ServerProcess::kill),
//!   [`restart`](ServerProcess::restart) (same port, same data),
//!   [`pause`](ServerProcess::pause) and [`resume`](ServerProcess::resume).
//! - [`RedisCluster`] (three primaries, a replica each) and [`RedisSentinel`] (a primary, a
//!   replica, three sentinels) start whole Redis topologies; every node is a
//!   [`RedisServer`] or [`SentinelProcess`] with the same controls.
//! - [`TcpProxy`] sits between a client and a server to delay, stall and cut
//!   traffic, and can be re-pointed at another server (a failover router).
//! - [`PgBouncer`] runs Debian's `pgbouncer` in transaction mode in front of
//!   a PostgreSQL server; [`PostgresServer::start_standby`] starts a streaming
//!   standby, [`PostgresServer::promote`] promotes it.
//! - [`shared_redis`], [`shared_postgres`], [`shared_etcd`] and
//!   [`shared_pgbouncer`] give one server per test process, or the external
//!   server named by `FENCELOCK_REDIS_URL`, `FENCELOCK_POSTGRES_URL`,
//!   `FENCELOCK_ETCD_ENDPOINTS` or `FENCELOCK_PGBOUNCER_URL`;
//!   [`redis_cluster_url_or_start`] and [`redis_sentinel_url_or_start`] honour
//!   `FENCELOCK_REDIS_CLUSTER_URL` and `FENCELOCK_REDIS_SENTINEL_URL`.
//!
//! If the test process dies without unwinding, the kernel kills its servers:
//! they run under `setpriv --pdeathsig KILL`, forked by one long-lived thread
//! (see the `spawner` module). Directories left behind that way are removed
//! by the next test process that uses the harness.
//!
//! The async functions run their blocking work on tokio's blocking pool, so
//! they need a tokio runtime (any flavour); each has a `_blocking` twin that
//! needs none.

mod binaries;
mod certs;
mod error;
mod etcd;
mod http;
mod pgbouncer;
mod ports;
mod postgres;
mod process;
mod proxy;
mod redis;
mod redis_cluster;
mod redis_sentinel;
mod resp;
mod shared;
mod spawner;
mod standby;
mod tempdirs;

pub use certs::TlsFiles;
pub use error::{HarnessError, Result};
pub use etcd::{EtcdCluster, EtcdMember};
pub use pgbouncer::{PgBouncer, PgBouncerOptions};
pub use ports::{free_port, free_ports};
pub use postgres::{PostgresServer, PostgresServerOptions};
pub use process::ServerProcess;
pub use proxy::TcpProxy;
pub use redis::{RedisPersistence, RedisServer, RedisServerOptions, RedisServerTls};
pub use redis_cluster::{ClusterNode, RedisCluster};
pub use redis_sentinel::{RedisSentinel, SENTINEL_MASTER_NAME, SentinelProcess};
pub use shared::{
    ETCD_ENDPOINTS_VAR, POSTGRES_URL_VAR, REDIS_CLUSTER_URL_VAR, REDIS_SENTINEL_URL_VAR,
    REDIS_URL_VAR, Target, etcd_endpoints_or_start, postgres_url_or_start,
    redis_cluster_url_or_start, redis_sentinel_url_or_start, redis_url_or_start, shared_etcd,
    shared_postgres, shared_redis, shared_redis_cluster, shared_redis_sentinel,
};
pub use shared::{PGBOUNCER_URL_VAR, shared_pgbouncer};

/// How often a start is retried with new ports when a port was taken.
const ADDR_IN_USE_RETRIES: u32 = 5;

/// Run blocking harness work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| HarnessError::new(format!("harness task failed: {e}")))?
}

/// Run `start` again while it fails because a port was taken.
fn retry_addr_in_use<T>(mut start: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start() {
            Err(e) if e.is_addr_in_use() && attempt < ADDR_IN_USE_RETRIES => {
                tracing::debug!("retrying after a port collision: {e}");
            }
            other => return other,
        }
    }
}
