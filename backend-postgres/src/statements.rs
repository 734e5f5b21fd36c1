//! The SQL this backend runs, rendered once per store for its table, and how it reaches the
//! server.
//!
//! The statements live in `src/sql/*.sql`, with `$1…$n` placeholders. The only text
//! substituted when a store is built is the table name (a validated, quoted [`TableName`]) and
//! the durable-commit clause. The fence's statements (`PgFence`, `src/sql/fence_*.sql`) and the
//! migration's are rendered by the same [`render_sql`] and sent the same way, as [`Statement`]s.
//!
//! # Two ways to send a statement
//!
//! - [`Protocol::Inline`] (the default): the values are written into the statement text and the
//!   statement goes out as **one** simple-protocol `Query` message. Nothing is named or kept on
//!   the server connection, and a pooler cannot split the statement from its values, so it works
//!   through any pooler in any mode. Every value is either a number rendered by Rust or a text
//!   rendered as hexadecimal digits (`convert_from(decode('6a6f6273', 'hex'), 'UTF8')`; bytes,
//!   e.g. a fenced value, as `decode('00ff', 'hex')`): the statement text never contains a byte
//!   of the caller's input, so there is nothing to escape.
//!   The price is that the server parses and plans every statement.
//! - [`Protocol::Prepared`]: sqlx's named prepared statements (`sqlx_s_1`, …), parsed once per
//!   connection and cached. Cheaper for the server, but the names live on the server connection:
//!   through a transaction-mode pooler they meet other clients' statements of the same name
//!   (`prepared statement "sqlx_s_1" already exists`) unless the pooler tracks them (pgbouncer
//!   1.21+ with `max_prepared_statements`).
//!
//! sqlx's *unnamed* statements (`.persistent(false)`) are not a third way: sqlx 0.9 sends
//! `Parse`+`Sync`, waits, then `Bind`+`Execute`+`Sync`. A transaction-mode pooler may hand the
//! second half to another server connection, where it binds the values to whatever unnamed
//! statement *another* client parsed there — through pgbouncer 1.18 that ran the wrong
//! statement without any error for most queries of eight concurrent clients.

use std::fmt::Write as _;
use std::sync::Arc;

use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Executor, FromRow, Postgres, SqlSafeStr, SqlStr};

use crate::TableName;

const MIGRATE: &str = include_str!("sql/migrate.sql");
const MIGRATE_LOCK: &str = include_str!("sql/migrate_lock.sql");
const TABLE_EXISTS: &str = include_str!("sql/table_exists.sql");
const SCHEMA_EXISTS: &str = include_str!("sql/schema_exists.sql");
const COLUMN_EXISTS: &str = include_str!("sql/column_exists.sql");
const MIGRATE_LABEL: &str = include_str!("sql/migrate_label.sql");
const LIST: &str = include_str!("sql/list.sql");
const ACQUIRE: &str = include_str!("sql/acquire.sql");
const RENEW: &str = include_str!("sql/renew.sql");
const RENEW_MANY: &str = include_str!("sql/renew_many.sql");
const RELEASE: &str = include_str!("sql/release.sql");
const FORCE_RELEASE: &str = include_str!("sql/force_release.sql");
const INSPECT: &str = include_str!("sql/inspect.sql");
const VERIFY: &str = include_str!("sql/verify.sql");
const NOTIFY: &str = include_str!("sql/notify.sql");
const DURABLE: &str = include_str!("sql/durable.sql");
const PERMIT_MIGRATE: &str = include_str!("sql/permit_migrate.sql");
const PERMIT_LOCK: &str = include_str!("sql/permit_lock.sql");
const PERMIT_GRANT: &str = include_str!("sql/permit_grant.sql");
const PERMIT_RENEW: &str = include_str!("sql/permit_renew.sql");
const PERMIT_RENEW_MANY: &str = include_str!("sql/permit_renew_many.sql");
const PERMIT_RELEASE: &str = include_str!("sql/permit_release.sql");
const PERMIT_INSPECT: &str = include_str!("sql/permit_inspect.sql");
const PERMIT_VERIFY: &str = include_str!("sql/permit_verify.sql");

