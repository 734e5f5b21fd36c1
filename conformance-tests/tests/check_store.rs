//! `history::check_store` over a caller's store: the memory store holds I1–I6 through stalls
//! (and a fault of the caller's), and a store that ends grants early is caught (I6).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fencelock_conformance::history::{CheckOptions, Invariant, check_store};
use fencelock_conformance::planted::EarlyExpiry;
use fencelock_core::{LeaseStore, LockName, MemoryLeaseStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_holds_every_invariant_through_stalls() {
    let store = Arc::new(MemoryLeaseStore::new());
    let report = check_store(store, CheckOptions::new()).await;
    println!("{report:?}");
    assert!(report.is_clean(), "{:#?}", report.violations);
    assert_eq!(report.faults_injected, 3, "three stalls");
    assert!(
        report.stale_attempted > 0,
        "the stalled holders' late writes reached the fence"
    );
    assert_eq!(report.overlapping_validity, 0);
    assert!(
        report.writes_accepted > 0 && report.tokens_issued > 3,
        "the workers made progress: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_fault_of_the_callers_runs_after_each_stall() {
    let store = MemoryLeaseStore::new();
    let name = LockName::new("fl-check/broken-by-an-operator").unwrap();
    let faults = Arc::new(AtomicU32::new(0));
    // An operator breaks the current grant: its holder's guard may still say valid while the
    // next holder is granted, so I6 is off (fencing protects that case, and I1 checks it).
    let options = CheckOptions::new()
        .with_name(name.clone())
        .with_server_fault({
            let (store, faults) = (store.clone(), Arc::clone(&faults));
            move || {
                let (store, name, faults) = (store.clone(), name.clone(), Arc::clone(&faults));
                async move {
                    faults.fetch_add(1, Ordering::SeqCst);
                    store.force_release(&name).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .server_fault_loses_grants();
    let report = check_store(Arc::new(store), options).await;
    println!("{report:?}");
    assert!(report.is_clean(), "{:#?}", report.violations);
    assert_eq!(faults.load(Ordering::SeqCst), 3, "once after each stall");
    assert_eq!(
        report.faults_injected, 6,
        "three stalls, three server faults"
    );
    assert_eq!(report.reacquire.len(), 6, "I5 measured after every fault");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_ends_grants_early_breaks_i6() {
    let store = EarlyExpiry::new(Arc::new(MemoryLeaseStore::new()));
    let report = check_store(Arc::new(store), CheckOptions::new()).await;
    println!("{:#?}", report.violations);
    assert!(
        report.broken().contains(&Invariant::I6),
        "two guards valid at once must be reported: {:#?}",
        report.violations
    );
    assert!(report.overlapping_validity > 0);
}
