//! The whole conformance suite, and the semaphore cases, against a real PostgreSQL started by
//! the harness.

mod support;

use fencelock_conformance::Fixture;

async fn postgres() -> Fixture {
    let url = support::shared_url().await;
    // Every case connects its own store (pool + listener) to one shared table: cases use random
    // name prefixes, and the concurrent first connects exercise the migration lock too.
    Fixture::new(support::store_on(&url, "conformance_leases").await)
}

fencelock_conformance::conformance_suite!(postgres);

// Semaphores: permits in the tables beside `conformance_leases`, on the same stores.
fencelock_conformance::semaphore_suite!(postgres);
