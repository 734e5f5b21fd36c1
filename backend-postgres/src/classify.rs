//! The one place where sqlx errors become fencelock errors.
//!
//! The rule: if nothing can have been applied (no connection, the server refused or rolled the
//! statement back), the error is [`Error::Unavailable`] and a retry is safe; if the connection
//! broke after the statement may have reached the server, the outcome is unknown
//! ([`Error::OutcomeUnknown`]); bad configuration is [`Error::InvalidInput`]; everything else
//! is [`Error::Backend`] with the driver error kept as its source.

use std::io;

use fencelock_core::{Error, Operation};

/// The backend name used in errors.
pub(crate) const STORE: &str = "postgres";

/// Maps a driver error from operation `op` to its fencelock classification.
pub(crate) fn classify(op: Operation, err: sqlx::Error) -> Error {
    match &err {
        // Opening a connection applies nothing, whatever broke.
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Database(_)
            if op == Operation::Connect && !is_auth_or_config(&err) =>
        {
            Error::unavailable(STORE, op, err)
        }
        sqlx::Error::Configuration(_) => Error::invalid(
            "postgres configuration",
            format!("{err}; check the connection URL and options"),
        ),
        // No connection was handed out, so nothing was sent.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            Error::unavailable(STORE, op, err)
        }
        sqlx::Error::Io(io) if not_sent(io.kind()) => Error::unavailable(STORE, op, err),
        // The connection broke while a statement may have been in flight.
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            Error::outcome_unknown(STORE, op, err)
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if rolled_back(code) => Error::unavailable(STORE, op, err),
            Some(code) if session_killed(code) => Error::outcome_unknown(STORE, op, err),
            _ => Error::backend(STORE, op, err),
        },
        _ => Error::backend(STORE, op, err),
    }
}

/// Connect failures that retrying cannot fix: bad password, unknown database or role.
fn is_auth_or_config(err: &sqlx::Error) -> bool {
    sqlstate(err).is_some_and(|code| {
        code.starts_with("28") // invalid_authorization_specification, invalid_password
            || code == "3D000" // invalid_catalog_name (no such database)
    })
}

/// I/O failures that happen before a request can leave this process.
fn not_sent(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NotFound
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::AddrInUse
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// SQLSTATEs with which the server reports that it did not run the statement or rolled its
/// transaction back, so retrying is safe.
fn rolled_back(code: &str) -> bool {
    code.starts_with("08") // connection exception (reported by the server: nothing ran)
        || matches!(
            code,
            "40001" // serialization_failure
                | "40P01" // deadlock_detected
                | "53300" // too_many_connections
                | "55P03" // lock_not_available
                | "57014" // query_canceled (statement_timeout)
                | "57P03" // cannot_connect_now (starting up, recovering)
                | "25006" // read_only_sql_transaction (a standby, or default_transaction_read_only)
        )
}

/// SQLSTATEs with which the server ends the whole session. The FATAL may arrive after the
/// statement's commit, before its reply, so the outcome is unknown.
fn session_killed(code: &str) -> bool {
    matches!(
        code,
        "57P01" // admin_shutdown (pg_terminate_backend, fast shutdown)
            | "57P02" // crash_shutdown
    )
}

/// The SQLSTATE of a database error, if `err` is one.
pub(crate) fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::error::Error as _;
    use std::fmt;

    use fencelock_core::ErrorKind;
    use sqlx::error::{DatabaseError, ErrorKind as DbKind};

    use super::*;

    /// A server-reported error with a given SQLSTATE (sqlx's own type cannot be built outside it).
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl fmt::Display for ServerError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "server error {}", self.0)
        }
    }

    impl std::error::Error for ServerError {}

    impl DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> DbKind {
            DbKind::Other
        }
    }

    fn db(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError(code)))
    }

    fn io(kind: io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(io::Error::new(kind, "io"))
    }

    #[test]
    fn classification_table() {
        let cases: Vec<(sqlx::Error, ErrorKind)> = vec![
            // Nothing sent.
            (io(io::ErrorKind::ConnectionRefused), ErrorKind::Unavailable),
            (io(io::ErrorKind::NotFound), ErrorKind::Unavailable),
            (io(io::ErrorKind::AddrNotAvailable), ErrorKind::Unavailable),
            (sqlx::Error::PoolTimedOut, ErrorKind::Unavailable),
            (sqlx::Error::PoolClosed, ErrorKind::Unavailable),
            (sqlx::Error::Tls("handshake".into()), ErrorKind::Unavailable),
            // Sent, then the connection broke: may have been applied.
            (io(io::ErrorKind::UnexpectedEof), ErrorKind::OutcomeUnknown),
            (
                io(io::ErrorKind::ConnectionReset),
                ErrorKind::OutcomeUnknown,
            ),
            (io(io::ErrorKind::BrokenPipe), ErrorKind::OutcomeUnknown),
            (io(io::ErrorKind::TimedOut), ErrorKind::OutcomeUnknown),
            (
                sqlx::Error::Protocol("garbled".into()),
                ErrorKind::OutcomeUnknown,
            ),
            (sqlx::Error::WorkerCrashed, ErrorKind::OutcomeUnknown),
            // The server refused or rolled back: nothing applied.
            (db("57P03"), ErrorKind::Unavailable),
            (db("08006"), ErrorKind::Unavailable),
            (db("40001"), ErrorKind::Unavailable),
            (db("40P01"), ErrorKind::Unavailable),
            (db("53300"), ErrorKind::Unavailable),
            (db("57014"), ErrorKind::Unavailable),
            (db("25006"), ErrorKind::Unavailable),
            // The server ended the session, perhaps right after a commit.
            (db("57P01"), ErrorKind::OutcomeUnknown),
            (db("57P02"), ErrorKind::OutcomeUnknown),
            // Final errors.
            (db("42P01"), ErrorKind::Backend),
            (db("23514"), ErrorKind::Backend),
            (db("28P01"), ErrorKind::Backend),
            (sqlx::Error::RowNotFound, ErrorKind::Backend),
            (
                sqlx::Error::ColumnNotFound("token".into()),
                ErrorKind::Backend,
            ),
            (
                sqlx::Error::Configuration("bad url".into()),
                ErrorKind::InvalidInput,
            ),
        ];
        for (err, kind) in cases {
            let shown = err.to_string();
            let got = classify(Operation::Acquire, err);
            assert_eq!(got.kind(), kind, "{shown} became {got}");
        }
    }

    #[test]
    fn connecting_applies_nothing() {
        let cases: Vec<(sqlx::Error, ErrorKind)> = vec![
            (io(io::ErrorKind::UnexpectedEof), ErrorKind::Unavailable),
            (io(io::ErrorKind::Other), ErrorKind::Unavailable),
            (
                sqlx::Error::Protocol("garbled".into()),
                ErrorKind::Unavailable,
            ),
            (db("57P03"), ErrorKind::Unavailable),
            (db("53300"), ErrorKind::Unavailable),
            (db("28P01"), ErrorKind::Backend),
            (db("3D000"), ErrorKind::Backend),
        ];
        for (err, kind) in cases {
            let shown = err.to_string();
            let got = classify(Operation::Connect, err);
            assert_eq!(got.kind(), kind, "{shown} became {got}");
        }
    }

    #[test]
    fn keeps_the_driver_error_as_source() {
        let err = classify(Operation::Renew, db("57P03"));
        assert!(
            err.to_string()
                .contains("postgres unavailable during renew"),
            "{err}"
        );
        let source = err.source().expect("source kept");
        assert!(source.to_string().contains("57P03"), "{source}");
    }
}
