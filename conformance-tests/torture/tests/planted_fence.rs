//! The fence tier catches the planted fence bugs: every case passes on a correct in-memory
//! fence, and for each planted bug (`FenceStrict`: admits only tokens above the mark;
//! `FenceSkip`: admits every token) at least one case fails — the case that names the broken
//! promise among them. Needs `--features mutations` (as the torture's mutation runs do).

#![cfg(feature = "mutations")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fencelock_conformance::{FenceCtx, FenceFixture, fence_cases};
use fencelock_torture::Mutation;
use fencelock_torture::mutations::planted_fence::PlantedFence;

/// The names of the fence cases that fail (panic) against a fence with `bug`, each case run in
/// a task of its own on a fresh fence.
async fn failing_cases(bug: Option<Mutation>) -> Vec<&'static str> {
    let mut failed = Vec::new();
    for case in fence_cases() {
        let cx = Arc::new(FenceCtx::new(FenceFixture::new(PlantedFence::new(bug))));
        match tokio::spawn((case.run)(cx)).await {
            Ok(()) => {}
            Err(e) if e.is_panic() => failed.push(case.name),
            Err(e) => panic!(
                "{}: the case's task ended without finishing: {e}",
                case.name
            ),
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_tier_fails_each_planted_fence_bug_and_passes_without() {
    assert!(fence_cases().len() >= 6, "the tier lost cases");
    assert_eq!(
        failing_cases(None).await,
        Vec::<&str>::new(),
        "the correct planted fence must pass every case"
    );
    for (bug, must_fail) in [
        (Mutation::FenceStrict, "fence_equal_token_admitted"),
        (Mutation::FenceSkip, "fence_lower_token_rejected"),
    ] {
        let failed = failing_cases(Some(bug)).await;
        println!("{} ({}): failed {failed:?}", bug.name(), bug.describe());
        assert!(
            failed.contains(&must_fail),
            "planted bug `{}` ({}) must fail {must_fail}; failed: {failed:?}",
            bug.name(),
            bug.describe()
        );
    }
}
