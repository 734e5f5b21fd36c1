//! One of the independent servers: its connection, its subscriber, and requests with a hard
//! time limit so that a slow or dead server never holds up the others.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::{Error, Operation};
use redis::Value;
use redis::aio::ConnectionManager;

use crate::classify::{STORE, classify};
use crate::scripts::Call;
use crate::wakeups::Wakeups;

/// One server of a Redlock store.
pub(crate) struct Instance {
    /// `host:port`, for errors and logs (never the password).
    pub(crate) target: String,
    conn: ConnectionManager,
    /// This server's subscriber; all of them feed the store's waiters.
    pub(crate) wakeups: Option<Arc<Wakeups>>,
}

impl Instance {
    pub(crate) fn new(
        target: String,
        conn: ConnectionManager,
        wakeups: Option<Arc<Wakeups>>,
    ) -> Self {
        Self {
            target,
            conn,
            wakeups,
        }
    }

    /// Runs `call` here (with its `NOSCRIPT` reload), failing after `limit` as
    /// `OutcomeUnknown` (the request may have reached the server). Errors name the server.
    pub(crate) async fn run(
        &self,
        op: Operation,
        call: &Call,
        limit: Duration,
    ) -> Result<Value, Error> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(limit, call.run(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(at(&self.target, op, classify(op, e))),
            Err(_) => Err(Error::outcome_unknown(
                STORE,
                op,
                format!("{}: no reply within {limit:?}", self.target),
            )),
        }
    }

    /// The connection to this server, for requests that are not scripts (`diagnose`).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `PING`, for `connect` to check that a majority is reachable.
    pub(crate) async fn ping(&self, limit: Duration) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(limit, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(at(
                &self.target,
                Operation::Connect,
                classify(Operation::Connect, e),
            )),
            Err(_) => Err(Error::unavailable(
                STORE,
                Operation::Connect,
                format!("{}: no answer to PING within {limit:?}", self.target),
            )),
        }
    }
}

/// `error` with the server's address in front, same kind, the original kept as the source.
fn at(target: &str, op: Operation, error: Error) -> Error {
    let kind = error.kind();
    let source = AtServer {
        target: target.to_owned(),
        error,
    };
    match kind {
        fencelock_core::ErrorKind::Unavailable => Error::unavailable(STORE, op, source),
        fencelock_core::ErrorKind::OutcomeUnknown => Error::outcome_unknown(STORE, op, source),
        fencelock_core::ErrorKind::InvalidInput => source.error,
        _ => Error::backend(STORE, op, source),
    }
}

/// A server's error, naming the server.
#[derive(Debug)]
struct AtServer {
    target: String,
    error: Error,
}

impl std::fmt::Display for AtServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.target, self.error)
    }
}

impl std::error::Error for AtServer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.target)
    }
}
