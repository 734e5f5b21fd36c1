//! The one place where sqlx errors become fencelock errors.
//!
//! The rule: if nothing can have been applied (no connection, the server refused or rolled the
//! statement back), the error is [`Error::Unavailable`] and a retry is safe; if the connection
//! broke after the statement may have reached the server, the outcome is unknown
//! ([`Error::OutcomeUnknown`]); bad configuration is [`Error::InvalidInput`]; everything else
//! is [`Error::Backend`] with the driver error kept as its source.
//!
//! A connection pooler between the store and PostgreSQL answers with errors of its own
//! (pgbouncer reports all of them as SQLSTATE `08P01`, which PostgreSQL uses for protocol
//! violations) and causes errors PostgreSQL reports (a prepared statement that already exists,
//! or does not). Those are recognised first, by [`pooler`], and say what to set.

use std::fmt;
use std::io;

use fencelock_core::{Error, Operation};

/// The backend name used in errors.
pub(crate) const STORE: &str = "postgres";

/// Maps a driver error from operation `op` to its fencelock classification.
pub(crate) fn classify(op: Operation, err: sqlx::Error) -> Error {
    let err = match pooler(op, err) {
        Ok(classified) => return classified,
        Err(err) => err,
    };
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

/// What a pooler's refusal is, and what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Configuration the pooler rejects: `InvalidInput`.
    Config(&'static str),
    /// The pooler did not run the statement: `Unavailable`.
    NotRun(&'static str),
    /// The pooler lost the server connection while the statement ran: `OutcomeUnknown`.
    Broke(&'static str),
    /// A statement collided with server-side state another client left: `Backend`.
    Collision(&'static str),
}

const STARTUP_PARAMETER: &str = "the pooler refuses a startup parameter this client sends; list it \
     in ignore_startup_parameters in pgbouncer.ini (e.g. `ignore_startup_parameters = \
     extra_float_digits`, which sqlx sends unless told not to) and reload pgbouncer";
const NO_SUCH_DATABASE: &str = "the pooler has no entry for this database; fix the database \
     name in the URL or add it to [databases] in pgbouncer.ini";
const PREPARED: &str = "the pooler hands this client server connections that other clients \
     used, so named prepared statements collide or vanish; use the store's default inline \
     statements (with_prepared_statements(false)), or pgbouncer 1.21+ with \
     max_prepared_statements above zero, or session pooling. For an application pool given to \
     from_pool, set statement_cache_capacity(0) and use the default";
const CLIENT_LIMIT: &str = "the pooler accepts no more client connections; raise max_client_conn \
     in pgbouncer.ini or lower the store's max_connections";
const WAIT_TIMEOUT: &str = "the statement waited query_wait_timeout for one of the pooler's \
     server connections and was not run; raise default_pool_size in pgbouncer.ini, or run \
     fewer clients";
const SERVER_DOWN: &str = "the pooler cannot reach PostgreSQL; check that the server behind the \
     pooler is up and that pgbouncer.ini points at it";
const SERVER_LOST: &str = "the pooler lost its server connection while the statement ran";
const STRAY_NOTIFICATION: &str = "the statement ran on a pooled server connection that a LISTEN \
     was left on (a LISTEN sent through a transaction-mode pooler stays on the server connection \
     and hands notifications to whoever uses it next); point listen_url straight at PostgreSQL, \
     or turn push wake-ups off";

/// Recognises a pooler's refusal (or a collision a pooler caused); gives the error back if it
/// is none.
fn pooler(op: Operation, err: sqlx::Error) -> Result<Error, sqlx::Error> {
    let Some(refusal) = refusal(&err) else {
        return Err(err);
    };
    Ok(match refusal {
        Refusal::Config(advice) => {
            Error::invalid("postgres pooler configuration", format!("{err}; {advice}"))
        }
        Refusal::NotRun(advice) => Error::unavailable(STORE, op, Advised { err, advice }),
        Refusal::Broke(advice) => Error::outcome_unknown(STORE, op, Advised { err, advice }),
        Refusal::Collision(advice) => Error::backend(STORE, op, Advised { err, advice }),
    })
}

fn refusal(err: &sqlx::Error) -> Option<Refusal> {
    if is_stray_notification(err) {
        // It arrives after the statement's reply began: it may have committed.
        return Some(Refusal::Broke(STRAY_NOTIFICATION));
    }
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    let message = db.message();
    match db.code().as_deref()? {
        // duplicate_prepared_statement, invalid_sql_statement_name (a statement prepared on
        // another server connection)
        "42P05" => Some(Refusal::Collision(PREPARED)),
        "26000" if message.contains("prepared statement") => Some(Refusal::Collision(PREPARED)),
        // pgbouncer's own errors (PostgreSQL's protocol violations share the code, and fall
        // through to the usual rule).
        "08P01" => {
            let has = |text: &str| message.contains(text);
            if has("unsupported startup parameter") {
                Some(Refusal::Config(STARTUP_PARAMETER))
            } else if has("no such database") {
                Some(Refusal::Config(NO_SUCH_DATABASE))
            } else if has("max_client_conn") {
                Some(Refusal::NotRun(CLIENT_LIMIT))
            } else if has("query_wait_timeout") {
                Some(Refusal::NotRun(WAIT_TIMEOUT))
            } else if has("server_login_retry")
                || has("cannot connect to server")
                || has("server down")
            {
                Some(Refusal::NotRun(SERVER_DOWN))
            } else if has("server conn crashed") || has("query timeout") || has("query_timeout") {
                Some(Refusal::Broke(SERVER_LOST))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Whether `err` is sqlx meeting a notification on a connection that does not LISTEN.
pub(crate) fn is_stray_notification(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Protocol(message) if message.contains("NotificationResponse"))
}

/// A driver error with a sentence saying what to do about it.
#[derive(Debug)]
struct Advised {
    err: sqlx::Error,
    advice: &'static str,
}

impl fmt::Display for Advised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.err, self.advice)
    }
}

impl std::error::Error for Advised {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.err)
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

    /// A server-reported error with a given SQLSTATE and message (sqlx's own type cannot be
    /// built outside it).
    #[derive(Debug)]
    struct ServerError(String, String);

    impl fmt::Display for ServerError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "server error {}: {}", self.0, self.1)
        }
    }

    impl std::error::Error for ServerError {}

    impl DatabaseError for ServerError {
        fn message(&self) -> &str {
            &self.1
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(&self.0))
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
        said(code, "server error")
    }

    fn said(code: &str, message: &str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError(code.to_owned(), message.to_owned())))
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

    /// pgbouncer 1.18's refusals as it words them, and the collisions a transaction-mode
    /// pooler causes: what each is, and a word of the advice it must carry. None may send the
    /// user to check that the server is up, except the one where the server is indeed down.
    #[test]
    fn pooler_refusals_say_what_to_set() {
        let cases: &[(&str, &str, ErrorKind, &str)] = &[
            (
                "08P01",
                "unsupported startup parameter: extra_float_digits",
                ErrorKind::InvalidInput,
                "ignore_startup_parameters = extra_float_digits",
            ),
            (
                "08P01",
                "unsupported startup parameter: search_path=x",
                ErrorKind::InvalidInput,
                "ignore_startup_parameters",
            ),
            (
                "08P01",
                "no such database: app",
                ErrorKind::InvalidInput,
                "[databases]",
            ),
            (
                "42P05",
                "prepared statement \"sqlx_s_1\" already exists",
                ErrorKind::Backend,
                "with_prepared_statements(false)",
            ),
            (
                "26000",
                "prepared statement \"sqlx_s_3\" does not exist",
                ErrorKind::Backend,
                "max_prepared_statements",
            ),
            (
                "26000",
                "unnamed prepared statement does not exist",
                ErrorKind::Backend,
                "server connections that other clients",
            ),
            (
                "08P01",
                "no more connections allowed (max_client_conn)",
                ErrorKind::Unavailable,
                "raise max_client_conn",
            ),
            (
                "08P01",
                "query_wait_timeout",
                ErrorKind::Unavailable,
                "raise default_pool_size",
            ),
            (
                "08P01",
                "server conn crashed?",
                ErrorKind::OutcomeUnknown,
                "lost its server connection",
            ),
            (
                "08P01",
                "query_timeout",
                ErrorKind::OutcomeUnknown,
                "lost its server connection",
            ),
            (
                "08P01",
                "query timeout",
                ErrorKind::OutcomeUnknown,
                "lost its server connection",
            ),
            (
                "08P01",
                "server login has been failing, try again later (server_login_retry)",
                ErrorKind::Unavailable,
                "check that the server behind the pooler is up",
            ),
            (
                "08P01",
                "client_login_timeout (server down)",
                ErrorKind::Unavailable,
                "behind the pooler",
            ),
        ];
        for op in [Operation::Connect, Operation::Setup, Operation::Acquire] {
            for &(code, message, kind, advice) in cases {
                let got = classify(op, said(code, message));
                let text = got.to_string();
                assert_eq!(got.kind(), kind, "{op}: {code} {message} became {text}");
                assert!(
                    text.contains(advice),
                    "{op}: {code} {message} became {text}"
                );
                if !advice.contains("behind the pooler") {
                    assert!(!text.contains("server is up"), "{op}: {text}");
                }
            }
        }
        let stray = classify(
            Operation::Release,
            sqlx::Error::Protocol(
                "execute: unexpected message: NotificationResponse (sqlx_postgres::connection::executor:366)"
                    .into(),
            ),
        );
        assert_eq!(stray.kind(), ErrorKind::OutcomeUnknown, "{stray}");
        assert!(stray.to_string().contains("listen_url"), "{stray}");
        // PostgreSQL's own protocol violations keep the usual rule: nothing ran.
        assert_eq!(
            classify(
                Operation::Acquire,
                said("08P01", "invalid frontend message type 0")
            )
            .kind(),
            ErrorKind::Unavailable
        );
        // Another 26000 is no pooler's doing.
        assert_eq!(
            classify(Operation::Acquire, said("26000", "something else")).kind(),
            ErrorKind::Backend
        );
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
