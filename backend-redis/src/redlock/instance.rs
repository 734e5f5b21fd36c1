//! One of the independent servers: its connection, its subscriber, and requests with a hard
//! time limit so that a slow or dead server never holds up the others.

use std::sync::Arc;
use std::time::Duration;

use fencelock_core::{Error, Operation};
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use crate::classify::{STORE, classify};
use crate::wakeups::Wakeups;

/// One script call with its keys and arguments, owned, so that it can be sent to every server
/// from tasks of its own.
#[derive(Clone, Debug)]
pub(crate) struct ScriptCall {
    op: Operation,
    script: &'static Script,
    keys: Vec<String>,
    args: Vec<String>,
}

impl ScriptCall {
    pub(crate) fn new(op: Operation, script: &'static Script) -> Self {
        Self {
            op,
            script,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(crate) fn key(mut self, key: &str) -> Self {
        self.keys.push(key.to_owned());
        self
    }

    pub(crate) fn arg(mut self, arg: impl ToString) -> Self {
        self.args.push(arg.to_string());
        self
    }
}

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

    /// Runs one script here, failing after `limit` as `OutcomeUnknown` (the request may have
    /// reached the server). Errors name the server.
    pub(crate) async fn run(&self, call: &ScriptCall, limit: Duration) -> Result<Value, Error> {
        let op = call.op;
        let mut invocation = call.script.prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(limit, invocation.invoke_async(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(at(&self.target, op, classify(op, e))),
            Err(_) => Err(Error::outcome_unknown(
                STORE,
                op,
                format!("{}: no reply within {limit:?}", self.target),
            )),
        }
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
