//! What `PgFence` adds to the fence tier: its table (created idempotently, next to the lease
//! table or where you name it, a plain table you can query), keys a `text` cannot hold, and
//! its two ways of sending statements (values inline, the default; named prepared statements).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fencelock_core::{ErrorKind, Fence, FencedValue, FencingToken};
use fencelock_postgres::sqlx::{self, AssertSqlSafe};
use fencelock_postgres::{PgFence, TableName};
use futures::future::join_all;

fn t(n: u64) -> FencingToken {
    FencingToken::new(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_table_is_created_once_and_is_plain_sql() {
    let url = support::shared_url().await;
    let pool = support::admin_pool(&url).await;
    let schema = support::unique("fence_schema");
    let table = TableName::new(&schema, "values").unwrap();
    let fences: Vec<PgFence> = (0..4)
        .map(|_| PgFence::new(pool.clone(), table.clone()))
        .collect();
    // Concurrent first migrations of a new schema serialize instead of failing.
    for result in join_all(fences.iter().map(PgFence::migrate)).await {
        result.unwrap();
    }
    fences[0].migrate().await.unwrap();
    let fence = &fences[1];
    fence.write("report", t(7), b"\0binary\xff").await.unwrap();
    let (value, token): (Vec<u8>, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT value, fence_token FROM \"{schema}\".\"values\" WHERE key = 'report'"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((value.as_slice(), token), (&b"\0binary\xff"[..], 7));
    assert_eq!(
        fences[2].read("report").await.unwrap(),
        Some(FencedValue::new(b"\0binary\xff".to_vec(), t(7)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_puts_its_fence_next_to_the_lease_table() {
    let url = support::shared_url().await;
    let store = support::store_on(&url, "fence_store_leases").await;
    let fence = store.fence().await.unwrap();
    assert_eq!(
        fence.table(),
        &TableName::new("fencelock_test", PgFence::DEFAULT_TABLE).unwrap()
    );
    let key = support::unique("store-fence");
    fence.write(&key, t(3), b"v").await.unwrap();
    let again = store.fence().await.unwrap();
    assert_eq!(
        again.read(&key).await.unwrap(),
        Some(FencedValue::new(b"v".to_vec(), t(3)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_a_text_cannot_hold_are_invalid_input() {
    let url = support::shared_url().await;
    let store = support::store_on(&url, "fence_store_leases").await;
    let fence = store.fence().await.unwrap();
    let long = "k".repeat(PgFence::MAX_KEY_LEN + 1);
    for key in ["", "nul\0byte", long.as_str()] {
        let err = fence.write(key, t(1), b"v").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{key:?}: {err}");
        let err = fence.read(key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{key:?}: {err}");
    }
    let err = fence.write("k", t(u64::MAX), b"v").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let longest = "k".repeat(PgFence::MAX_KEY_LEN);
    fence.write(&longest, t(1), b"fits").await.unwrap();
    assert!(fence.read(&longest).await.unwrap().is_some());
}

/// Values inline (the default, pooler-safe) and named prepared statements (the store's
/// `with_prepared_statements(true)`) write and read the same rows: hostile keys and binary
/// values round-trip either way, and a stale write is rejected either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_prepared_fences_agree() {
    let url = support::shared_url().await;
    let inline = support::store_on(&url, "fence_store_leases")
        .await
        .fence()
        .await
        .unwrap();
    let prepared_store = fencelock_postgres::PgLeaseStore::builder()
        .with_url(&url)
        .with_schema("fencelock_test")
        .with_table("fence_store_leases")
        .with_prepared_statements(true)
        .connect()
        .await
        .unwrap();
    let prepared = prepared_store.fence().await.unwrap();
    assert!(format!("{inline:?}").contains("Inline"), "{inline:?}");
    assert!(format!("{prepared:?}").contains("Prepared"), "{prepared:?}");
    let hostile = support::unique("'); DROP TABLE x; -- $1 \\ ü");
    let value = b"\0'\\x00\xff$1".to_vec();
    for (i, (writer, reader)) in [(&inline, &prepared), (&prepared, &inline)]
        .into_iter()
        .enumerate()
    {
        let key = format!("{hostile}/{i}");
        writer.write(&key, t(5), &value).await.unwrap();
        assert_eq!(
            reader.read(&key).await.unwrap(),
            Some(FencedValue::new(value.clone(), t(5)))
        );
        let err = reader.write(&key, t(4), b"stale").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StaleToken, "{err}");
        reader.write(&key, t(5), b"").await.unwrap();
        assert_eq!(
            writer.read(&key).await.unwrap(),
            Some(FencedValue::new(Vec::new(), t(5)))
        );
    }
}

#[test]
fn hostile_table_names_are_invalid_input() {
    for (schema, table) in [
        ("public", "fences; DROP TABLE x"),
        ("pub\"lic", "fences"),
        ("public", ""),
    ] {
        let err = TableName::new(schema, table).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