/// The suffixes of the semaphore tables' names, after the lease table's
/// ([`TableName::derived`]).
pub(crate) const SEMAPHORES_SUFFIX: &str = "_semaphores";
pub(crate) const PERMITS_SUFFIX: &str = "_permits";

/// How statements reach the server (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Values inline, one simple-protocol message: safe through any pooler.
    Inline,
    /// sqlx's cached named prepared statements: for direct connections.
    Prepared,
}

/// The value of one `$n` placeholder.
#[derive(Clone, Debug)]
pub(crate) enum Arg<'a> {
    Text(&'a str),
    Int(i64),
    Bytes(&'a [u8]),
    Texts(Vec<&'a str>),
    Ints(Vec<i64>),
}

/// One statement of a store, sent by its store's [`Protocol`].
#[derive(Clone, Debug)]
pub(crate) struct Statement {
    sql: SqlStr,
    protocol: Protocol,
}

/// The migration's statements (`migrate.rs`), the same for every table of ours: the lease
/// table and the fence table.
#[derive(Clone, Debug)]
pub(crate) struct Migration {
    pub(crate) lock: Statement,
    pub(crate) table_exists: Statement,
    pub(crate) schema_exists: Statement,
    pub(crate) column_exists: Statement,
}

impl Migration {
    pub(crate) fn new(protocol: Protocol) -> Self {
        let statement = |template: &str| Statement::new(render_sql(template, None, None), protocol);
        Self {
            lock: statement(MIGRATE_LOCK),
            table_exists: statement(TABLE_EXISTS),
            schema_exists: statement(SCHEMA_EXISTS),
            column_exists: statement(COLUMN_EXISTS),
        }
    }
}

/// The statements of one store. Cloning a [`SqlStr`] is a reference-count bump.
#[derive(Clone, Debug)]
pub(crate) struct Statements {
    /// `CREATE TABLE IF NOT EXISTS …`, sent as it is (it has no values).
    pub(crate) migrate: SqlStr,
    /// Columns added since the first release, each with the `ALTER TABLE` that adds it.
    pub(crate) added_columns: Vec<(&'static str, SqlStr)>,
    pub(crate) migration: Migration,
    pub(crate) acquire: Statement,
    pub(crate) grants: GrantStatements,
    pub(crate) force_release: Statement,
    pub(crate) inspect: Statement,
    pub(crate) list: Statement,
    pub(crate) notify: Statement,
    pub(crate) permits: PermitStatements,
}

/// What is done to one grant, a lock's or a permit's: the two kinds take the same values
/// (name, holder, token, …) and answer the same rows, each on its own table.
#[derive(Clone, Debug)]
pub(crate) struct GrantStatements {
    /// `$1` name, `$2` holder, `$3` token, `$4` TTL in µs: the token, if renewed.
    pub(crate) renew: Statement,
    /// `$1` names, `$2` holders, `$3` tokens, `$4` TTL in µs: name, token, holder of each
    /// renewed.
    pub(crate) renew_many: Statement,
    /// `$1` name, `$2` holder, `$3` token, `$4` channel: how many were released (0 or 1).
    pub(crate) release: Statement,
    /// `$1` name, `$2` holder, `$3` token: the row's token and whether it is this live grant.
    pub(crate) verify: Statement,
}

/// The semaphore statements of one store, on the tables derived from its lease table.
#[derive(Clone, Debug)]
pub(crate) struct PermitStatements {
    /// The semaphore rows (one per name: the token counter and the limit).
    pub(crate) semaphores: TableName,
    /// The permit rows (one per granted permit).
    pub(crate) permits: TableName,
    /// `CREATE TABLE IF NOT EXISTS …` for both tables, sent as it is (it has no values).
    pub(crate) migrate: SqlStr,
    pub(crate) lock: Statement,
    pub(crate) grant: Statement,
    pub(crate) grants: GrantStatements,
    pub(crate) inspect: Statement,
}

impl PermitStatements {
    fn new(table: &TableName, durable: &str, protocol: Protocol) -> Self {
        let semaphores = table.derived(SEMAPHORES_SUFFIX);
        let permits = table.derived(PERMITS_SUFFIX);
        let tables = |template: &str| {
            template
                .replace("{semaphores}", &semaphores.quoted())
                .replace("{permits}", &permits.quoted())
        };
        let statement = |template: &str| {
            Statement::new(render_sql(&tables(template), None, Some(durable)), protocol)
        };
        Self {
            migrate: render_sql(&tables(PERMIT_MIGRATE), None, None),
            lock: statement(PERMIT_LOCK),
            grant: statement(PERMIT_GRANT),
            grants: GrantStatements {
                renew: statement(PERMIT_RENEW),
                renew_many: statement(PERMIT_RENEW_MANY),
                release: statement(PERMIT_RELEASE),
                verify: statement(PERMIT_VERIFY),
            },
            inspect: statement(PERMIT_INSPECT),
            semaphores,
            permits,
        }
    }
}

impl Statements {
    pub(crate) fn new(table: &TableName, durable: bool, protocol: Protocol) -> Self {
        let durable = if durable { DURABLE.trim() } else { "true" };
        let statement = |template: &str| {
            Statement::new(render_sql(template, Some(table), Some(durable)), protocol)
        };
        Self {
            migrate: render_sql(MIGRATE, Some(table), None),
            added_columns: vec![("label", render_sql(MIGRATE_LABEL, Some(table), None))],
            migration: Migration::new(protocol),
            acquire: statement(ACQUIRE),
            grants: GrantStatements {
                renew: statement(RENEW),
                renew_many: statement(RENEW_MANY),
                release: statement(RELEASE),
                verify: statement(VERIFY),
            },
            force_release: statement(FORCE_RELEASE),
            inspect: statement(INSPECT),
            list: statement(LIST),
            notify: statement(NOTIFY),
            permits: PermitStatements::new(table, durable, protocol),
        }
    }
}

/// `template` without its comment lines, with `{table}` replaced by the quoted `table` and
/// `{durable}` by the durable-commit clause (markers without a value are left as they are).
pub(crate) fn render_sql(
    template: &str,
    table: Option<&TableName>,
    durable: Option<&str>,
) -> SqlStr {
    // Comment lines stay in the files; the server need not read them on every call.
    let lines: Vec<&str> = template
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect();
    let mut sql = lines.join("\n");
    if let Some(table) = table {
        sql = sql.replace("{table}", &table.quoted());
    }
    if let Some(durable) = durable {
        sql = sql.replace("{durable}", durable);
    }
    AssertSqlSafe(Arc::<str>::from(sql.trim())).into_sql_str()
}

impl Statement {
    /// `sql` (rendered by [`render_sql`]), sent by `protocol`.
    pub(crate) fn new(sql: SqlStr, protocol: Protocol) -> Self {
        Self { sql, protocol }
    }

    /// Runs the statement with `args` for `$1…$n`; its first row, if any, as `T`.
    pub(crate) async fn fetch_optional<'e, T, E>(
        &self,
        args: Vec<Arg<'_>>,
        executor: E,
    ) -> Result<Option<T>, sqlx::Error>
    where
        T: for<'r> FromRow<'r, PgRow>,
        E: Executor<'e, Database = Postgres>,
    {
        let row = match self.protocol {
            Protocol::Prepared => {
                bind(self.sql.clone(), args)
                    .fetch_optional(executor)
                    .await?
            }
            Protocol::Inline => self.inline(&args).fetch_optional(executor).await?,
        };
        row.as_ref().map(T::from_row).transpose()
    }

    /// Runs the statement with `args` for `$1…$n`; every row as `T`.
    pub(crate) async fn fetch_all<'e, T, E>(
        &self,
        args: Vec<Arg<'_>>,
        executor: E,
    ) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> FromRow<'r, PgRow>,
        E: Executor<'e, Database = Postgres>,
    {
        let rows = match self.protocol {
            Protocol::Prepared => bind(self.sql.clone(), args).fetch_all(executor).await?,
            Protocol::Inline => self.inline(&args).fetch_all(executor).await?,
        };
        rows.iter().map(T::from_row).collect()
    }

    /// Runs the statement with `args` for `$1…$n`; its one row as `T` (`RowNotFound` if none).
    pub(crate) async fn fetch_one<'e, T, E>(
        &self,
        args: Vec<Arg<'_>>,
        executor: E,
    ) -> Result<T, sqlx::Error>
    where
        T: for<'r> FromRow<'r, PgRow>,
        E: Executor<'e, Database = Postgres>,
    {
        self.fetch_optional(args, executor)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Runs the statement with `args` for `$1…$n`, ignoring its rows.
    pub(crate) async fn execute<'e, E>(
        &self,
        args: Vec<Arg<'_>>,
        executor: E,
    ) -> Result<(), sqlx::Error>
    where
        E: Executor<'e, Database = Postgres>,
    {
        match self.protocol {
            Protocol::Prepared => bind(self.sql.clone(), args).execute(executor).await?,
            Protocol::Inline => self.inline(&args).execute(executor).await?,
        };
        Ok(())
    }

    fn inline(&self, args: &[Arg<'_>]) -> sqlx::RawSql {
        sqlx::raw_sql(AssertSqlSafe(inline(self.sql.as_str(), args)))
    }

    /// The statement's text (with placeholders).
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        self.sql.as_str()
    }
}

