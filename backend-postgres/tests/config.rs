//! Configuration and setup: hostile identifiers and option values, a config from a file,
//! odd-but-valid identifiers, concurrent first connects, bad URLs, an unreachable server, a
//! missing table, and the token ceiling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::{ErrorKind, FencingToken, LeaseStore, LockName, OwnerLabel, PermitLimit};
use fencelock_postgres::sqlx::{self, AssertSqlSafe};
use fencelock_postgres::{PgConfig, PgLeaseStore};

#[tokio::test]
async fn hostile_identifiers_are_rejected_before_anything_is_sent() {
    // Nothing listens here; validation must fail first.
    let url = "postgres://nobody@127.0.0.1:1/none";
    let hostile = [
        "leases; DROP TABLE users; --",
        "leases\" CASCADE; --",
        "public.leases",
        "leases'",
        "",
        "1leases",
        "lëases",
        &"x".repeat(64),
    ];
    for bad in hostile {
        for builder in [
            PgLeaseStore::builder().with_table(bad),
            PgLeaseStore::builder().with_schema(bad),
            PgLeaseStore::builder().with_channel(bad),
        ] {
            let err = builder.with_url(url).connect().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
        }
    }
}

#[tokio::test]
async fn bad_option_values_are_rejected_before_anything_is_sent() {
    let url = "postgres://nobody@127.0.0.1:1/none";
    let builders = [
        PgLeaseStore::builder().with_max_ttl(Duration::ZERO),
        PgLeaseStore::builder().with_max_ttl(Duration::from_secs(20 * 365 * 86_400)),
        PgLeaseStore::builder().with_op_timeout(Duration::ZERO),
        PgLeaseStore::builder().with_op_timeout(Duration::from_secs(2 * 86_400)),
        PgLeaseStore::builder().with_connect_timeout(Duration::ZERO),
        PgLeaseStore::builder().with_max_connections(0),
        PgLeaseStore::builder().with_listen_url("mysql://x@y/z"),
    ];
    for builder in builders {
        let shown = format!("{builder:?}");
        let err = builder.with_url(url).connect().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{shown}: {err}");
    }
    let err = PgLeaseStore::builder().connect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "no URL: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_from_a_file_connects_with_its_options() {
    let url = support::shared_url().await;
    let table = support::unique("from_file");
    let config: PgConfig = serde_json::from_str(&format!(
        r#"{{"url": "{url}", "schema": "fencelock_test", "table": "{table}",
             "max_ttl_ms": 60000, "push_wakeups": false}}"#
    ))
    .unwrap();
    let store = PgLeaseStore::from_config(config).await.unwrap();
    assert_eq!(
        store.table().quoted(),
        format!("\"fencelock_test\".\"{table}\"")
    );
    assert_eq!(store.ttl_limits().max(), Duration::from_secs(60));
    let name = LockName::new("from-file").unwrap();
    assert!(
        store.watch_released(&name).await.unwrap().is_none(),
        "polls"
    );
    let err = store
        .try_acquire(&name, Duration::from_secs(61))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_typed() {
    for bad in [
        "not a url",
        "mysql://x@y/z",
        "postgres://x@host:notaport/db",
    ] {
        let err = PgLeaseStore::connect(bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
    }
    let port = fencelock_conformance::harness::free_port().unwrap();
    let err = PgLeaseStore::builder()
        .with_url(format!(
            "postgres://postgres:secret@127.0.0.1:{port}/postgres"
        ))
        .with_connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_identifiers_round_trip_exactly() {
    let url = support::shared_url().await;
    let schema = support::unique("Fl_Schema");
    let store = PgLeaseStore::builder()
        .with_schema(&schema)
        .with_table("user") // a keyword, and
        .with_channel("Select") // mixed case: both only work quoted
        .with_url(&url)
        .connect()
        .await
        .unwrap();
    let found: Option<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tablename = 'user'",
    )
    .bind(&schema)
    .fetch_optional(store.pool())
    .await
    .unwrap();
    assert_eq!(
        found.as_deref(),
        Some("user"),
        "created with the exact case"
    );
    let name = LockName::new("'; DROP TABLE \"user\"; --").unwrap();
    let mut watch = store.watch_released(&name).await.unwrap().unwrap();
    let lease = store
        .try_acquire(&name, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.inspect(&name).await.unwrap().unwrap().token,
        lease.token()
    );
    store.release(&lease).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), watch.notified())
            .await
            .unwrap(),
        "NOTIFY on a mixed-case channel reaches the listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_do_not_race() {
    let url = support::shared_url().await;
    let table = support::unique("race");
    let connects = (0..8).map(|_| {
        let (url, table) = (url.clone(), table.clone());
        tokio::spawn(async move {
            PgLeaseStore::builder()
                .with_url(&url)
                .with_schema("fencelock_test")
                .with_table(table)
                .with_max_connections(2)
                .connect()
                .await
        })
    });
    for store in futures::future::join_all(connects).await {
        let store = store.unwrap().unwrap();
        store.migrate().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_without_migration_is_a_backend_error_until_migrated() {
    let url = support::shared_url().await;
    let pool = support::admin_pool(&url).await;
    let store = PgLeaseStore::builder()
        .with_schema("fencelock_test")
        .with_table(support::unique("unmigrated"))
        .with_migrate_on_connect(false)
        .from_pool(pool)
        .await
        .unwrap();
    let name = LockName::new("x").unwrap();
    let err = store
        .try_acquire(&name, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert!(
        store
            .try_acquire(&name, Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_table_from_before_labels_gains_the_label_column_and_keeps_its_rows() {
    let url = support::shared_url().await;
    let pool = support::admin_pool(&url).await;
    let table = support::unique("prelabel");
    // A schema of its own: a bare `CREATE SCHEMA IF NOT EXISTS` racing another test's
    // migration of a shared schema can fail on the catalog's unique index (the migration
    // itself serializes on an advisory lock; this hand-made "old release" table does not).
    let schema = format!("{table}_schema");
    // The table as the first release created it: no label column, one live grant.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.{table} (
             name text COLLATE \"C\" PRIMARY KEY, holder uuid,
             token bigint NOT NULL, expires_at timestamptz NOT NULL);
         INSERT INTO {schema}.{table}
             VALUES ('old', gen_random_uuid(), 41, clock_timestamp() + interval '1 hour')"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let store = PgLeaseStore::builder()
        .with_schema(&schema)
        .with_table(&table)
        .from_pool(pool)
        .await
        .unwrap();
    let old = LockName::new("old").unwrap();
    let info = store.inspect(&old).await.unwrap().unwrap();
    assert_eq!((info.token, info.label), (FencingToken::new(41), None));
    let label = OwnerLabel::new("after the upgrade").unwrap();
    let name = LockName::new("new").unwrap();
    let lease = store
        .try_acquire_as(&name, Duration::from_secs(5), Some(&label))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.label(), Some(&label));
    let info = store.inspect(&name).await.unwrap().unwrap();
    assert_eq!(info.label, Some(label));
    store.migrate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_ceiling_is_an_error_never_a_wrap() {
    let url = support::shared_url().await;
    let store = support::store_on(&url, "ceiling_leases").await;
    let name = LockName::new(support::unique("ceiling")).unwrap();
    let lease = store
        .try_acquire(&name, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    store.release(&lease).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET token = $1 WHERE name = $2",
        store.table().quoted()
    )))
    .bind(FencingToken::MAX_EXACT as i64)
    .bind(name.as_str())
    .execute(store.pool())
    .await
    .unwrap();
    let err = store
        .try_acquire(&name, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains("exhausted"), "{err}");
    assert!(
        store.inspect(&name).await.unwrap().is_none(),
        "nothing granted"
    );
}

#[test]
fn config_debug_hides_the_password() {
    let config = PgConfig::new("postgres://app:hunter2@db/app");
    assert!(!format!("{config:?}").contains("hunter2"));
}

/// The schema and lease table as the version before semaphores created them (labels, no
/// semaphore tables). A schema of each test's own, as for the pre-label table above.
fn lease_table_before_semaphores(schema: &str, table: &str) -> String {
    format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.{table} (
             name text COLLATE \"C\" PRIMARY KEY, holder uuid,
             token bigint NOT NULL
                 CONSTRAINT fencelock_token_range CHECK (token BETWEEN 1 AND 9007199254740991),
             expires_at timestamptz NOT NULL, label text);"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_semaphores_gains_the_permit_tables_and_keeps_its_leases() {
    let url = support::shared_url().await;
    let pool = support::admin_pool(&url).await;
    let table = support::unique("presem");
    let schema = format!("{table}_schema");
    // With one live grant.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "{}
         INSERT INTO {schema}.{table}
             VALUES ('old', gen_random_uuid(), 41, clock_timestamp() + interval '1 hour', 'v1')",
        lease_table_before_semaphores(&schema, &table)
    )))
    .execute(&pool)
    .await
    .unwrap();
    let exists = |relation: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                .bind(relation)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let permits = format!("\"{schema}\".\"{table}_permits\"");
    let semaphores = format!("\"{schema}\".\"{table}_semaphores\"");
    assert!(!exists(permits.clone()).await, "no permit table yet");
    let store = PgLeaseStore::builder()
        .with_schema(&schema)
        .with_table(&table)
        .from_pool(pool.clone())
        .await
        .unwrap();
    assert_eq!(store.permit_table().quoted(), permits);
    assert_eq!(store.semaphore_table().quoted(), semaphores);
    assert!(
        exists(permits).await,
        "the migration created the permit table"
    );
    assert!(exists(semaphores).await, "and the semaphore table");
    // The old grant is untouched, and its name is free for a semaphore of its own.
    let old = LockName::new("old").unwrap();
    let info = store.inspect(&old).await.unwrap().unwrap();
    assert_eq!(info.token, FencingToken::new(41));
    assert_eq!(
        info.label.map(|l| l.as_str().to_owned()).as_deref(),
        Some("v1")
    );
    let limit = PermitLimit::new(2).unwrap();
    let permit = store
        .try_acquire_permit(&old, limit, Duration::from_secs(5), None)
        .await
        .unwrap()
        .expect("the semaphore `old` is free although the lock `old` is held");
    assert_eq!(permit.permit_limit(), Some(limit));
    store.migrate().await.unwrap();
    let held = store.inspect_permits(&old).await.unwrap();
    assert_eq!(
        held.holders.len(),
        1,
        "a second migration keeps the permits"
    );
    store.release(&permit).await.unwrap();
    assert_eq!(
        store.inspect(&old).await.unwrap().map(|i| i.token),
        Some(FencingToken::new(41)),
        "the lock of the same name was never touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_table_of_the_longest_name_has_permit_tables_too() {
    let url = support::shared_url().await;
    // 63 bytes: `<table>_permits` would be cut by PostgreSQL; the store derives a shorter one.
    let base = support::unique("longest");
    let table = format!("{base}{}", "x".repeat(63 - base.len()));
    assert_eq!(table.len(), 63);
    let store = support::store_on(&url, &table).await;
    for derived in [store.semaphore_table(), store.permit_table()] {
        assert!(derived.table().as_str().len() <= 63, "{derived}");
    }
    assert_ne!(store.semaphore_table(), store.permit_table());
    let name = LockName::new("long").unwrap();
    let limit = PermitLimit::new(1).unwrap();
    let permit = store
        .try_acquire_permit(&name, limit, Duration::from_secs(5), None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .try_acquire_permit(&name, limit, Duration::from_secs(5), None)
            .await
            .unwrap()
            .is_none(),
        "the limit of 1 holds"
    );
    store.release(&permit).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_create_still_connects_to_a_database_from_before_semaphores() {
    use fencelock_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    let url = support::shared_url().await;
    let admin = support::admin_pool(&url).await;
    let table = support::unique("nocreate");
    let schema = format!("{table}_schema");
    let role = format!("{table}_role");
    // An administrator made the lease table (as the version before semaphores did) and a role
    // that may use it, but not create anything in the schema.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "{}
         CREATE ROLE {role} LOGIN PASSWORD 'fencelock';
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT, INSERT, UPDATE ON {schema}.{table} TO {role};",
        lease_table_before_semaphores(&schema, &table)
    )))
    .execute(&admin)
    .await
    .unwrap();
    let options = url
        .parse::<PgConnectOptions>()
        .unwrap()
        .username(&role)
        .password("fencelock");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    let store = PgLeaseStore::builder()
        .with_schema(&schema)
        .with_table(&table)
        .from_pool(pool)
        .await
        .expect("a lock-only role connects although it may not create the semaphore tables");
    let name = LockName::new("n").unwrap();
    let lease = store
        .try_acquire(&name, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("locks work as before");
    store.release(&lease).await.unwrap();
    let limit = PermitLimit::new(2).unwrap();
    let err = store
        .try_acquire_permit(&name, limit, Duration::from_secs(5), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    // The administrator runs the migration once and lets the role use the new tables.
    let upgraded = PgLeaseStore::builder()
        .with_schema(&schema)
        .with_table(&table)
        .from_pool(admin.clone())
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {}, {} TO {role}",
        upgraded.semaphore_table().quoted(),
        upgraded.permit_table().quoted()
    )))
    .execute(&admin)
    .await
    .unwrap();
    let permit = store
        .try_acquire_permit(&name, limit, Duration::from_secs(5), None)
        .await
        .unwrap()
        .expect("semaphores work once the tables exist");
    store.release(&permit).await.unwrap();
    store.pool().close().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA {schema} CASCADE; DROP ROLE {role};"
    )))
    .execute(&admin)
    .await
    .unwrap();
}
