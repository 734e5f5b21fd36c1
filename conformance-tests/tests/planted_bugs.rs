//! The suite catches a store that ends grants early: `exclusive_until_local_deadline` fails
//! for [`EarlyExpiry`] over the memory store, and passes for the memory store itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fencelock_conformance::planted::EarlyExpiry;
use fencelock_conformance::{Ctx, Fixture, cases};
use fencelock_core::MemoryLeaseStore;

/// Runs the case on its own task; `Err` holds the panic message of a failed case.
async fn run(fixture: Fixture) -> Result<(), String> {
    let case = tokio::spawn(async move {
        let cx = Ctx::new(fixture);
        cases::exclusive_until_local_deadline(&cx).await;
    });
    match case.await {
        Ok(()) => Ok(()),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            Err(payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default())
        }
        Err(e) => panic!("the case did not finish: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_until_local_deadline_passes_for_the_memory_store() {
    run(Fixture::new(MemoryLeaseStore::new())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_until_local_deadline_fails_for_a_store_that_ends_grants_early() {
    let store = EarlyExpiry::new(Arc::new(MemoryLeaseStore::new()));
    let failure = run(Fixture::new(store))
        .await
        .expect_err("a store ending grants at 3/4 of the reported TTL must fail the case");
    println!("caught: {failure}");
    assert!(
        failure.contains("try_acquire granted") && failure.contains("two holders at once"),
        "the failure names the operation and the consequence: {failure}"
    );
}
