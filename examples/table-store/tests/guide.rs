//! The guide quotes the store and the fence word for word (after their module docs), so the
//! code a reader copies is the code that passes the suites here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

const GUIDE: &str = include_str!("../../../docs/WRITING_A_BACKEND.md");

/// `source` without its leading `//!` module docs.
fn body(source: &str) -> &str {
    let start = source
        .lines()
        .take_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| l.len() + 1)
        .sum::<usize>();
    &source[start..]
}

#[test]
fn the_guide_quotes_the_store_and_the_fence() {
    for (path, source) in [
        ("src/store.rs", include_str!("../src/store.rs")),
        ("src/fence.rs", include_str!("../src/fence.rs")),
    ] {
        let quoted = format!("```rust\n{}```", body(source));
        assert!(
            GUIDE.contains(&quoted),
            "docs/WRITING_A_BACKEND.md must quote {path} (after its module docs) in a ```rust \
             block, word for word; copy it again"
        );
    }
}