fn bind(
    sql: SqlStr,
    args: Vec<Arg<'_>>,
) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
    args.into_iter()
        .fold(sqlx::query(sql), |query, arg| match arg {
            Arg::Text(text) => query.bind(text),
            Arg::Int(int) => query.bind(int),
            Arg::Bytes(bytes) => query.bind(bytes),
            Arg::Texts(texts) => query.bind(texts),
            Arg::Ints(ints) => query.bind(ints),
        })
}

/// `template` with every `$n` replaced by the SQL expression of `args[n - 1]`.
///
/// The templates are ours and hold no `$` outside placeholders (a test checks); a placeholder
/// without a value is left as it is, and the server reports it as an error.
fn inline(template: &str, args: &[Arg<'_>]) -> String {
    let mut sql = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        sql.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let arg = after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|n| args.get(n.checked_sub(1)?));
        match arg {
            Some(arg) => render(&mut sql, arg),
            None => sql.push_str(&rest[at..=at + digits]),
        }
        rest = &after[digits..];
    }
    sql.push_str(rest);
    sql
}

/// Writes `arg` as an SQL expression made of digits, hex digits and fixed text only.
fn render(sql: &mut String, arg: &Arg<'_>) {
    match arg {
        Arg::Text(text) => render_text(sql, text),
        Arg::Int(int) => {
            let _ = write!(sql, "CAST({int} AS bigint)");
        }
        Arg::Bytes(bytes) => {
            sql.push_str("decode('");
            push_hex(sql, bytes);
            sql.push_str("', 'hex')");
        }
        Arg::Texts(texts) => {
            sql.push_str("ARRAY[");
            for (i, text) in texts.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                render_text(sql, text);
            }
            sql.push_str("]::text[]");
        }
        Arg::Ints(ints) => {
            sql.push_str("ARRAY[");
            for (i, int) in ints.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                let _ = write!(sql, "{int}");
            }
            sql.push_str("]::bigint[]");
        }
    }
}

