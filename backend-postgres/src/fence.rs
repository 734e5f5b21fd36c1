//! `PgFence`: fenced key/value writes into a table of ours, the check and the write one
//! statement. (For fencing rows of your own tables, see `FencedTable` and `verify`.)

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fencelock_core::{Error, Fence, FencedValue, FencingToken, Operation};
use sqlx::{PgPool, SqlStr};

use crate::classify::{STORE, classify};
use crate::statements::{Arg, Migration, Protocol, Statement, render_sql};
use crate::{PgLeaseStore, TableName, migrate};

const MIGRATE: &str = include_str!("sql/fence_migrate.sql");
const WRITE: &str = include_str!("sql/fence_write.sql");
const MARK: &str = include_str!("sql/fence_mark.sql");
const READ: &str = include_str!("sql/fence_read.sql");

/// The [`Fence`] on PostgreSQL: fenced values in a key/value table.
///
/// The table (default `fencelock_fences`, created if missing by [`PgFence::migrate`]) has one
/// row per key: `key text`, `fence_token bigint` (the high-water mark) and `value bytea`.
/// [`Fence::write`] is one statement,
/// `INSERT … ON CONFLICT (key) DO UPDATE SET … WHERE fence_token <= $token`, so the check,
/// the write and the raised mark are one atomic step; only a rejected write costs a second
/// statement, which reads the mark that rejected it for [`Error::StaleToken`].
///
/// Statements go as the store's do: by default with their values inline (the key and the
/// value as hexadecimal digits) in one simple-protocol message, so the fence works through a
/// transaction-mode pooler such as pgbouncer; with
/// [`with_prepared_statements(true)`](PgFence::with_prepared_statements) as sqlx's named
/// prepared statements, for direct connections.
///
/// ```no_run
/// # async fn demo(store: fencelock_postgres::PgLeaseStore, token: fencelock_core::FencingToken) -> Result<(), fencelock_core::Error> {
/// use fencelock_core::Fence;
///
/// let fence = store.fence().await?; // creates `fencelock_fences` if missing
/// fence.write("reports/nightly", token, b"done").await?; // Err(StaleToken) once superseded
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgFence {
    pool: PgPool,
    table: TableName,
    sql: Arc<FenceStatements>,
    op_timeout: Duration,
}

/// The fence's statements for its table, sent by one [`Protocol`].
#[derive(Debug)]
struct FenceStatements {
    protocol: Protocol,
    /// `CREATE TABLE IF NOT EXISTS …`, sent as it is (it has no values).
    migrate: SqlStr,
    migration: Migration,
    write: Statement,
    mark: Statement,
    read: Statement,
}

impl FenceStatements {
    fn new(table: &TableName, protocol: Protocol) -> Self {
        let statement =
            |template: &str| Statement::new(render_sql(template, Some(table), None), protocol);
        Self {
            protocol,
            migrate: render_sql(MIGRATE, Some(table), None),
            migration: Migration::new(protocol),
            write: statement(WRITE),
            mark: statement(MARK),
            read: statement(READ),
        }
    }
}

impl PgFence {
    /// The default name of the fence table.
    pub const DEFAULT_TABLE: &str = "fencelock_fences";

    /// The longest key accepted, in bytes: a primary-key entry must fit a third of a page.
    pub const MAX_KEY_LEN: usize = 2048;

    /// A fence over `table` on `pool`, with a 10 s operation timeout and values inline (safe
    /// through any pooler). Sends nothing: run [`PgFence::migrate`] once to create the table,
    /// or let an administrator create it.
    pub fn new(pool: PgPool, table: TableName) -> Self {
        Self {
            sql: Arc::new(FenceStatements::new(&table, Protocol::Inline)),
            pool,
            table,
            op_timeout: Duration::from_secs(10),
        }
    }

    /// How long one statement may take before its outcome counts as unknown.
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Whether statements are sqlx's cached named prepared statements (default `false`), as
    /// [`PgBuilder::with_prepared_statements`](crate::PgBuilder::with_prepared_statements):
    /// the default sends each statement with its values inline as one message, which works
    /// through any pooler; named statements are for direct connections (or pgbouncer 1.21+
    /// with `max_prepared_statements`).
    pub fn with_prepared_statements(mut self, prepared: bool) -> Self {
        let protocol = if prepared {
            Protocol::Prepared
        } else {
            Protocol::Inline
        };
        if self.sql.protocol != protocol {
            self.sql = Arc::new(FenceStatements::new(&self.table, protocol));
        }
        self
    }

    /// The fence table.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// Creates the schema and the fence table if missing. Idempotent, and safe to run from
    /// many processes at once (as the lease table's migration).
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached; `Backend` e.g. without privileges.
    pub async fn migrate(&self) -> Result<(), Error> {
        let op = Operation::Setup;
        let tables = [&self.table];
        let groups = [migrate::Tables {
            tables: &tables,
            create: self.sql.migrate.clone(),
            added: &[],
            optional_for: None,
        }];
        let create = migrate::migrate(&self.pool, &groups, &self.sql.migration);
        tokio::time::timeout(self.op_timeout, create)
            .await
            .map_err(|_| self.timed_out(op))?
    }

    /// Runs `statement` under the operation timeout; a timeout means it may have run.
    async fn timed<T>(
        &self,
        op: Operation,
        statement: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.op_timeout, statement).await {
            Ok(result) => result.map_err(|e| classify(op, e)),
            Err(_) => Err(self.timed_out(op)),
        }
    }

    fn timed_out(&self, op: Operation) -> Error {
        Error::outcome_unknown(
            STORE,
            op,
            format!("no reply from postgres within {:?}", self.op_timeout),
        )
    }
}

