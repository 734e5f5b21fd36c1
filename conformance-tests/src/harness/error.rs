//! The harness error type.

use std::fmt;

/// Everything the harness can fail with: a message meant for a human reading
/// a failed test, including the server's log tail where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarnessError {
    message: String,
    addr_in_use: bool,
}

/// `Result` with [`HarnessError`].
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

impl HarnessError {
    /// An error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            addr_in_use: false,
        }
    }

    /// A start failure caused by a port already being taken (retried with
    /// other ports where the harness picked them).
    pub(crate) fn addr_in_use(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            addr_in_use: true,
        }
    }

    /// Whether the server failed because its port was already in use.
    pub fn is_addr_in_use(&self) -> bool {
        self.addr_in_use
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefix the message with some context.
    pub(crate) fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HarnessError {}

/// Attach context to an `io::Error` (or anything displayable).
pub(crate) trait ResultExt<T> {
    /// Turn the error into a [`HarnessError`] with `what` in front.
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> ResultExt<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| HarnessError::new(format!("{}: {e}", what())))
    }
}
