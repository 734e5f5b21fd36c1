//! Fenced SQL: the fenced UPDATE rejects stale tokens, and `verify` inside the caller's
//! transaction makes "lease still held" and the data write commit together.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::{Error, ErrorKind, FencingToken, LeaseStore, LockName, LossReason};
use fencelock_postgres::sqlx::{self, AssertSqlSafe, PgPool};
use fencelock_postgres::{FencedTable, PgLeaseStore};

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(60);

/// A fresh `accounts` table with one row (`id` 1, balance 100, never fenced).
async fn accounts(pool: &PgPool) -> (String, FencedTable) {
    let table = support::unique("accounts");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE public.{table} (
             id bigint PRIMARY KEY,
             balance bigint NOT NULL,
             fence_token bigint NOT NULL DEFAULT 0);
         INSERT INTO public.{table} (id, balance) VALUES (1, 100);"
    )))
    .execute(pool)
    .await
    .unwrap();
    let fenced = FencedTable::new("public", &table, "id").unwrap();
    (table, fenced)
}

async fn balance(pool: &PgPool, table: &str) -> (i64, i64) {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT balance, fence_token FROM public.{table} WHERE id = 1"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `old` expired and `new` took the lock over.
async fn taken_over(
    store: &PgLeaseStore,
    name: &LockName,
) -> (fencelock_core::Lease, fencelock_core::Lease) {
    let old = store.try_acquire(name, SHORT).await.unwrap().unwrap();
    tokio::time::sleep(SHORT * 5 / 2).await;
    let new = store.try_acquire(name, LONG).await.unwrap().unwrap();
    assert!(new.token() > old.token());
    (old, new)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_update_rejects_a_stale_token_and_names_both() {
    let url = support::shared_url().await;
    let pool = support::admin_pool(&url).await;
    let store = support::store_on(&url, "fencing_leases").await;
    let (table, fenced) = accounts(&pool).await;
    let name = LockName::new(support::unique("fence/update")).unwrap();
    let (old, new) = taken_over(&store, &name).await;
    let mut conn = pool.acquire().await.unwrap();

    let rows = fenced
        .update(&mut conn, 1_i64, new.token(), "balance = $3", |q| {
            q.bind(200_i64)
        })
        .await
        .unwrap();
    assert_eq!(rows, 1);
    // The same holder writes again with the same token: admitted.
    fenced
        .update(
            &mut conn,
            1_i64,
            new.token(),
            "balance = balance + $3",
            |q| q.bind(1_i64),
        )
        .await
        .unwrap();
    assert_eq!(
        balance(&pool, &table).await,
        (201, new.token().get() as i64)
    );

    let err = fenced
        .update(&mut conn, 1_i64, old.token(), "balance = $3", |q| {
            q.bind(-1_i64)
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StaleToken);
    match &err {
        Error::StaleToken {
            presented,
            high_water,
            resource,
        } => {
            assert_eq!(*presented, old.token());
            assert_eq!(*high_water, new.token());
            assert!(resource.contains(&table), "{resource}");
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(
        shown.contains(&old.token().to_string()) && shown.contains(&new.token().to_string()),
        "{shown}"
    );
    assert_eq!(
        balance(&pool, &table).await,
        (201, new.token().get() as i64),
        "stale write changed nothing"
    );

    // No such row: nothing written, not an error.
    let rows = fenced
        .update(&mut conn, 2_i64, new.token(), "balance = $3", |q| {
            q.bind(5_i64)
        })
        .await
        .unwrap();
    assert_eq!(rows, 0);
    store.release(&new).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_rejects_a_taken_over_lease_and_the_write_does_not_commit() {
    let url = support::shared_url().await;
    let pool = support::admin_pool(&url).await;
    let store = support::store_on(&url, "fencing_leases").await;
    let (table, _) = accounts(&pool).await;
    let name = LockName::new(support::unique("fence/verify")).unwrap();
    let (old, new) = taken_over(&store, &name).await;

    // The stale holder writes, then checks its lease in the same transaction, as it should.
    let outcome: Result<(), Error> = async {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE public.{table} SET balance = 0 WHERE id = 1"
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        store.verify(&old, &mut tx).await?;
        tx.commit().await.unwrap();
        Ok(())
    }
    .await;
    let err = outcome.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost);
    match err {
        Error::LeaseLost { reason, token, .. } => {
            assert_eq!(token, old.token());
            assert_eq!(reason, LossReason::Superseded { by: new.token() });
        }
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert_eq!(
        balance(&pool, &table).await.0,
        100,
        "the write did not commit"
    );

    // The current holder's check passes and its write commits.
    let mut tx = pool.begin().await.unwrap();
    store.verify(&new, &mut tx).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE public.{table} SET balance = 7 WHERE id = 1"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(balance(&pool, &table).await.0, 7);

    // Released and expired leases fail the check too.
    store.release(&new).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let err = store.verify(&new, &mut tx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost);
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let never = LockName::new(support::unique("fence/never")).unwrap();
    let ghost = fencelock_core::backend::granted_lease(
        never,
        FencingToken::new(1),
        fencelock_core::HolderId::random(),
        LONG,
        tokio::time::Instant::now(),
    );
    assert_eq!(
        store.verify(&ghost, &mut tx).await.unwrap_err().kind(),
        ErrorKind::LeaseLost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_lease_cannot_be_taken_over_before_the_transaction_ends() {
    let url = support::shared_url().await;
    let pool = support::admin_pool(&url).await;
    let store = support::store_on(&url, "fencing_leases").await;
    let rival = support::store_on(&url, "fencing_leases").await;
    let (table, _) = accounts(&pool).await;
    let name = LockName::new(support::unique("fence/hold")).unwrap();
    let lease = store.try_acquire(&name, SHORT).await.unwrap().unwrap();

    let mut tx = pool.begin().await.unwrap();
    store.verify(&lease, &mut tx).await.unwrap();
    // The lease expires by the clock while the transaction is open; a rival's takeover waits
    // for the row lock instead of slipping in between the check and the commit.
    tokio::time::sleep(SHORT * 2).await;
    let takeover = {
        let (rival, name) = (rival.clone(), name.clone());
        tokio::spawn(async move { rival.try_acquire(&name, LONG).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !takeover.is_finished(),
        "the takeover must wait for the verifying transaction"
    );
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE public.{table} SET balance = 1, fence_token = $1 WHERE id = 1"
    )))
    .bind(lease.token().get() as i64)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let next = takeover
        .await
        .unwrap()
        .unwrap()
        .expect("free once the transaction ended");
    assert!(next.token() > lease.token());
    assert_eq!(
        balance(&pool, &table).await,
        (1, lease.token().get() as i64)
    );
    rival.release(&next).await.unwrap();
}
