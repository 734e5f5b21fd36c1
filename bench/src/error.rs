//! One error type for the whole harness: a message with its cause chain flattened in.

use std::fmt;

/// Why a benchmark could not run (a server did not start, a request failed, a peer crashed).
#[derive(Debug)]
pub struct BenchError(String);

impl BenchError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// This error with `context` in front ("starting etcd: …").
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self(format!("{context}: {}", self.0))
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

/// Flattens `error` and its sources into one line, so nothing is lost when it is printed.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

macro_rules! from_error {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for BenchError {
            fn from(error: $ty) -> Self {
                Self(chain(&error))
            }
        }
    )*};
}

from_error!(
    fencelock_core::Error,
    fencelock_redis::redis::RedisError,
    fencelock_postgres::sqlx::Error,
    fencelock_etcd::etcd_client::Error,
    fencelock_conformance::harness::HarnessError,
    std::io::Error,
    serde_json::Error,
    nix::Error,
    tokio::task::JoinError,
);

/// Results of the harness.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
