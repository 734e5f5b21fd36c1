//! Whether a transaction-mode pooler sits between the store and PostgreSQL, and what that means
//! for its statements and its LISTEN connection (two findings of `diagnose()`).
//!
//! # How it is detected
//!
//! Two client connections are opened at once and each asks `pg_backend_pid()`, the process of
//! the server session that runs its statement: first one, then the other, then the first again.
//! Without a pooler (or through a session-mode pool, which gives each client one server session
//! for its lifetime) a connection keeps its server process, and two open connections never
//! share one. A transaction-mode pooler lends a server connection per transaction: the second
//! client is handed the server connection the first just gave back (pgbouncer reuses the most
//! recently released one, its default `server_round_robin = 0`), or the first client comes
//! back to another one. Either shows in the pids.
//!
//! Why this and not something else: it asks PostgreSQL itself, with statements every pooler
//! forwards, so it works on pgbouncer 1.18 (whose console `SHOW`s are not reachable from a
//! client of a database) and on other poolers alike; and it tells the pooling *mode*, which is
//! what matters (a session-mode pool is as safe as a direct connection). Comparing
//! `inet_server_port()` with the URL's port cannot tell a pooler from a port mapping or a TCP
//! proxy, nor the pool mode; `application_name` is passed through by pgbouncer. A pooler busy
//! with other clients can hand out connections so that one round shows nothing, so the probe
//! repeats ([`ROUNDS`]); it can still miss under heavy load, never the other way round: a
//! direct connection never shows pooling.

use fencelock_core::Finding;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

/// How many rounds the probe runs before it concludes that connections keep their session.
const ROUNDS: usize = 10;

/// How the server sessions behind a URL are handed to its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooling {
    /// Each connection keeps one server session (direct, or a session-mode pool).
    Session,
    /// Connections are lent a server session per transaction (or statement).
    Transaction,
}

/// How the LISTEN connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listen {
    /// Push wake-ups are off: waiters poll.
    Off,
    /// The listener found itself deaf and stopped for good.
    Deaf,
    /// What the LISTEN URL's connections get (the store's own URL unless `listen_url` is set).
    Probed(Pooling),
    /// The LISTEN URL could not be probed (the error, said for a user).
    Unreachable(String),
}

/// Probes the connections `options` opens (see the module docs).
///
/// # Errors
/// The driver's error, from connecting or from a statement.
pub(crate) async fn probe(options: &PgConnectOptions) -> Result<Pooling, sqlx::Error> {
    let mut first = PgConnection::connect_with(options).await?;
    let mut second = PgConnection::connect_with(options).await?;
    let found = rounds(&mut first, &mut second).await;
    // A failed goodbye changes nothing that was learned.
    let _ = first.close().await;
    let _ = second.close().await;
    found
}

async fn rounds(
    first: &mut PgConnection,
    second: &mut PgConnection,
) -> Result<Pooling, sqlx::Error> {
    for _ in 0..ROUNDS {
        let before = backend_pid(first).await?;
        let other = backend_pid(second).await?;
        let again = backend_pid(first).await?;
        if shows_transaction_pooling(before, other, again) {
            return Ok(Pooling::Transaction);
        }
    }
    Ok(Pooling::Session)
}

/// One simple-protocol message: nothing named is left behind, so it is safe through any pooler.
async fn backend_pid(connection: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::raw_sql("SELECT pg_backend_pid()")
        .fetch_one(connection)
        .await?
        .try_get(0)
}

/// The pids of one round: the first connection's, the second's, the first's again. Two open
/// connections on one server process, or one connection on two, happen only through a pooler
/// that lends sessions per transaction.
fn shows_transaction_pooling(before: i32, other: i32, again: i32) -> bool {
    other == before || again != before
}

/// What the store's pool goes through means for its statements.
pub(crate) fn statements_finding(pooling: Pooling, prepared_statements: bool) -> Finding {
    match (pooling, prepared_statements) {
        (Pooling::Session, false) => Finding::ok(
            "pooler",
            "none seen",
            "each connection keeps its own server session (direct, or a session-mode pool). The store's default inline statements work anywhere; with_prepared_statements(true) would save the server planning each one",
        ),
        (Pooling::Session, true) => Finding::ok(
            "pooler",
            "none seen",
            "each connection keeps its own server session (direct, or a session-mode pool), so named prepared statements are safe",
        ),
        (Pooling::Transaction, false) => Finding::ok(
            "pooler",
            "transaction mode",
            "a pooler lends the store a server session per transaction: fine for the store's default inline statements, which leave nothing on it. Named prepared statements (with_prepared_statements(true)) would need pgbouncer 1.21 or later with max_prepared_statements above 0",
        ),
        (Pooling::Transaction, true) => Finding::warn(
            "pooler",
            "transaction mode",
            "a pooler lends the store a server session per transaction, and this store uses named prepared statements: before pgbouncer 1.21 (or with max_prepared_statements = 0) clients collide on them (prepared statement \"sqlx_s_1\" already exists). Use the default inline statements (with_prepared_statements(false)), or pgbouncer 1.21+ with max_prepared_statements above 0",
        ),
    }
}

