//! A fenced UPDATE rejecting a stale token.
//!
//! ```sh
//! FENCELOCK_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run -p fencelock-postgres --example pg_fenced_update
//! ```
//!
//! Worker A takes the lock with a short TTL and "pauses" past it; worker B takes the lock over
//! with a larger token and writes. When A wakes up and writes with its old token, the fenced
//! UPDATE changes nothing and reports `StaleToken` naming both tokens; so does the key/value
//! fence (`PgFence`).

use std::time::Duration;

use fencelock_core::{Error, Fence, LeaseStore, LockName};
use fencelock_postgres::sqlx::{self, AssertSqlSafe};
use fencelock_postgres::{FencedTable, PgLeaseStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("FENCELOCK_POSTGRES_URL")
        .map_err(|_| "set FENCELOCK_POSTGRES_URL=postgres://user@host:port/db")?;
    let store = PgLeaseStore::connect(&url).await?;
    let pool = store.pool().clone();

    // The downstream table: every row carries the token of its last writer.
    sqlx::raw_sql(AssertSqlSafe(
        "CREATE TABLE IF NOT EXISTS fencelock_example_accounts (
             id bigint PRIMARY KEY,
             balance bigint NOT NULL,
             fence_token bigint NOT NULL DEFAULT 0);
         INSERT INTO fencelock_example_accounts (id, balance) VALUES (1, 100)
             ON CONFLICT (id) DO NOTHING;",
    ))
    .execute(&pool)
    .await?;
    let accounts = FencedTable::new("public", "fencelock_example_accounts", "id")?;
    let name = LockName::new("example/account-1")?;

    // Worker A gets the lock, then stalls past its TTL (a GC pause, a slow disk…).
    let a = store
        .try_acquire(&name, Duration::from_millis(200))
        .await?
        .ok_or("the lock is held by someone else; try again in a moment")?;
    println!("A holds `{name}` with token {}", a.token());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Worker B takes the expired lock over and writes with its larger token.
    let b = store
        .try_acquire(&name, Duration::from_secs(30))
        .await?
        .ok_or("expected the lock to be free after A's TTL")?;
    println!("B holds `{name}` with token {}", b.token());
    let mut conn = pool.acquire().await?;
    accounts
        .update(&mut conn, 1_i64, b.token(), "balance = balance + $3", |q| {
            q.bind(10_i64)
        })
        .await?;
    println!("B's write with token {} was accepted", b.token());

    // A wakes up and writes with its stale token: rejected, nothing changes.
    match accounts
        .update(&mut conn, 1_i64, a.token(), "balance = $3", |q| {
            q.bind(0_i64)
        })
        .await
    {
        Err(err @ Error::StaleToken { .. }) => println!("A's write was rejected: {err}"),
        Ok(rows) => return Err(format!("a stale write went through ({rows} rows)").into()),
        Err(other) => return Err(other.into()),
    }
    let (balance, token): (i64, i64) =
        sqlx::query_as("SELECT balance, fence_token FROM fencelock_example_accounts WHERE id = 1")
            .fetch_one(&pool)
            .await?;
    println!("row 1: balance {balance}, last written with token {token}");

    // The same rule as a key/value fence (the `Fence` every backend has): no table of yours
    // needed. `store.fence()` creates `fencelock_fences` if missing.
    let fence = store.fence().await?;
    let key = format!("example/account-1/{}", b.token());
    fence.write(&key, b.token(), b"balance 110").await?;
    match fence.write(&key, a.token(), b"balance 0").await {
        Err(err @ Error::StaleToken { .. }) => println!("A's fenced write was rejected: {err}"),
        other => return Err(format!("expected StaleToken, got {other:?}").into()),
    }
    let kept = fence
        .read(&key)
        .await?
        .ok_or("the fenced value is missing")?;
    println!(
        "`{key}` = {:?} (token {})",
        String::from_utf8_lossy(&kept.value),
        kept.token
    );

    store.release(&b).await?;
    Ok(())
}
