//! Fenced writes into rows of your own tables: the token check and the write are one
//! statement.

use std::fmt;

use fencelock_core::{Error, FencingToken, Operation};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Encode, PgConnection, Postgres, Type};

use crate::classify::{STORE, classify};
use crate::{Ident, TableName};

/// A query of the fenced-update helper, to which the caller binds its own `$3`, `$4`, ….
pub type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// A downstream table whose rows carry the fencing token of their last writer.
///
/// [`FencedTable::update`] runs
/// `UPDATE t SET <your assignments>, fence_token = $2 WHERE key = $1 AND fence_token <= $2`,
/// so a write with a token lower than the row's last accepted token changes nothing, in the
/// same atomic step that would have written it. Equal tokens are admitted (one holder writes
/// many times). A rejected write is reported as [`Error::StaleToken`] with both tokens.
///
/// This is the SQL-level sibling of [`PgFence`](crate::PgFence) (a key/value table of ours):
/// the same rule and the same argument order (key, token, what to write), on rows and columns
/// of yours.
///
/// The table needs a token column, e.g.
/// `ALTER TABLE accounts ADD COLUMN fence_token bigint NOT NULL DEFAULT 0`
/// (a `NULL` token counts as "never fenced" and admits any write).
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool, token: fencelock_core::FencingToken) -> Result<(), fencelock_core::Error> {
/// use fencelock_postgres::FencedTable;
///
/// let accounts = FencedTable::new("public", "accounts", "id")?;
/// let mut conn = pool.acquire().await.unwrap();
/// let rows = accounts
///     .update(&mut conn, 42_i64, token, "balance = balance + $3", |q| q.bind(100_i64))
///     .await?; // Err(StaleToken) if a newer holder already wrote row 42
/// assert!(rows <= 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencedTable {
    table: TableName,
    key: Ident,
    fence: Ident,
}

impl FencedTable {
    /// The default name of the token column.
    pub const DEFAULT_FENCE_COLUMN: &str = "fence_token";

    /// The table `schema.table`, whose rows are addressed by `key_column`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when a name is not a plain identifier.
    pub fn new(schema: &str, table: &str, key_column: &str) -> Result<Self, Error> {
        Ok(Self {
            table: TableName::new(schema, table)?,
            key: Ident::new("key column", key_column)?,
            fence: Ident::new("fence column", Self::DEFAULT_FENCE_COLUMN)?,
        })
    }

    /// Uses `column` for the token instead of `fence_token`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `column` is not a plain identifier.
    pub fn with_fence_column(mut self, column: &str) -> Result<Self, Error> {
        self.fence = Ident::new("fence column", column)?;
        Ok(self)
    }

    /// The statement [`FencedTable::update`] runs for the assignments `set`:
    /// `$1` is the key, `$2` the token, and `set` may use `$3` onwards.
    pub fn update_sql(&self, set: &str) -> String {
        format!(
            "UPDATE {table} SET {set}, {fence} = $2 WHERE {key} = $1 AND ({fence} IS NULL OR {fence} <= $2)",
            table = self.table.quoted(),
            fence = self.fence.quoted(),
            key = self.key.quoted(),
        )
    }

    /// Writes the row `key` with `token` if no higher token has written it.
    ///
    /// `set` is your assignment list (`"balance = $3, note = $4"`, written by you, not by your
    /// users); `bind` binds `$3` onwards. Run it on the transaction that holds your other
    /// writes (`&mut *tx`), or on any connection.
    ///
    /// Returns the number of rows written: 0 if no row has that key.
    ///
    /// # Errors
    /// [`Error::StaleToken`] naming the presented and the stored token when the row was
    /// already written with a higher token; driver errors classified as for the lease store.
    pub async fn update<'q, K>(
        &self,
        conn: &mut PgConnection,
        key: K,
        token: FencingToken,
        set: &str,
        bind: impl FnOnce(PgQuery<'q>) -> PgQuery<'q>,
    ) -> Result<u64, Error>
    where
        K: Clone + fmt::Debug + Type<Postgres> + for<'e> Encode<'e, Postgres>,
    {
        let presented = i64::try_from(token.get()).map_err(|_| {
            Error::invalid(
                "fencing token",
                format!("{token} does not fit a bigint column"),
            )
        })?;
        let fail = |e| classify(Operation::FencedWrite, e);
        let update = sqlx::query(AssertSqlSafe(self.update_sql(set)))
            .bind(key.clone())
            .bind(presented);
        let written = bind(update)
            .execute(&mut *conn)
            .await
            .map_err(fail)?
            .rows_affected();
        if written > 0 {
            return Ok(written);
        }
        // Nothing written: either no such row, or a higher token holds it. Read which, so the
        // error can name both tokens.
        let stored: Option<Option<i64>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {fence} FROM {table} WHERE {key} = $1",
            fence = self.fence.quoted(),
            table = self.table.quoted(),
            key = self.key.quoted(),
        )))
        .bind(key.clone())
        .fetch_optional(&mut *conn)
        .await
        .map_err(fail)?;
        match stored.flatten() {
            Some(high) if high > presented => {
                fencelock_core::metrics::stale_write_rejected(STORE);
                Err(Error::StaleToken {
                    resource: format!("{} row {} = {key:?}", self.table, self.key),
                    presented: token,
                    high_water: FencingToken::new(high.unsigned_abs()),
                })
            }
            _ => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencelock_core::ErrorKind;

    #[test]
    fn builds_the_fenced_update() {
        let t = FencedTable::new("public", "accounts", "id").unwrap();
        assert_eq!(
            t.update_sql("balance = $3"),
            "UPDATE \"public\".\"accounts\" SET balance = $3, \"fence_token\" = $2 WHERE \"id\" = $1 AND (\"fence_token\" IS NULL OR \"fence_token\" <= $2)"
        );
        let t = t.with_fence_column("Fence").unwrap();
        assert!(t.update_sql("v = $3").contains("\"Fence\" = $2"));
    }

    #[test]
    fn hostile_identifiers_are_rejected() {
        for (schema, table, key) in [
            ("public", "accounts; DROP TABLE x", "id"),
            ("public", "accounts", "id = id OR true --"),
            ("pub\"lic", "accounts", "id"),
        ] {
            let err = FencedTable::new(schema, table, key).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
        let t = FencedTable::new("public", "accounts", "id").unwrap();
        assert!(t.with_fence_column("x y").is_err());
    }
}
