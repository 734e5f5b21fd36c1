//! The embedded, idempotent migration that creates a table of ours (the lease table, the fence
//! table).

use fencelock_core::{Error, Operation};
use sqlx::{AssertSqlSafe, PgPool, SqlStr};

use crate::TableName;
use crate::classify::classify;

/// Creates the schema and `table` (with the statement `create`) if missing.
///
/// Concurrent first connects serialize on a transaction-scoped advisory lock keyed by the
/// schema name (`CREATE SCHEMA/TABLE IF NOT EXISTS` alone can still fail with a duplicate-key
/// error on the catalog when two sessions race, also for two tables in one new schema). The lock ends with the transaction, so it holds nothing
/// across a pooler. When the table already exists nothing is created, so a role without
/// `CREATE` privileges can use a table an administrator made.
pub(crate) async fn migrate(pool: &PgPool, table: &TableName, create: SqlStr) -> Result<(), Error> {
    let fail = |e| classify(Operation::Setup, e);
    let mut tx = pool.begin().await.map_err(fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("fencelock migrate {}", table.schema().quoted()))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table.quoted())
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
    if !exists {
        let schema_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(table.schema().as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(fail)?;
        if !schema_exists {
            let create = format!("CREATE SCHEMA IF NOT EXISTS {}", table.schema().quoted());
            sqlx::raw_sql(AssertSqlSafe(create))
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
    tx.commit().await.map_err(fail)
}
