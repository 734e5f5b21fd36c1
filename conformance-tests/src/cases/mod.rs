//! The conformance cases. Each is named after a `# Behavior` bullet of `LeaseStore` and runs
//! against any store through a [`crate::Ctx`].

mod client;
mod diagnose;
mod election;
mod fence;
mod grant;
mod input;
mod label;
mod release;
mod renew;
mod semaphore;
mod stress;

pub use client::*;
pub use diagnose::*;
pub use election::*;
pub use fence::*;
pub use grant::*;
pub use input::*;
pub use label::*;
pub use release::*;
pub use renew::*;
pub use semaphore::*;
pub use stress::*;

use fencelock_core::{Error, ErrorKind, FencingToken, Lease, LockName};

use crate::Ctx;

// Every failure says which store operation was at fault and prints the values involved:
// the helpers below do so for the checks that many cases share.

/// Asserts `result` is an error of `kind`; `what` names the operation (`"renew of the expired
/// lease"`).
#[track_caller]
pub(crate) fn assert_kind<T: std::fmt::Debug>(
    result: Result<T, Error>,
    kind: ErrorKind,
    what: &str,
) {
    match result {
        Err(e) => assert_eq!(
            e.kind(),
            kind,
            "{what}: expected a {kind:?} error, got {:?}: {e}",
            e.kind()
        ),
        Ok(v) => panic!("{what}: expected a {kind:?} error, got Ok({v:?})"),
    }
}

/// The token of `name`'s current holder as `inspect` (settled) reports it; `when` says at
/// which step.
pub(crate) async fn inspect_token(cx: &Ctx, name: &LockName, when: &str) -> Option<FencingToken> {
    cx.inspect_as(name, &format!("inspect `{name}` {when}"))
        .await
        .map(|i| i.token)
}

/// Asserts that `inspect` shows the grant with token `expected` holding `name` (`None`: free).
pub(crate) async fn expect_holder(
    cx: &Ctx,
    name: &LockName,
    expected: Option<FencingToken>,
    when: &str,
) {
    let shown = inspect_token(cx, name, when).await;
    assert!(
        shown == expected,
        "inspect `{name}` {when}: shows {} as the holder, expected {}",
        holder(shown),
        holder(expected)
    );
}

fn holder(token: Option<FencingToken>) -> String {
    token.map_or_else(|| "nobody".to_owned(), |t| format!("token {t}"))
}

/// Asserts that `try_acquire` (settled) of `name` is refused (`Ok(None)`) while the grant with
/// token `held` holds it.
pub(crate) async fn expect_refused(cx: &Ctx, name: &LockName, held: FencingToken, when: &str) {
    let what = format!("try_acquire on `{name}` {when}");
    if let Some(other) = cx.try_acquire_as(name, cx.long_ttl(), &what).await {
        panic!(
            "{what} granted token {} while token {held} holds it: two holders at once",
            other.token()
        );
    }
}

/// Releases `lease` (settled), which must still hold; `when` says at which step.
pub(crate) async fn release(cx: &Ctx, lease: &Lease, when: &str) {
    let what = format!(
        "release of `{}` (token {}) {when}",
        lease.name(),
        lease.token()
    );
    cx.release_as(lease, &what).await;
}

/// Asserts that the grant `later` got a token above the earlier one's; `what` names the
/// operation that granted it.
#[track_caller]
pub(crate) fn assert_rises(later: FencingToken, earlier: FencingToken, what: &str) {
    assert!(
        later > earlier,
        "{what}: token {later} must exceed the earlier grant's {earlier}"
    );
}

/// `suffix` granted with the short TTL, left to expire, then granted to a new holder with the
/// long TTL: returns the name, the expired grant and the newer one.
pub(crate) async fn expired_then_taken_over(cx: &Ctx, suffix: &str) -> (LockName, Lease, Lease) {
    let name = cx.name(suffix);
    let old = cx.grant(&name, cx.short_ttl()).await;
    tokio::time::sleep(cx.past_short_ttl()).await;
    let new = cx.grant(&name, cx.long_ttl()).await;
    (name, old, new)
}
