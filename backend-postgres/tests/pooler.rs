//! The store through pgbouncer in transaction mode, as Debian 12 installs it (1.18, which knows
//! nothing of prepared statements): the whole conformance suite, the semaphore cases and the
//! fence tier with many clients sharing two server connections, fresh stores connecting one
//! after another (like `fencelock run`), and the pooler's failure modes saying what to set.
//!
//! The pooler is the harness's `shared_pgbouncer` (`FENCELOCK_PGBOUNCER_URL` for an external
//! one, in front of the server of `FENCELOCK_POSTGRES_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fencelock_conformance::harness::{PgBouncer, PgBouncerOptions, shared_pgbouncer};
use fencelock_conformance::{FenceFixture, Fixture, settle};
use fencelock_core::backend::WaitPolicy;
use fencelock_core::{ErrorKind, LeaseStore, LockName, Verdict};
use fencelock_postgres::PgLeaseStore;
use fencelock_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::time::Instant;

/// The shared pooler's URL (transaction mode, `default_pool_size = 2`).
async fn pooler_url() -> String {
    shared_pgbouncer()
        .await
        .expect("the harness must start pgbouncer (install pgbouncer) or FENCELOCK_PGBOUNCER_URL must be set")
        .url()
        .to_owned()
}

/// A store whose pool goes through the pooler and whose LISTEN goes straight to PostgreSQL, as
/// the README says to deploy it.
async fn pooled_store(table: &str) -> PgLeaseStore {
    let direct = support::shared_url().await;
    let pooled = pooler_url().await;
    PgLeaseStore::builder()
        .with_schema("fencelock_test")
        .with_table(table)
        .with_listen_url(direct)
        .with_url(&pooled)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect through the pooler {pooled}: {e}"))
}

async fn through_pooler() -> Fixture {
    // Every case opens its own store (up to 10 client connections each, and the cases run in
    // parallel) on the pooler's two server connections.
    Fixture::new(pooled_store("pooler_leases").await)
}

fencelock_conformance::conformance_suite!(through_pooler);

// Semaphores through the pooler: each grant is a two-statement transaction, which a
// transaction-mode pooler keeps on one server connection.
fencelock_conformance::semaphore_suite!(through_pooler);

/// `store.fence()` on a store whose pool goes through the pooler: the fence's migration, writes
/// and reads (keys and values as hex digits, one message each) on the pooler's two server
/// connections, shared by the cases running in parallel.
async fn fence_through_pooler() -> FenceFixture {
    let store = pooled_store("pooler_fence_leases").await;
    let fence = store
        .fence()
        .await
        .unwrap_or_else(|e| panic!("the fence table through the pooler: {e}"));
    FenceFixture::new(fence).with_dead(support::dead_fence())
}

fencelock_conformance::fence_suite!(fence_through_pooler);

/// How many server connections the pooler has open (`None` for an external pooler).
async fn server_connections() -> Option<usize> {
    let target = shared_pgbouncer().await.unwrap();
    let pooler = target.server()?;
    let servers = pooler.admin("SHOW SERVERS").await.unwrap();
    Some(servers.lines().filter(|l| !l.trim().is_empty()).count())
}

/// `fencelock run` in a shell loop: every run a new store (a new pool, its migration, one
/// acquire, one release), 100 in a row, while another client keeps the pooler's two server
/// connections busy. Every one of them must succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_fresh_stores_in_a_row_through_the_pooler() {
    let pooled = pooler_url().await;
    let busy = pooled_store("pooler_runs").await;
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (busy, stop) = (busy.clone(), stop.clone());
        tokio::spawn(async move {
            let name = LockName::new(support::unique("pooler/busy")).unwrap();
            let mut cycles = 0_u32;
            while !stop.load(Ordering::SeqCst) {
                let lease = busy.try_acquire(&name, Duration::from_secs(10)).await;
                if let Ok(Some(lease)) = lease {
                    busy.release(&lease).await.unwrap();
                }
                cycles += 1;
            }
            cycles
        })
    };
    let name = LockName::new(support::unique("pooler/run")).unwrap();
    let mut last = None;
    for run in 1..=100 {
        let store = PgLeaseStore::builder()
            .with_schema("fencelock_test")
            .with_table("pooler_runs")
            .with_push_wakeups(false)
            .with_max_connections(2)
            .with_url(&pooled)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("run {run}: connect: {e}"));
        let lease = store
            .try_acquire(&name, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("run {run}: acquire: {e}"))
            .unwrap_or_else(|| panic!("run {run}: the lock is free between runs"));
        if let Some(last) = last {
            assert!(lease.token() > last, "run {run}: tokens rise");
        }
        last = Some(lease.token());
        store
            .release(&lease)
            .await
            .unwrap_or_else(|e| panic!("run {run}: release: {e}"));
        drop(store);
    }
    stop.store(true, Ordering::SeqCst);
    let busy_cycles = background.await.unwrap();
    assert!(busy_cycles > 0, "the other client ran alongside");
    if let Some(servers) = server_connections().await {
        assert!(
            servers <= 2,
            "clients shared the pooler's two server connections, it has {servers}"
        );
    }
}