/// What the LISTEN connection's route means for waiters.
pub(crate) fn listen_finding(listen: &Listen) -> Finding {
    const SET: &str = "Set listen_url (with_listen_url, or listen_url in the config) straight to PostgreSQL or to a session-mode pool";
    match listen {
        Listen::Off => Finding::ok(
            "listen",
            "off",
            "push wake-ups are off: waiters poll, up to their poll interval late",
        ),
        Listen::Probed(Pooling::Session) => Finding::ok(
            "listen",
            "own session",
            "the LISTEN connection keeps its server session: released locks wake waiters within milliseconds",
        ),
        Listen::Probed(Pooling::Transaction) => Finding::warn(
            "listen",
            "through a transaction-mode pooler",
            format!(
                "a LISTEN through it hears nothing (and leaves a listening server connection that disturbs other clients until the listener notices): waiters fall back to polling, up to their poll interval late. {SET}"
            ),
        ),
        Listen::Deaf => Finding::warn(
            "listen",
            "deaf",
            format!(
                "the LISTEN connection heard nothing of its own test NOTIFY (it goes through a transaction-mode pooler) and stopped for good: waiters fall back to polling, up to their poll interval late. {SET}"
            ),
        ),
        Listen::Unreachable(error) => Finding::warn(
            "listen",
            "unreachable",
            format!(
                "the LISTEN URL cannot be reached ({error}): waiters poll until it can. Check listen_url"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use fencelock_core::Verdict::{self, Ok, Warn};

    use super::*;

    #[test]
    fn pids_to_pooling() {
        // (first, second, first again) → pooling in transaction mode
        let cases = [
            ((10, 11, 10), false),
            ((10, 10, 10), true),
            ((10, 11, 11), true),
            ((10, 10, 11), true),
            ((10, 11, 12), true),
        ];
        for ((before, other, again), pooled) in cases {
            assert_eq!(
                shows_transaction_pooling(before, other, again),
                pooled,
                "{before} {other} {again}"
            );
        }
    }

    fn shown(f: &Finding) -> (String, Verdict) {
        (format!("{} = {}", f.setting, f.value), f.verdict)
    }

    #[test]
    fn pooling_and_statements_to_findings() {
        let cases = [
            (Pooling::Session, false, "pooler = none seen", Ok),
            (Pooling::Session, true, "pooler = none seen", Ok),
            (Pooling::Transaction, false, "pooler = transaction mode", Ok),
            (
                Pooling::Transaction,
                true,
                "pooler = transaction mode",
                Warn,
            ),
        ];
        for (pooling, prepared, expected, verdict) in cases {
            let f = statements_finding(pooling, prepared);
            assert_eq!(shown(&f), (expected.to_owned(), verdict));
            assert!(!f.advice.is_empty());
        }
        let transaction = statements_finding(Pooling::Transaction, false).advice;
        assert!(transaction.contains("pgbouncer 1.21"), "{transaction}");
        let prepared = statements_finding(Pooling::Transaction, true).advice;
        assert!(prepared.contains("max_prepared_statements"), "{prepared}");
        assert!(
            prepared.contains("with_prepared_statements(false)"),
            "{prepared}"
        );
    }

    #[test]
    fn listen_to_findings() {
        let cases = [
            (Listen::Off, "listen = off", Ok),
            (Listen::Probed(Pooling::Session), "listen = own session", Ok),
            (
                Listen::Probed(Pooling::Transaction),
                "listen = through a transaction-mode pooler",
                Warn,
            ),
            (Listen::Deaf, "listen = deaf", Warn),
            (
                Listen::Unreachable("connection refused".to_owned()),
                "listen = unreachable",
                Warn,
            ),
        ];
        for (listen, expected, verdict) in cases {
            let f = listen_finding(&listen);
            assert_eq!(shown(&f), (expected.to_owned(), verdict), "{listen:?}");
            if verdict == Warn {
                assert!(f.advice.contains("poll"), "{}", f.advice);
            }
        }
        for listen in [Listen::Deaf, Listen::Probed(Pooling::Transaction)] {
            let advice = listen_finding(&listen).advice;
            assert!(advice.contains("listen_url"), "{advice}");
        }
        let unreachable = listen_finding(&Listen::Unreachable("refused".to_owned())).advice;
        assert!(unreachable.contains("refused"), "{unreachable}");
    }
}