/// A text as `convert_from(decode('<hex of its UTF-8>', 'hex'), 'UTF8')`.
fn render_text(sql: &mut String, text: &str) {
    sql.push_str("convert_from(decode('");
    push_hex(sql, text.as_bytes());
    sql.push_str("', 'hex'), 'UTF8')");
}

/// `bytes` as hexadecimal digits, two per byte.
fn push_hex(sql: &mut String, bytes: &[u8]) {
    for byte in bytes {
        let _ = write!(sql, "{byte:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &Statements) -> Vec<&Statement> {
        vec![
            &s.migration.lock,
            &s.migration.table_exists,
            &s.migration.schema_exists,
            &s.acquire,
            &s.grants.renew,
            &s.grants.renew_many,
            &s.grants.release,
            &s.grants.verify,
            &s.force_release,
            &s.inspect,
            &s.notify,
            &s.permits.lock,
            &s.permits.grant,
            &s.permits.grants.renew,
            &s.permits.grants.renew_many,
            &s.permits.grants.release,
            &s.permits.grants.verify,
            &s.permits.inspect,
        ]
    }

    #[test]
    fn only_the_quoted_table_and_the_durable_clause_are_substituted() {
        let table = TableName::new("s", "Leases").unwrap();
        let durable = Statements::new(&table, true, Protocol::Inline);
        assert!(
            durable
                .acquire
                .as_str()
                .contains("INSERT INTO \"s\".\"Leases\" AS lease")
        );
        assert!(
            durable
                .acquire
                .as_str()
                .contains("set_config('synchronous_commit'")
        );
        assert!(
            durable
                .grants
                .renew
                .as_str()
                .contains("set_config('synchronous_commit'")
        );
        assert!(!durable.grants.release.as_str().contains("set_config"));
        let fast = Statements::new(&table, false, Protocol::Inline);
        assert!(!fast.acquire.as_str().contains("set_config"));
        assert!(!durable.migrate.as_str().contains('{'));
        let permits = &durable.permits;
        assert!(
            permits
                .migrate
                .as_str()
                .contains("CREATE TABLE IF NOT EXISTS \"s\".\"Leases_permits\"")
        );
        assert!(!permits.migrate.as_str().contains('{'));
        assert!(
            permits
                .grant
                .as_str()
                .contains("UPDATE \"s\".\"Leases_semaphores\" AS semaphore")
        );
        // The grant's transaction is made durable by its first statement, the lock.
        assert!(
            permits
                .lock
                .as_str()
                .contains("set_config('synchronous_commit'")
        );
        assert!(
            permits
                .grants
                .renew
                .as_str()
                .contains("set_config('synchronous_commit'")
        );
        assert!(!permits.grants.release.as_str().contains("set_config"));
        for statement in all(&durable) {
            let sql = statement.as_str();
            assert!(!sql.contains('{'), "unrendered marker in {sql}");
            assert!(!sql.contains("--"), "comment left in {sql}");
        }
    }

    #[test]
    fn every_dollar_in_a_template_is_a_placeholder() {
        let table = TableName::new("s", "t").unwrap();
        for statement in all(&Statements::new(&table, true, Protocol::Inline)) {
            let sql = statement.as_str();
            for (at, _) in sql.match_indices('$') {
                let next = sql[at + 1..].chars().next();
                assert!(
                    next.is_some_and(|c| c.is_ascii_digit()),
                    "a `$` that is not a placeholder in {sql}"
                );
            }
        }
    }

    #[test]
    fn inline_values_are_digits_and_hex_only() {
        let hostile = "'; DROP TABLE users; -- \\ $1 \"x\" ü";
        let sql = inline(
            "SELECT $1, $2, $3, $4 WHERE $10 IS NULL",
            &[
                Arg::Text(hostile),
                Arg::Int(-9_223_372_036_854_775_808),
                Arg::Texts(vec!["a", "'"]),
                Arg::Ints(vec![1, 2]),
            ],
        );
        let hex: String = hostile.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(sql.starts_with(&format!(
            "SELECT convert_from(decode('{hex}', 'hex'), 'UTF8'), CAST(-9223372036854775808 AS bigint), ARRAY[convert_from(decode('61', 'hex'), 'UTF8'),convert_from(decode('27', 'hex'), 'UTF8')]::text[], ARRAY[1,2]::bigint[]"
        )));
        // `$10` has no value: left for the server to reject.
        assert!(sql.ends_with("WHERE $10 IS NULL"), "{sql}");
        // Nothing of the input survives as text: no quote but the literals' own.
        assert_eq!(sql.matches('\'').count(), 3 * 6, "{sql}");
        assert!(!sql.contains("DROP"));
        assert_eq!(inline("SELECT ARRAY[]", &[]), "SELECT ARRAY[]");
        assert_eq!(inline("$1", &[Arg::Texts(vec![])]), "ARRAY[]::text[]");
        // Bytes (a fenced value) as a bytea of hex digits, NUL and quotes included.
        assert_eq!(
            inline("VALUES ($1)", &[Arg::Bytes(b"\0'\xff")]),
            "VALUES (decode('0027ff', 'hex'))"
        );
        assert_eq!(inline("$1", &[Arg::Bytes(&[])]), "decode('', 'hex')");
    }
}
