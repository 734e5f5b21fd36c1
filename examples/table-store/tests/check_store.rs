//! Fault injection for the example backend: contending workers, holders whose store calls
//! stall past the TTL, and the server stopped for a moment after each stall; I1–I6 must hold.
//! The same check catches the planted `EarlyExpiry` bug wrapped around this store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use fencelock_conformance::history::{CheckOptions, Invariant, check_store};
use fencelock_conformance::planted::EarlyExpiry;
use fencelock_example_table_store::TableStore;
use fencelock_example_table_store::server::TableServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_every_invariant_through_stalls_and_server_outages() {
    let server = TableServer::new();
    let options = CheckOptions::new().with_server_fault({
        let server = server.clone();
        move || {
            let server = server.clone();
            // Down for a third of the TTL: renewals fail (Unavailable) and are retried while
            // the leases are still locally valid. The tables survive (durable storage).
            async move {
                server.stop();
                tokio::time::sleep(Duration::from_millis(100)).await;
                server.start();
            }
        }
    });
    let report = check_store(Arc::new(TableStore::connect(&server)), options).await;
    println!("{report:?}");
    assert!(report.is_clean(), "{:#?}", report.violations);
    assert_eq!(report.faults_injected, 6, "three stalls, three outages");
    assert!(
        report.stale_attempted > 0,
        "the stalled holders' late writes were made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_the_planted_early_expiry() {
    let store = TableStore::connect(&TableServer::new());
    let report = check_store(
        Arc::new(EarlyExpiry::new(Arc::new(store))),
        CheckOptions::new(),
    )
    .await;
    assert!(
        report.broken().contains(&Invariant::I6),
        "{:#?}",
        report.violations
    );
}