/// A pooler configured with nothing at all (no `ignore_startup_parameters`) still works: the
/// store does not send sqlx's `extra_float_digits`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_with_no_settings_works() {
    let server = support::own_server(Default::default()).await;
    let pooler = PgBouncer::start(
        server.addr(),
        PgBouncerOptions {
            ignore_startup_parameters: Vec::new(),
            ..PgBouncerOptions::default()
        },
    )
    .await
    .unwrap();
    let store = PgLeaseStore::builder()
        .with_push_wakeups(false)
        .with_url(pooler.url())
        .connect()
        .await
        .unwrap();
    let name = LockName::new("plain").unwrap();
    let lease = store
        .try_acquire(&name, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    store.release(&lease).await.unwrap();

    // An application's own pool with sqlx's defaults sends `extra_float_digits`; the pooler's
    // refusal is a configuration error that names the setting, not "is the server up?".
    let options: PgConnectOptions = pooler.url().parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let err = PgLeaseStore::from_pool(pool).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("ignore_startup_parameters = extra_float_digits"),
        "{text}"
    );
    assert!(!text.contains("server is up"), "{text}");
}

/// `diagnose()` (what `fencelock check` prints) through the pooler: fresh stores one after
/// another, each asking once, all answer (its statement goes as one simple-protocol message,
/// so it cannot collide on a named statement another client left on the server connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_answers_through_the_pooler() {
    let pooled = pooler_url().await;
    for run in 1..=20 {
        let store = PgLeaseStore::builder()
            .with_url(&pooled)
            .with_schema("fencelock_test")
            .with_table("pooler_diagnose")
            .with_push_wakeups(false)
            .with_max_connections(1)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("run {run}: connect: {e}"));
        let diagnosis = settle::definite("diagnose", || store.diagnose()).await;
        assert!(
            diagnosis.server.starts_with("PostgreSQL"),
            "run {run}: {diagnosis:#?}"
        );
        assert!(
            diagnosis
                .findings
                .iter()
                .any(|f| f.setting == "role" && f.value == "primary"),
            "run {run}: {diagnosis:#?}"
        );
    }
}

/// Named prepared statements (the opt-in for direct connections) through a 1.18 pooler in
/// transaction mode: fresh clients collide on `sqlx_s_1`. The control for the default: it
/// shows that this pooler really lends clients each other's server connections, and that the
/// failure says what to set. A collision is refused by the server before anything runs, so no
/// wrong statement is ever executed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_through_the_pooler_collide_and_say_what_to_set() {
    let server = support::own_server(Default::default()).await;
    let pooler = PgBouncer::start(server.addr(), PgBouncerOptions::default())
        .await
        .unwrap();
    let name = LockName::new("named").unwrap();
    let (mut ok, mut collided) = (0, 0);
    for run in 0..20 {
        let attempt = async {
            let store = PgLeaseStore::builder()
                .with_push_wakeups(false)
                .with_prepared_statements(true)
                .with_max_connections(1)
                .with_url(pooler.url())
                .connect()
                .await?;
            if let Some(lease) = store.try_acquire(&name, Duration::from_secs(5)).await? {
                store.release(&lease).await?;
            }
            Ok::<_, fencelock_core::Error>(())
        };
        match attempt.await {
            Ok(()) => ok += 1,
            Err(err) => {
                let text = err.to_string();
                assert_eq!(err.kind(), ErrorKind::Backend, "run {run}: {text}");
                assert!(text.contains("prepared statement"), "run {run}: {text}");
                assert!(
                    text.contains("with_prepared_statements(false)"),
                    "run {run}: {text}"
                );
                collided += 1;
            }
        }
    }
    println!("named statements through pgbouncer 1.18: {ok} ok, {collided} collided");
    assert!(collided > 0, "fresh clients collide on sqlx_s_1 ({ok} ok)");
}

