//! Every case the suite macros stamp out is a `# Behavior` bullet of the same name in the core
//! contract (`LeaseStore`, `Locker`, `LockGuard`, `Fence`), and the READMEs count the cases
//! truly. A case added without its bullet fails here.
//!
//! Reads the core sources from the workspace, so this file is left out of the published
//! package (see `Cargo.toml`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

/// The core files whose `# Behavior` bullets name the cases.
const CONTRACT: [(&str, &str); 6] = [
    (
        "lock-core/src/store.rs",
        include_str!("../../lock-core/src/store.rs"),
    ),
    (
        "lock-core/src/locker.rs",
        include_str!("../../lock-core/src/locker.rs"),
    ),
    (
        "lock-core/src/guard.rs",
        include_str!("../../lock-core/src/guard.rs"),
    ),
    (
        "lock-core/src/election.rs",
        include_str!("../../lock-core/src/election.rs"),
    ),
    (
        "lock-core/src/semaphore.rs",
        include_str!("../../lock-core/src/semaphore.rs"),
    ),
    (
        "lock-core/src/fence.rs",
        include_str!("../../lock-core/src/fence.rs"),
    ),
];

const LOCK_CASES: &[&str] = fencelock_conformance::for_each_case!(__case_names!(()));
const FENCE_CASES: &[&str] = fencelock_conformance::for_each_fence_case!(__case_names!(()));
const SEMAPHORE_CASES: &[&str] = fencelock_conformance::for_each_semaphore_case!(__case_names!(()));
/// Stamped out by `fence_suite!` apart from the list (not for in-process fences).
const FENCE_STORE_CASES: &[&str] = &["fence_dead_store_never_accepted"];

/// The names of the bullets under `# Behavior` headings in `source`: a bullet is
/// ``/// - `name`: …`` or ``/// - `a`, `b`: …`` (several cases for one promise).
fn bullets(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_behavior = false;
    for line in source.lines().map(str::trim_start) {
        let Some(doc) = line.strip_prefix("///") else {
            in_behavior = false;
            continue;
        };
        let doc = doc.trim_start();
        if doc.starts_with('#') {
            in_behavior = doc == "# Behavior";
            continue;
        }
        let Some(bullet) = doc.strip_prefix("- `").filter(|_| in_behavior) else {
            continue;
        };
        let Some(end) = bullet.find("`:") else {
            continue;
        };
        // "a`, `b" → a, b
        names.extend(
            bullet[..end]
                .split('`')
                .step_by(2)
                .map(|n| n.trim_matches([',', ' ']).to_owned())
                .filter(|n| !n.is_empty()),
        );
    }
    names
}

fn all_bullets() -> BTreeSet<String> {
    CONTRACT.iter().flat_map(|(_, src)| bullets(src)).collect()
}

#[test]
fn the_bullet_parser_reads_single_and_shared_bullets() {
    let src = "
    /// Tries.
    ///
    /// # Behavior
    /// - `one`: a promise
    ///   continued.
    /// - `two`, `three`: shared.
    ///
    /// # Errors
    /// - `not_a_case`: errors are not bullets.
    fn f() {}
    /// - `outside`: no heading.
    ";
    let found: Vec<String> = bullets(src).into_iter().collect();
    assert_eq!(found, ["one", "three", "two"]);
}

#[test]
fn every_case_is_a_documented_behavior_bullet() {
    let bullets = all_bullets();
    let missing: Vec<&str> = LOCK_CASES
        .iter()
        .chain(FENCE_CASES)
        .chain(SEMAPHORE_CASES)
        .chain(FENCE_STORE_CASES)
        .copied()
        .filter(|case| !bullets.contains(*case))
        .collect();
    let files: Vec<&str> = CONTRACT.iter().map(|(path, _)| *path).collect();
    assert!(
        missing.is_empty(),
        "cases without a `# Behavior` bullet of the same name in {files:?}: {missing:?}; \
         document the promise each one tests on the method it tests"
    );
}

#[test]
fn every_bullet_is_a_case() {
    let cases: BTreeSet<&str> = LOCK_CASES
        .iter()
        .chain(FENCE_CASES)
        .chain(SEMAPHORE_CASES)
        .chain(FENCE_STORE_CASES)
        .copied()
        .collect();
    let untested: Vec<String> = all_bullets()
        .into_iter()
        .filter(|bullet| !cases.contains(bullet.as_str()))
        .collect();
    assert!(
        untested.is_empty(),
        "`# Behavior` bullets without a conformance case of the same name: {untested:?}; \
         a promise without a case is unfinished"
    );
}

#[test]
fn the_readmes_count_the_cases_truly() {
    let phrase = format!("{} cases", LOCK_CASES.len());
    for (path, text) in [
        ("conformance-tests/README.md", include_str!("../README.md")),
        ("README.md", include_str!("../../README.md")),
    ] {
        assert!(
            text.contains(&phrase),
            "{path} must say \"{phrase}\" (the number of cases conformance_suite! stamps out)"
        );
    }
}
