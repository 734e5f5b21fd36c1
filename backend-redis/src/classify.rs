//! The one place where driver errors become fencelock errors.

use fencelock_core::{Error, Operation};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The backend name used in errors, logs and metrics.
pub(crate) const STORE: &str = "redis";

/// Maps a driver error from `op` to a classified [`Error`], keeping it as the source.
///
/// - The connection could not be opened (refused, no such socket), or the server declined the
///   request before running it (`LOADING`, `READONLY`, `MASTERDOWN`, `TRYAGAIN`,
///   `CLUSTERDOWN`, and a `MOVED`/`ASK` the cluster driver did not follow) →
///   [`Error::Unavailable`]: nothing was applied.
/// - A timeout or a connection that broke while a request was out → [`Error::OutcomeUnknown`]:
///   the script may have run. While connecting ([`Operation::Connect`]) nothing was sent, so
///   every I/O failure there is `Unavailable`.
/// - A rejected URL or client option → [`Error::InvalidInput`].
/// - Everything else (script errors, `WRONGTYPE`, authentication, unexpected replies) →
///   [`Error::Backend`].
pub(crate) fn classify(op: Operation, err: RedisError) -> Error {
    if err.is_connection_refusal() {
        return Error::unavailable(STORE, op, err);
    }
    match err.kind() {
        ErrorKind::InvalidClientConfig => Error::invalid(
            "redis connection",
            format!("{err}; check the URL and options"),
        ),
        ErrorKind::Io if op == Operation::Connect => Error::unavailable(STORE, op, err),
        ErrorKind::Io => Error::outcome_unknown(STORE, op, err),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown,
        ) => Error::unavailable(STORE, op, err),
        // The node did not run the request: the slot is served elsewhere. A cluster connection
        // follows these itself; one reaches us when the slot moved again (a failover) before
        // the driver caught up, or when a single-server URL names a cluster node.
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => Error::unavailable(
            STORE,
            op,
            format!(
                "{err}: the slot is served by another node; for a Redis Cluster connect with redis+cluster://host:port,host:port,…"
            ),
        ),
        _ if err.is_timeout() || err.is_connection_dropped() => {
            Error::outcome_unknown(STORE, op, err)
        }
        _ => Error::backend(STORE, op, err),
    }
}

/// A reply that does not have the shape a script returns: a bug or a foreign value in our keys.
pub(crate) fn unexpected_reply(op: Operation, what: impl std::fmt::Display) -> Error {
    Error::backend(
        STORE,
        op,
        format!(
            "unexpected reply from the {op} script: {what}; is another program writing fencelock keys?"
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::io;

    use fencelock_core::ErrorKind as Kind;

    use super::*;

    fn io_err(kind: io::ErrorKind) -> RedisError {
        RedisError::from(io::Error::from(kind))
    }

    fn server(kind: ServerErrorKind) -> RedisError {
        RedisError::from((ErrorKind::Server(kind), "server said no"))
    }

    #[test]
    fn classification_table() {
        use Operation::{Acquire, Connect, Release, Renew};
        let cases: Vec<(&str, Operation, RedisError, Kind)> = vec![
            (
                "refused",
                Acquire,
                io_err(io::ErrorKind::ConnectionRefused),
                Kind::Unavailable,
            ),
            (
                "no unix socket",
                Renew,
                io_err(io::ErrorKind::NotFound),
                Kind::Unavailable,
            ),
            (
                "connect timeout",
                Connect,
                io_err(io::ErrorKind::TimedOut),
                Kind::Unavailable,
            ),
            (
                "connect reset",
                Connect,
                io_err(io::ErrorKind::ConnectionReset),
                Kind::Unavailable,
            ),
            (
                "response timeout",
                Acquire,
                io_err(io::ErrorKind::TimedOut),
                Kind::OutcomeUnknown,
            ),
            (
                "reset after send",
                Release,
                io_err(io::ErrorKind::ConnectionReset),
                Kind::OutcomeUnknown,
            ),
            (
                "eof after send",
                Renew,
                io_err(io::ErrorKind::UnexpectedEof),
                Kind::OutcomeUnknown,
            ),
            (
                "broken pipe",
                Acquire,
                io_err(io::ErrorKind::BrokenPipe),
                Kind::OutcomeUnknown,
            ),
            (
                "driver gone",
                Acquire,
                RedisError::from((
                    ErrorKind::Io,
                    "Multiplexed connection driver unexpectedly terminated",
                )),
                Kind::OutcomeUnknown,
            ),
            (
                "loading",
                Acquire,
                server(ServerErrorKind::BusyLoading),
                Kind::Unavailable,
            ),
            (
                "replica",
                Acquire,
                server(ServerErrorKind::ReadOnly),
                Kind::Unavailable,
            ),
            (
                "master down",
                Renew,
                server(ServerErrorKind::MasterDown),
                Kind::Unavailable,
            ),
            (
                "try again",
                Renew,
                server(ServerErrorKind::TryAgain),
                Kind::Unavailable,
            ),
            (
                "cluster down",
                Release,
                server(ServerErrorKind::ClusterDown),
                Kind::Unavailable,
            ),
            (
                "script error",
                Acquire,
                server(ServerErrorKind::ResponseError),
                Kind::Backend,
            ),
            (
                "moved",
                Acquire,
                server(ServerErrorKind::Moved),
                Kind::Unavailable,
            ),
            (
                "ask",
                Renew,
                server(ServerErrorKind::Ask),
                Kind::Unavailable,
            ),
            (
                "no permission",
                Acquire,
                server(ServerErrorKind::NoPerm),
                Kind::Backend,
            ),
            (
                "auth",
                Connect,
                RedisError::from((ErrorKind::AuthenticationFailed, "invalid password")),
                Kind::Backend,
            ),
            (
                "bad reply",
                Acquire,
                RedisError::from((ErrorKind::UnexpectedReturnType, "not an array")),
                Kind::Backend,
            ),
            (
                "bad url",
                Connect,
                RedisError::from((ErrorKind::InvalidClientConfig, "invalid scheme")),
                Kind::InvalidInput,
            ),
        ];
        for (what, op, err, kind) in cases {
            let got = classify(op, err);
            assert_eq!(got.kind(), kind, "{what}: {got}");
            assert!(
                got.to_string().contains("redis") || kind == Kind::InvalidInput,
                "{what}: {got}"
            );
        }
    }

    #[test]
    fn keeps_the_driver_error_as_source() {
        use std::error::Error as _;
        let err = classify(Operation::Acquire, server(ServerErrorKind::ResponseError));
        assert!(err.source().is_some());
    }
}
