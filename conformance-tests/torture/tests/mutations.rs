//! The mutation check as a test (needs `--features mutations`): every planted bug makes the
//! runs chosen to expose it break an invariant, and the store that ends grants early is
//! caught by I6 (a stalled holder's guard still said valid after a rival was granted) and, in
//! a semaphore run, by I7 (more permits valid at once than the limit).
//!
//! `cargo test -p fencelock-torture --features mutations --test mutations`

#![cfg(feature = "mutations")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use fencelock_conformance::history::Invariant;
use fencelock_torture::Mutation;
use fencelock_torture::suite;

const WORKER: &str = env!("CARGO_BIN_EXE_fencelock-torture-worker");

/// The base seed; `FENCELOCK_TORTURE_SEED` overrides it.
fn seed() -> u64 {
    std::env::var("FENCELOCK_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_planted_bug_is_caught() {
    let runs = suite::mutation_runs(seed());
    for mutation in Mutation::ALL {
        assert!(
            runs.iter().any(|r| r.mutation == Some(mutation)),
            "{} has no run in the mutation check",
            mutation.name()
        );
    }
    let outcomes = suite::run_all(&runs, Path::new(WORKER)).await.unwrap();
    let mut missed = Vec::new();
    for o in &outcomes {
        let mutation = o.spec.mutation.expect("a mutation run");
        let broken = o.report.broken();
        if o.report.is_clean() {
            missed.push(format!(
                "{} ({}): every invariant held\n  re-run: {}",
                o.spec.label(),
                mutation.describe(),
                o.spec.rerun_command()
            ));
        }
        // Locks: a stalled holder's probed guard; permits: a paused holder's permit.
        let (exclusion, what) = if o.spec.scenario.semaphore() {
            (
                Invariant::I7,
                "the paused holder's permit must be valid by its deadline while its place was \
                 granted again, more permits valid than the limit",
            )
        } else {
            (
                Invariant::I6,
                "the stalled holder's probed guard must say valid after a rival was granted",
            )
        };
        if mutation == Mutation::EarlyExpiry && !broken.contains(&exclusion) {
            missed.push(format!(
                "{}: {exclusion:?} not broken (broken: {broken:?}); {what}\n  re-run: {}",
                o.spec.label(),
                o.spec.rerun_command()
            ));
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}
