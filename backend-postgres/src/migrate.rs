//! The embedded, idempotent migration that creates the tables of ours (the lease table and the
//! semaphore tables beside it, the fence table).

use fencelock_core::{Error, Operation};
use sqlx::{AssertSqlSafe, PgPool, SqlStr};

use crate::TableName;
use crate::classify::{classify, sqlstate};
use crate::statements::{Arg, Migration};

/// What the migration makes: `tables` (all in one schema), created together by the statement
/// `create` when any of them is missing, and the `added` columns (name, `ALTER TABLE`) that the
/// first of them lacks.
pub(crate) struct Tables<'a> {
    pub(crate) tables: &'a [&'a TableName],
    pub(crate) create: SqlStr,
    pub(crate) added: &'a [(&'static str, SqlStr)],
    /// What the tables are for, when the store works without them (the semaphore tables: a
    /// lock-only role without `CREATE` must still connect after an upgrade). Creating them is
    /// then skipped, with a warning, when the role lacks the privilege; `None`: required.
    pub(crate) optional_for: Option<&'static str>,
}

/// Creates the schema and each group of [`Tables`] if missing, and adds the columns an
/// existing table lacks.
///
/// The queries go by the store's protocol (`sql`: values inline by default, so a pooler can
/// run them), all in one transaction, which a transaction-mode pooler keeps on one server
/// connection.
///
/// Concurrent first connects serialize on a transaction-scoped advisory lock keyed by the
/// schema name (`CREATE SCHEMA/TABLE IF NOT EXISTS` alone can still fail with a duplicate-key
/// error on the catalog when two sessions race, also for two tables in one new schema). The
/// lock ends with the transaction, so it holds nothing across a pooler. When the tables already
/// exist nothing is created, so a role without `CREATE` privileges can use tables an
/// administrator made.
pub(crate) async fn migrate(
    pool: &PgPool,
    groups: &[Tables<'_>],
    sql: &Migration,
) -> Result<(), Error> {
    let fail = |e| classify(Operation::Setup, e);
    let mut tx = pool.begin().await.map_err(fail)?;
    let mut locked = Vec::new();
    for group in groups {
        let Some(first) = group.tables.first() else {
            continue;
        };
        let schema = first.schema();
        if !locked.contains(&schema) {
            let key = format!("fencelock migrate {}", schema.quoted());
            sql.lock
                .execute(vec![Arg::Text(&key)], &mut *tx)
                .await
                .map_err(fail)?;
            locked.push(schema);
        }
        let mut missing = false;
        for table in group.tables {
            let (exists,): (bool,) = sql
                .table_exists
                .fetch_one(vec![Arg::Text(&table.quoted())], &mut *tx)
                .await
                .map_err(fail)?;
            missing |= !exists;
        }
        if missing {
            let (schema_exists,): (bool,) = sql
                .schema_exists
                .fetch_one(vec![Arg::Text(schema.as_str())], &mut *tx)
                .await
                .map_err(fail)?;
            if !schema_exists {
                let create = format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted());
                sqlx::raw_sql(AssertSqlSafe(create))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            match group.optional_for {
                None => {
                    sqlx::raw_sql(group.create.clone())
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
                Some(what) => {
                    // A savepoint, so that a refusal leaves the rest of the migration standing.
                    sqlx::raw_sql("SAVEPOINT fencelock_optional")
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                    match sqlx::raw_sql(group.create.clone()).execute(&mut *tx).await {
                        Ok(_) => {}
                        Err(error)
                            if sqlstate(&error).as_deref() == Some(INSUFFICIENT_PRIVILEGE) =>
                        {
                            sqlx::raw_sql("ROLLBACK TO SAVEPOINT fencelock_optional")
                                .execute(&mut *tx)
                                .await
                                .map_err(fail)?;
                            tracing::warn!(
                                tables = %names(group.tables),
                                %error,
                                "the fencelock tables for {what} are missing and this role may not create them: {what} fail until an administrator runs the migration (PgLeaseStore::migrate, or the SQL in the crate README) once"
                            );
                            continue;
                        }
                        Err(error) => return Err(fail(error)),
                    }
                    sqlx::raw_sql("RELEASE SAVEPOINT fencelock_optional")
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
            }
            for table in group.tables {
                tracing::info!(table = %table, "created the fencelock table");
            }
        }
        let quoted = first.quoted();
        for (column, alter) in group.added {
            let (present,): (bool,) = sql
                .column_exists
                .fetch_one(vec![Arg::Text(&quoted), Arg::Text(column)], &mut *tx)
                .await
                .map_err(fail)?;
            if !present {
                sqlx::raw_sql(alter.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                tracing::info!(table = %first, column, "added a column to the fencelock table");
            }
        }
    }
    tx.commit().await.map_err(fail)
}

/// `42501`: the role lacks a privilege (here: `CREATE` on the schema).
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// The tables of a group, for a message.
fn names(tables: &[&TableName]) -> String {
    tables
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
