//! The embedded, idempotent migration that creates a table of ours (the lease table, the fence
//! table).

use fencelock_core::{Error, Operation};
use sqlx::{AssertSqlSafe, PgPool, SqlStr};

use crate::TableName;
use crate::classify::classify;
use crate::statements::{Arg, Migration};

/// Creates the schema and `table` (with the statement `create`) if missing, and adds the
/// `added` columns (name, `ALTER TABLE`) an existing table lacks.
///
/// The queries go by the store's protocol (`sql`: values inline by default, so a pooler can
/// run them), all in one transaction, which a transaction-mode pooler keeps on one server
/// connection.
///
/// Concurrent first connects serialize on a transaction-scoped advisory lock keyed by the
/// schema name (`CREATE SCHEMA/TABLE IF NOT EXISTS` alone can still fail with a duplicate-key
/// error on the catalog when two sessions race, also for two tables in one new schema). The lock ends with the transaction, so it holds nothing
/// across a pooler. When the table already exists nothing is created, so a role without
/// `CREATE` privileges can use a table an administrator made.
pub(crate) async fn migrate(
    pool: &PgPool,
    table: &TableName,
    create: SqlStr,
    added: &[(&str, SqlStr)],
    sql: &Migration,
) -> Result<(), Error> {
    let fail = |e| classify(Operation::Setup, e);
    let mut tx = pool.begin().await.map_err(fail)?;
    let key = format!("fencelock migrate {}", table.schema().quoted());
    sql.lock
        .execute(vec![Arg::Text(&key)], &mut *tx)
        .await
        .map_err(fail)?;
    let quoted = table.quoted();
    let (exists,): (bool,) = sql
        .table_exists
        .fetch_one(vec![Arg::Text(&quoted)], &mut *tx)
        .await
        .map_err(fail)?;
    if !exists {
        let (schema_exists,): (bool,) = sql
            .schema_exists
            .fetch_one(vec![Arg::Text(table.schema().as_str())], &mut *tx)
            .await
            .map_err(fail)?;
        if !schema_exists {
            let schema = format!("CREATE SCHEMA IF NOT EXISTS {}", table.schema().quoted());
            sqlx::raw_sql(AssertSqlSafe(schema))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        sqlx::raw_sql(create)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tracing::info!(table = %table, "created the fencelock table");
    }
    for (column, alter) in added {
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
            tracing::info!(table = %table, column, "added a column to the fencelock table");
        }
    }
    tx.commit().await.map_err(fail)
}
