//! The conformance cases. Each is named after a `# Behavior` bullet of `LeaseStore` and runs
//! against any store through a [`crate::Ctx`].

mod client;
mod fence;
mod grant;
mod input;
mod release;
mod renew;
mod stress;

pub use client::*;
pub use fence::*;
pub use grant::*;
pub use input::*;
pub use release::*;
pub use renew::*;
pub use stress::*;

use fencelock_core::{Error, ErrorKind, Lease, LockName};

use crate::Ctx;

/// Asserts `result` is an error of `kind`, with context.
#[track_caller]
pub(crate) fn assert_kind<T: std::fmt::Debug>(
    result: Result<T, Error>,
    kind: ErrorKind,
    what: &str,
) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{what}: unexpected error {e}"),
        Ok(v) => panic!("{what}: expected a {kind:?} error, got Ok({v:?})"),
    }
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
