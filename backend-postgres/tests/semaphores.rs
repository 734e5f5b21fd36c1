//! Semaphores on PostgreSQL beyond the conformance cases: grants racing for the last places, a
//! renewal in flight when a grant sweeps expired permits, a `renew_many` batch mixing locks and
//! permits, `verify` of a permit, hostile names and labels by both protocols, and the token
//! ceiling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use fencelock_core::backend::{granted_lease, permit};
use fencelock_core::{
    ErrorKind, FencingToken, HolderId, LeaseStore, LockName, OwnerLabel, PermitLimit,
};
use fencelock_postgres::PgLeaseStore;
use fencelock_postgres::sqlx::{self, AssertSqlSafe};
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(60);

fn limit(n: u32) -> PermitLimit {
    PermitLimit::new(n).unwrap()
}

/// Many grants at once from several stores (each with its own pool) on a fresh semaphore:
/// exactly `limit` win, each with its own token. A grant that counted the permits before it
/// waited for the semaphore's row would miss the permit the grant ahead of it inserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_grants_fill_exactly_the_limit() {
    let url = support::shared_url().await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(support::store_on(&url, "semaphore_leases").await);
    }
    for round in 0..3 {
        let name = LockName::new(support::unique(&format!("race/{round}"))).unwrap();
        let attempts = (0..24).map(|i| {
            let (store, name) = (stores[i % stores.len()].clone(), name.clone());
            async move { store.try_acquire_permit(&name, limit(3), LONG, None).await }
        });
        let answers = futures::future::join_all(attempts).await;
        let mut granted = Vec::new();
        let mut unknown = 0;
        for answer in answers {
            match answer {
                Ok(Some(lease)) => granted.push(lease),
                Ok(None) => {}
                // A grant whose reply was lost may hold a place: counted below, by the server.
                Err(e) if e.is_transient() => unknown += 1,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        let held = stores[0].inspect_permits(&name).await.unwrap();
        assert!(
            granted.len() <= 3 && held.holders.len() == 3,
            "round {round}: {} granted, {} held, {unknown} unknown: {held:?}",
            granted.len(),
            held.holders.len()
        );
        if unknown == 0 {
            assert_eq!(granted.len(), 3, "round {round}: a free place was refused");
        }
        let tokens: BTreeSet<_> = held.holders.iter().map(|h| h.token).collect();
        assert_eq!(tokens.len(), 3, "each permit has its own token");
        for lease in &granted {
            stores[0].release(lease).await.unwrap();
        }
    }
}

/// Waits until a backend of the server waits on a lock while running a statement on `table`.
async fn until_blocked_on(pool: &sqlx::PgPool, table: &str) {
    let started = Instant::now();
    loop {
        let (blocked,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity
              WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
        if blocked > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no statement on {table} ever waited for the renewal's row lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A renewal that reached the permit's row before its expiry, but commits only after a grant
/// began sweeping the expired permits: the grant waits for it and counts the permit as live
/// (limit 1: nothing granted). When the renewal rolls back instead, the permit expired and the
/// grant takes its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_in_flight_at_expiry_keeps_its_place() {
    let url = support::shared_url().await;
    let store = support::store_on(&url, "semaphore_leases").await;
    let admin = support::admin_pool(&url).await;
    let table = store.permit_table().quoted();
    for commit in [true, false] {
        let name = LockName::new(support::unique("inflight")).unwrap();
        let ttl = Duration::from_secs(1);
        let held = store
            .try_acquire_permit(&name, limit(1), ttl, None)
            .await
            .unwrap()
            .unwrap();
        // The renewal's UPDATE (as permit_renew.sql), its transaction left open.
        let mut renewal = admin.begin().await.unwrap();
        let renewed = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {table} SET expires_at = clock_timestamp() + interval '1 hour'
              WHERE name = $1 AND token = $2 AND expires_at > clock_timestamp()"
        )))
        .bind(name.as_str())
        .bind(i64::try_from(held.token().get()).unwrap())
        .execute(&mut *renewal)
        .await
        .unwrap();
        assert_eq!(
            renewed.rows_affected(),
            1,
            "the renewal must reach the permit within its 1 s TTL"
        );
        // Past the permit's old expiry by the server's clock (there is no event for it).
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        let grant = {
            let (store, name) = (store.clone(), name.clone());
            tokio::spawn(async move { store.try_acquire_permit(&name, limit(1), LONG, None).await })
        };
        until_blocked_on(&admin, store.permit_table().table().as_str()).await;
        assert!(!grant.is_finished(), "the grant waits for the renewal");
        if commit {
            renewal.commit().await.unwrap();
        } else {
            renewal.rollback().await.unwrap();
        }
        let granted = tokio::time::timeout(Duration::from_secs(20), grant)
            .await
            .expect("the grant goes on once the renewal ends")
            .unwrap()
            .unwrap();
        let shown = store.inspect_permits(&name).await.unwrap();
        if commit {
            assert!(
                granted.is_none(),
                "a renewed permit was counted as expired: {granted:?}"
            );
            assert_eq!(shown.holders.len(), 1);
            assert_eq!(shown.holders[0].token, held.token());
            store.release(&held).await.unwrap();
        } else {
            let granted = granted.expect("the permit expired: its place is free");
            assert!(granted.token() > held.token());
            assert_eq!(shown.holders.len(), 1);
            assert_eq!(shown.holders[0].token, granted.token());
            store.release(&granted).await.unwrap();
        }
    }
}