impl PgLeaseStore {
    /// A fence on the store's pool, with its operation timeout and its way of sending
    /// statements (values inline unless `with_prepared_statements(true)`), over the table
    /// `fencelock_fences` in the lease table's schema, which this creates if missing.
    ///
    /// # Errors
    /// As [`PgFence::migrate`].
    pub async fn fence(&self) -> Result<PgFence, Error> {
        let table = TableName::new(self.table().schema().as_str(), PgFence::DEFAULT_TABLE)?;
        let fence = PgFence::new(self.pool().clone(), table)
            .with_op_timeout(self.op_timeout())
            .with_prepared_statements(self.protocol() == Protocol::Prepared);
        fence.migrate().await?;
        Ok(fence)
    }
}

#[async_trait]
impl Fence for PgFence {
    fn backend(&self) -> &'static str {
        STORE
    }

    /// # Errors
    /// As [`Fence::write`]; also [`Error::InvalidInput`] for an empty key, a key with NUL (a
    /// `text` cannot hold it) or longer than [`PgFence::MAX_KEY_LEN`] bytes, and a token above
    /// `i64::MAX`.
    async fn write(&self, key: &str, token: FencingToken, value: &[u8]) -> Result<(), Error> {
        let op = Operation::FencedWrite;
        check_key(key)?;
        let presented = i64::try_from(token.get()).map_err(|_| {
            Error::invalid(
                "fencing token",
                format!("{token} does not fit a bigint column"),
            )
        })?;
        let write = self.sql.write.fetch_optional::<(i64,), _>(
            vec![Arg::Text(key), Arg::Int(presented), Arg::Bytes(value)],
            &self.pool,
        );
        if self.timed(op, write).await?.is_some() {
            return Ok(());
        }
        // Rejected: read the mark that did it. Marks only rise, so it is still above `token`.
        let mark = self
            .sql
            .mark
            .fetch_optional::<(i64,), _>(vec![Arg::Text(key)], &self.pool);
        match self.timed(op, mark).await?.map(|(high,)| high) {
            Some(high) if high > presented => {
                fencelock_core::metrics::stale_write_rejected(STORE);
                Err(Error::StaleToken {
                    resource: key.to_owned(),
                    presented: token,
                    high_water: FencingToken::new(high.unsigned_abs()),
                })
            }
            other => Err(Error::backend(
                STORE,
                op,
                format!(
                    "the write to `{key}` was rejected, but its mark is now {other:?}; the row was changed by hand (marks only rise), retry the write"
                ),
            )),
        }
    }

    /// # Errors
    /// The store's errors; [`Error::InvalidInput`] as for [`Fence::write`].
    async fn read(&self, key: &str) -> Result<Option<FencedValue>, Error> {
        check_key(key)?;
        let read = self
            .sql
            .read
            .fetch_optional::<(Vec<u8>, i64), _>(vec![Arg::Text(key)], &self.pool);
        let row = self.timed(Operation::FencedRead, read).await?;
        Ok(row
            .map(|(value, token)| FencedValue::new(value, FencingToken::new(token.unsigned_abs()))))
    }
}

impl fmt::Debug for PgFence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pool's options hold the password, so they are not shown.
        f.debug_struct("PgFence")
            .field("table", &self.table)
            .field("op_timeout", &self.op_timeout)
            .field("protocol", &self.sql.protocol)
            .finish_non_exhaustive()
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid(
            "fenced key",
            "it is empty; name the resource",
        ));
    }
    if key.contains('\0') {
        return Err(Error::invalid(
            "fenced key",
            format!("{key:?} holds a NUL byte, which a PostgreSQL text cannot hold"),
        ));
    }
    if key.len() > PgFence::MAX_KEY_LEN {
        return Err(Error::invalid(
            "fenced key",
            format!(
                "it is {} bytes long; keys of at most {} bytes fit the table's index",
                key.len(),
                PgFence::MAX_KEY_LEN
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;

    use super::*;

    #[test]
    fn keys_a_text_key_cannot_hold_are_invalid_input() {
        let long = "k".repeat(PgFence::MAX_KEY_LEN + 1);
        for key in ["", "nul\0byte", long.as_str()] {
            assert_eq!(
                check_key(key).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{key:?}"
            );
        }
        assert!(check_key(&"k".repeat(PgFence::MAX_KEY_LEN)).is_ok());
        assert!(check_key("sql'); DROP TABLE x; --").is_ok());
    }

    #[tokio::test]
    async fn only_the_quoted_table_is_substituted() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let fence = PgFence::new(pool, TableName::new("s", "Fences").unwrap());
        let sql = &fence.sql;
        assert_eq!(sql.protocol, Protocol::Inline);
        let texts = [
            sql.migrate.as_str(),
            sql.write.as_str(),
            sql.mark.as_str(),
            sql.read.as_str(),
        ];
        for statement in texts {
            assert!(statement.contains("\"s\".\"Fences\""));
            assert!(!statement.contains('{'), "{statement}");
            assert!(!statement.contains("--"), "comment left in {statement}");
        }
        for statement in [&sql.write, &sql.mark, &sql.read] {
            let sql = statement.as_str();
            for (at, _) in sql.match_indices('$') {
                let next = sql[at + 1..].chars().next();
                assert!(
                    next.is_some_and(|c| c.is_ascii_digit()),
                    "a `$` that is not a placeholder in {sql}"
                );
            }
        }
        let prepared = fence.clone().with_prepared_statements(true);
        assert_eq!(prepared.sql.protocol, Protocol::Prepared);
        assert!(
            sql.write
                .as_str()
                .contains("WHERE fence.fence_token <= EXCLUDED.fence_token")
        );
    }
}
