//! The fence tier against a real PostgreSQL started by the harness (or
//! `FENCELOCK_POSTGRES_URL`), with a dead twin on a port nothing listens on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fencelock_conformance::FenceFixture;

async fn postgres() -> FenceFixture {
    let url = support::shared_url().await;
    // Every case makes its own store and fence on one shared table (cases use their own keys),
    // so the concurrent first cases also race the fence table's migration.
    let store = support::store_on(&url, "fence_tier_leases").await;
    let fence = store
        .fence()
        .await
        .unwrap_or_else(|e| panic!("the fence table: {e}"));
    FenceFixture::new(fence).with_dead(support::dead_fence())
}

fencelock_conformance::fence_suite!(postgres);
