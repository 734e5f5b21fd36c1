//! The shared suites against the example backend, exactly as a backend crate of its own would
//! run them: `fencelock-conformance` as a dev-dependency, no `tokio` needed for the macros.

use fencelock_conformance::{FenceFixture, Fixture};
use fencelock_example_table_store::server::TableServer;
use fencelock_example_table_store::{TableFence, TableStore};

/// A fresh server per case (a real backend would share one server; see the guide).
async fn store() -> Fixture {
    let server = TableServer::new();
    Fixture::new(TableStore::connect(&server)).keep_alive(server)
}

fencelock_conformance::conformance_suite!(store);

/// A fence over a running server, and its twin over a stopped one.
async fn fence() -> FenceFixture {
    let (server, stopped) = (TableServer::new(), TableServer::new());
    stopped.stop();
    FenceFixture::new(TableFence::connect(&server)).with_dead(TableFence::connect(&stopped))
}

fencelock_conformance::fence_suite!(fence);