/// One `renew_many` batch with locks and permits (held, released, forged) answers each in
/// order, and renews exactly the held ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_many_mixes_locks_and_permits() {
    let url = support::shared_url().await;
    let store = support::store_on(&url, "semaphore_leases").await;
    let name = LockName::new(support::unique("mixed")).unwrap();
    let short = Duration::from_secs(5);
    let lock = store.try_acquire(&name, short).await.unwrap().unwrap();
    let a = store
        .try_acquire_permit(&name, limit(3), short, None)
        .await
        .unwrap()
        .unwrap();
    let b = store
        .try_acquire_permit(&name, limit(3), short, None)
        .await
        .unwrap()
        .unwrap();
    let gone = store
        .try_acquire_permit(&name, limit(3), short, None)
        .await
        .unwrap()
        .unwrap();
    store.release(&gone).await.unwrap();
    // `a`'s name and token with another holder: the lock's row and `a`'s row both refuse it.
    let forged = permit(
        granted_lease(
            name.clone(),
            a.token(),
            HolderId::random(),
            short,
            Instant::now(),
        ),
        limit(3),
    );
    let batch = [a.clone(), lock.clone(), gone.clone(), b.clone(), forged];
    let answers = store.renew_many(&batch, LONG).await;
    let kinds: Vec<_> = answers
        .iter()
        .map(|a| a.as_ref().map(|l| l.token()).map_err(|e| e.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            Ok(a.token()),
            Ok(lock.token()),
            Err(ErrorKind::LeaseLost),
            Ok(b.token()),
            Err(ErrorKind::LeaseLost),
        ]
    );
    let renewed = answers[0].as_ref().unwrap();
    assert_eq!(
        renewed.permit_limit(),
        Some(limit(3)),
        "a renewed permit stays a permit"
    );
    for info in store.inspect_permits(&name).await.unwrap().holders {
        assert!(
            info.remaining > short,
            "permit {} renewed to 60 s: {info:?}",
            info.token
        );
    }
    let lock_left = store.inspect(&name).await.unwrap().unwrap().remaining;
    assert!(lock_left > short, "the lock renewed to 60 s: {lock_left:?}");
    for lease in [&a, &b, &lock] {
        store.release(lease).await.unwrap();
    }
}

/// `verify` checks a permit on its own row: held is fine, released is `LeaseLost`, and the lock
/// of the same name does not stand in for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_a_permit_on_its_own_row() {
    let url = support::shared_url().await;
    let store = support::store_on(&url, "semaphore_leases").await;
    let name = LockName::new(support::unique("verify")).unwrap();
    let lock = store.try_acquire(&name, LONG).await.unwrap().unwrap();
    let held = store
        .try_acquire_permit(&name, limit(2), LONG, None)
        .await
        .unwrap()
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    store.verify(&held, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
    store.release(&held).await.unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    let err = store.verify(&held, &mut tx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    tx.rollback().await.unwrap();
    store.release(&lock).await.unwrap();
}

/// Names and labels with quotes, pattern characters, placeholders and non-ASCII text are plain
/// values by either protocol: each name is a semaphore of its own, and labels come back as
/// given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_semaphore_names_and_labels_stay_literal_by_both_protocols() {
    let url = support::shared_url().await;
    let suffix = support::unique("");
    for prepared in [false, true] {
        let store = PgLeaseStore::builder()
            .with_url(&url)
            .with_schema("fencelock_test")
            .with_table("semaphore_leases")
            .with_prepared_statements(prepared)
            .connect()
            .await
            .unwrap();
        let hostile = [
            "'; DROP TABLE fencelock_test.semaphore_leases_permits; --",
            "%",
            "_",
            "\\",
            "$1",
            "\"quoted\"",
            "ünïcødé ✓",
        ];
        let mut held = Vec::new();
        for raw in hostile {
            let name = LockName::new(format!("{raw}{suffix}{prepared}")).unwrap();
            let label = OwnerLabel::new(format!("{raw} label")).unwrap();
            let lease = store
                .try_acquire_permit(&name, limit(1), LONG, Some(&label))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("`{name}` is a semaphore of its own"));
            let shown = store.inspect_permits(&name).await.unwrap();
            assert_eq!(shown.holders.len(), 1, "{name}: {shown:?}");
            assert_eq!(shown.holders[0].label.as_ref(), Some(&label));
            held.push(lease);
        }
        for lease in &held {
            let renewed = store.renew(lease, LONG).await.unwrap();
            assert_eq!(renewed.token(), lease.token());
            store.release(lease).await.unwrap();
        }
    }
}

/// A semaphore whose token counter reached 2^53-1 refuses to grant (`Backend`, "exhausted"),
/// never wraps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permit_token_ceiling_is_an_error_never_a_wrap() {
    let url = support::shared_url().await;
    let store = support::store_on(&url, "semaphore_leases").await;
    let name = LockName::new(support::unique("ceiling")).unwrap();
    let lease = store
        .try_acquire_permit(&name, limit(2), LONG, None)
        .await
        .unwrap()
        .unwrap();
    store.release(&lease).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET last_token = $1 WHERE name = $2",
        store.semaphore_table().quoted()
    )))
    .bind(i64::try_from(FencingToken::MAX_EXACT).unwrap())
    .bind(name.as_str())
    .execute(store.pool())
    .await
    .unwrap();
    let err = store
        .try_acquire_permit(&name, limit(2), LONG, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains("exhausted"), "{err}");
    assert!(
        store
            .inspect_permits(&name)
            .await
            .unwrap()
            .holders
            .is_empty(),
        "nothing granted"
    );
}
