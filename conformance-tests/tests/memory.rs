//! The conformance suite against the in-process reference store.

use fencelock_conformance::Fixture;
use fencelock_core::MemoryLeaseStore;

async fn memory() -> Fixture {
    Fixture::new(MemoryLeaseStore::new())
}

fencelock_conformance::conformance_suite!(memory);
