//! The PostgreSQL oracle: a counter row written through `FencedTable`, and a log of every
//! admitted operation in commit order.

use fencelock::postgres::FencedTable;
use fencelock::postgres::sqlx::{self, PgPool, postgres::PgPoolOptions};
use fencelock::{Error, FencingToken, Operation};
use fencelock_conformance::history::{Op, OracleLog, OracleOp};

/// The SQL that creates the oracle tables.
const SCHEMA: &str = include_str!("sql/oracle_schema.sql");

/// The counter table and its log, in one database.
#[derive(Clone, Debug)]
pub struct PgOracle {
    pool: PgPool,
    table: FencedTable,
}

/// What the fence said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted; the value read or written.
    Admitted(u64),
    /// Rejected with the row's mark.
    Rejected(u64),
}

impl PgOracle {
    /// Connects (a small pool).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
        let table = FencedTable::new("public", "torture_counter", "id")
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        Ok(Self { pool, table })
    }

    /// Creates the tables with the counter at 0.
    ///
    /// # Errors
    /// SQL errors.
    pub async fn create(&self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&self.pool).await?;
        Ok(())
    }

    /// A fenced read: a no-op fenced update raises the mark, then the value is read, and the
    /// read is logged, all in one transaction.
    ///
    /// # Errors
    /// Driver errors (outcome unknown to the worker).
    pub async fn read(&self, worker: u32, token: u64) -> Result<Outcome, Error> {
        self.fenced(worker, token, Op::Read, "value = value", 0)
            .await
    }

    /// A fenced write of `value`, logged in the same transaction.
    ///
    /// # Errors
    /// Driver errors (outcome unknown to the worker).
    pub async fn write(&self, worker: u32, token: u64, value: u64) -> Result<Outcome, Error> {
        self.fenced(worker, token, Op::Write, "value = $3", value)
            .await
    }

    async fn fenced(
        &self,
        worker: u32,
        token: u64,
        op: Op,
        set: &str,
        value: u64,
    ) -> Result<Outcome, Error> {
        let backend = |e: sqlx::Error| Error::backend("postgres oracle", Operation::FencedWrite, e);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let bound = i64::try_from(value).unwrap_or(i64::MAX);
        let written = self
            .table
            .update(&mut tx, 1_i64, FencingToken::new(token), set, |q| {
                if op == Op::Write { q.bind(bound) } else { q }
            })
            .await;
        match written {
            Ok(_) => {}
            Err(Error::StaleToken { high_water, .. }) => {
                return Ok(Outcome::Rejected(high_water.get()));
            }
            Err(e) => return Err(e),
        }
        let now: i64 = sqlx::query_scalar("SELECT value FROM torture_counter WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO torture_log (op, worker, token) VALUES ($1, $2, $3)")
            .bind(if op == Op::Write { "write" } else { "read" })
            .bind(i64::from(worker))
            .bind(i64::try_from(token).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Outcome::Admitted(now.unsigned_abs()))
    }

    /// The admitted operations in commit order, and the final counter.
    ///
    /// # Errors
    /// SQL errors.
    pub async fn log(&self) -> Result<OracleLog, sqlx::Error> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT op, worker, token FROM torture_log ORDER BY seq")
                .fetch_all(&self.pool)
                .await?;
        let final_value: i64 = sqlx::query_scalar("SELECT value FROM torture_counter WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let ops = rows
            .into_iter()
            .map(|(op, worker, token)| OracleOp {
                op: if op == "write" { Op::Write } else { Op::Read },
                worker: u32::try_from(worker).unwrap_or(u32::MAX),
                token: token.unsigned_abs(),
                accepted: true,
                high_water: None,
                slot: None,
            })
            .collect();
        Ok(OracleLog {
            ops,
            rejections_in_order: false,
            final_value: final_value.unsigned_abs(),
        })
    }
}
