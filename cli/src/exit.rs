//! Exit statuses, and the one-line failure every command reports on stderr.

use std::fmt;
use std::process::ExitCode;

use fencelock::{Error, ErrorKind};

/// Exit statuses of `fencelock` itself (besides the program's own, which `run` passes through).
pub(crate) mod status {
    /// `check` found settings that weaken the lock's guarantees; `release` was declined.
    pub(crate) const WARNINGS_OR_DECLINED: u8 = 1;
    /// Bad usage: an unknown option, a bad duration, name or store URL, a missing store.
    pub(crate) const USAGE: u8 = 64;
    /// The store could not be reached or used (refused, timed out, failed).
    pub(crate) const UNAVAILABLE: u8 = 69;
    /// Something that should not happen (e.g. the store handed out a lower token).
    pub(crate) const INTERNAL: u8 = 70;
    /// `check`: the store answered, but is set up so that locks cannot work safely (a `FAIL`
    /// finding: a read-only replica, no leader, no majority, out of space). `EX_CONFIG`.
    pub(crate) const UNSAFE_FOR_LOCKS: u8 = 78;
    /// The lock stayed held by someone else for all of `--wait` (or at once with `--no-wait`).
    pub(crate) const BUSY: u8 = 75;
    /// The lease was lost while the program ran; the program was stopped.
    pub(crate) const LEASE_LOST: u8 = 79;
    /// The program was found but could not be executed.
    pub(crate) const CANNOT_EXECUTE: u8 = 126;
    /// The program was not found.
    pub(crate) const NOT_FOUND: u8 = 127;
    /// Added to a signal number when the program (or `fencelock` while waiting) was killed by it.
    pub(crate) const SIGNAL_BASE: u8 = 128;
}

/// A failure of a command: one line for stderr and the exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    pub(crate) fn new(status: u8, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(status::USAGE, message)
    }

    pub(crate) fn status(&self) -> u8 {
        self.status
    }

    /// Prints `fencelock: <message>` on stderr and returns the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        eprintln!("fencelock: {self}");
        ExitCode::from(self.status)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the driver put in its message.
        let one_line = self
            .message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        f.write_str(&one_line)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::new(status_of(&error), error.to_string())
    }
}

/// The exit status for a library error.
pub(crate) fn status_of(error: &Error) -> u8 {
    match error.kind() {
        ErrorKind::InvalidInput => status::USAGE,
        ErrorKind::Timeout => status::BUSY,
        ErrorKind::LeaseLost | ErrorKind::LostDuringWork => status::LEASE_LOST,
        ErrorKind::TokenRegression | ErrorKind::StaleToken => status::INTERNAL,
        _ => status::UNAVAILABLE,
    }
}

/// Reports a command-line parse error: help and version go to stdout with status 0, anything
/// else is one line on stderr with [`status::USAGE`].
pub(crate) fn clap_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind as Kind;
    match error.kind() {
        Kind::DisplayHelp | Kind::DisplayVersion => {
            // Printing help can only fail on a closed stdout; nothing useful to add then.
            let _ = error.print();
            ExitCode::SUCCESS
        }
        Kind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(status::USAGE)
        }
        _ => {
            // clap's first paragraph, on one line ("required arguments were not provided:
            // <PROGRAM>").
            let rendered = error.render().to_string();
            let paragraph: Vec<&str> = rendered
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let joined = paragraph.join(" ");
            let first = joined.trim_start_matches("error: ");
            Failure::usage(format!("{first} (see `fencelock --help`)")).report()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencelock::{LockName, Operation};
    use std::time::Duration;

    #[test]
    fn library_errors_map_to_documented_statuses() {
        let io = || std::io::Error::other("refused");
        let name = LockName::new("n").unwrap();
        for (error, expected) in [
            (Error::invalid("ttl", "zero"), status::USAGE),
            (
                Error::unavailable("redis", Operation::Connect, io()),
                status::UNAVAILABLE,
            ),
            (
                Error::outcome_unknown("redis", Operation::Acquire, io()),
                status::UNAVAILABLE,
            ),
            (
                Error::backend("postgres", Operation::Inspect, io()),
                status::UNAVAILABLE,
            ),
            (
                Error::Timeout {
                    name,
                    waited: Duration::from_secs(1),
                },
                status::BUSY,
            ),
        ] {
            assert_eq!(Failure::from(error).status(), expected);
        }
    }

    #[test]
    fn messages_are_one_line() {
        let failure = Failure::new(status::UNAVAILABLE, "first\nsecond\n  third");
        assert_eq!(failure.to_string(), "first second third");
    }
}
