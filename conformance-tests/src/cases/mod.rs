//! The conformance cases. Each is named after a `# Behavior` bullet of `LeaseStore` and runs
//! against any store through a [`crate::Ctx`].

mod client;
mod grant;
mod input;
mod release;
mod renew;
mod stress;

pub use client::*;
pub use grant::*;
pub use input::*;
pub use release::*;
pub use renew::*;
pub use stress::*;

use fencelock_core::{Error, ErrorKind};

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
