//! The conformance suite against the in-process reference store.

use fencelock_conformance::Fixture;
use fencelock_core::MemoryLeaseStore;

async fn memory() -> Fixture {
    Fixture::new(MemoryLeaseStore::new())
}

fencelock_conformance::conformance_suite!(memory);

async fn memory_fence() -> fencelock_conformance::FenceFixture {
    fencelock_conformance::FenceFixture::new(fencelock_core::FenceGate::new())
}

fencelock_conformance::fence_suite!(memory_fence, in_process);

fencelock_conformance::semaphore_suite!(memory);
