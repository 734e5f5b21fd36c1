//! What the backend tests share: servers from the harness, stores on them, admin SQL.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use fencelock_conformance::harness::{PostgresServer, PostgresServerOptions, shared_postgres};
use fencelock_postgres::PgLeaseStore;
use fencelock_postgres::sqlx::PgPool;
use fencelock_postgres::sqlx::postgres::PgPoolOptions;

/// The URL of the PostgreSQL shared by this test process (started by the harness, or
/// `FENCELOCK_POSTGRES_URL`). A missing `postgres` binary fails the test.
pub(crate) async fn shared_url() -> String {
    shared_postgres()
        .await
        .expect("the harness must start postgres (install postgresql-15) or FENCELOCK_POSTGRES_URL must be set")
        .url()
        .to_owned()
}

/// A dedicated server this test may kill, restart or pause.
pub(crate) async fn own_server(options: PostgresServerOptions) -> PostgresServer {
    PostgresServer::start(options)
        .await
        .expect("the harness must start postgres (install postgresql-15)")
}

/// A store on the shared server, on table `table` in schema `fencelock_test`.
pub(crate) async fn store_on(url: &str, table: &str) -> PgLeaseStore {
    PgLeaseStore::builder()
        .with_url(url)
        .with_schema("fencelock_test")
        .with_table(table)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A plain pool for admin statements and downstream tables.
pub(crate) async fn admin_pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .unwrap()
}

/// A fresh random suffix for table and lock names.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}_{:012x}", rand_u64() & 0xffff_ffff_ffff)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// A fence on a port where no server listens: every write must fail, none be accepted (the
/// fence tier's `fence_dead_store_never_accepted`).
pub(crate) fn dead_fence() -> fencelock_postgres::PgFence {
    use fencelock_postgres::{PgFence, TableName};
    let port = fencelock_conformance::harness::free_port().expect("a free port");
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .expect("a lazy pool");
    let table = TableName::new("fencelock_test", PgFence::DEFAULT_TABLE).unwrap();
    PgFence::new(pool, table).with_op_timeout(Duration::from_secs(2))
}