/// A LISTEN through the pooler succeeds and then hears nothing — and the server connection it
/// ran on keeps listening for whoever uses it next. The listener notices (its own test NOTIFY
/// is not heard, or comes back to the store's pool), stops for good, and waiters poll: a waiter
/// still gets a released lock within its poll interval.
///
/// Until the pooler closes that server connection as dirty, a statement of this store that runs
/// on it may fail with the stray notification, after it committed: `OutcomeUnknown`, saying to
/// point `listen_url` at PostgreSQL. Such outcomes of the release are counted, not hidden; the
/// waiter's statements can meet it too, so its wait is settled (`settle::acquire`: asked again,
/// and a grant whose reply was lost is broken first), which prints what it met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_through_the_pooler_is_noticed_and_waiters_poll() {
    // A pooler of its own: the stray LISTEN must not meet the other tests' statements.
    let server = support::own_server(Default::default()).await;
    let pooler = PgBouncer::start(server.addr(), PgBouncerOptions::default())
        .await
        .unwrap();
    let store = PgLeaseStore::builder()
        .with_url(pooler.url())
        .connect()
        .await
        .unwrap();
    let name = LockName::new(support::unique("pooler/deaf")).unwrap();
    let held = store
        .try_acquire(&name, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let poll = Duration::from_millis(500);
    let waiter = {
        let (store, name, floor) = (store.clone(), name.clone(), held.token());
        tokio::spawn(async move {
            let policy = WaitPolicy {
                until: Some(Instant::now() + Duration::from_secs(30)),
                poll_interval: poll,
            };
            let lease = settle::acquire(&store, &name, Some(floor), || {
                store.acquire_waiting(&name, Duration::from_secs(10), None, policy)
            })
            .await;
            (lease, Instant::now())
        })
    };
    // The listener starts with the waiter and tests itself; within 3 s it knows it is deaf.
    let started = Instant::now();
    loop {
        let shown = format!("{store:?}");
        if shown.contains("deaf: true") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the listener never noticed it hears nothing: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!store.is_listening());
    // `diagnose()` says so. Its statements may meet the stray notification too (a transient
    // error, asked again).
    let d = settle::definite("diagnose", || store.diagnose()).await;
    let listen = d.findings.iter().find(|f| f.setting == "listen").unwrap();
    assert_eq!(
        (listen.value.as_str(), listen.verdict),
        ("deaf", Verdict::Warn),
        "{d:#?}"
    );
    assert!(listen.advice.contains("listen_url"), "{listen:?}");
    let released_at = Instant::now();
    let mut unknown = 0;
    match store.release(&held).await {
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::OutcomeUnknown => {
            assert!(err.to_string().contains("listen_url"), "{err}");
            unknown += 1;
        }
        Err(err) => panic!("release: {err}"),
    }
    let (got, got_at) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter polls")
        .unwrap();
    let got = got
        .expect("the waiter gets the lock (the release committed, even when its reply was lost)");
    let waited = got_at.saturating_duration_since(released_at);
    println!(
        "deaf listener: waiter got the lock {waited:?} after the release ({unknown} release outcome unknown)"
    );
    assert!(
        waited < poll + Duration::from_secs(2),
        "within its poll interval (plus a loaded machine's slack): {waited:?}"
    );
    let _ = store.release(&got).await;
}

/// The deployment the README gives: pool through the pooler, LISTEN straight to PostgreSQL.
/// The listener hears its own test NOTIFY and stays on; a waiter is woken well within its
/// 60 s poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_straight_to_postgres_wakes_waiters_through_the_pooler() {
    let store = pooled_store("pooler_wakeups").await;
    let name = LockName::new(support::unique("pooler/wake")).unwrap();
    let held = store
        .try_acquire(&name, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let waiter = {
        let (store, name) = (store.clone(), name.clone());
        tokio::spawn(async move {
            let policy = WaitPolicy {
                until: Some(Instant::now() + Duration::from_secs(30)),
                poll_interval: Duration::from_secs(60),
            };
            let lease = store
                .acquire_waiting(&name, Duration::from_secs(10), None, policy)
                .await;
            (lease, Instant::now())
        })
    };
    // Past the listener's self-test (3 s), it must still be listening.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(1) {
            assert!(store.is_listening(), "a direct LISTEN hears its self-test");
        }
    }
    let released_at = Instant::now();
    store.release(&held).await.unwrap();
    let (got, got_at) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken by NOTIFY, not by the 60 s poll interval")
        .unwrap();
    let got = got.unwrap().expect("the waiter gets the lock");
    let waited = got_at.saturating_duration_since(released_at);
    assert!(
        waited < Duration::from_secs(2),
        "woken, not polled: {waited:?}"
    );
    store.release(&got).await.unwrap();
}
