//! The fence tier against a real PostgreSQL started by the harness (or
//! `FENCELOCK_POSTGRES_URL`), with a dead twin on a port nothing listens on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::FenceFixture;
use fencelock_conformance::harness::free_port;
use fencelock_postgres::sqlx::postgres::PgPoolOptions;
use fencelock_postgres::{PgFence, TableName};

async fn postgres() -> FenceFixture {
    let url = support::shared_url().await;
    // Every case makes its own store and fence on one shared table (cases use their own keys),
    // so the concurrent first cases also race the fence table's migration.
    let store = support::store_on(&url, "fence_tier_leases").await;
    let fence = store
        .fence()
        .await
        .unwrap_or_else(|e| panic!("the fence table: {e}"));
    FenceFixture::new(fence).with_dead(dead())
}

/// A fence whose pool connects lazily to a port nothing listens on, and gives up fast.
fn dead() -> PgFence {
    let port = free_port().expect("a free port");
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .expect("a lazy pool");
    let table = TableName::new("fencelock_test", PgFence::DEFAULT_TABLE).unwrap();
    PgFence::new(pool, table).with_op_timeout(Duration::from_secs(2))
}

fencelock_conformance::fence_suite!(postgres);
