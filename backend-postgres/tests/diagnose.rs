//! `diagnose()` against real PostgreSQL servers configured well and badly: the harness's fast
//! test server (fsync off), session settings the store's connections carry, a standby, a
//! read-only default, a dead server, and the harness's pgbouncer in transaction mode in front
//! of the store's connections or of its LISTEN connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::{PostgresServerOptions, shared_pgbouncer};
use fencelock_conformance::settle;
use fencelock_core::{Diagnosis, ErrorKind, LeaseStore, Verdict};
use fencelock_postgres::{PgBuilder, PgLeaseStore};
use tokio::time::Instant;

fn finding<'a>(d: &'a Diagnosis, setting: &str) -> (&'a str, Verdict) {
    let found: Vec<_> = d.findings.iter().filter(|f| f.setting == setting).collect();
    assert_eq!(found.len(), 1, "one `{setting}` finding expected: {d:#?}");
    (found[0].value.as_str(), found[0].verdict)
}

/// The store's sessions start with `-c NAME=VALUE` for each setting (libpq's `options`).
fn with_session_settings(url: &str, settings: &[(&str, &str)]) -> String {
    let options: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("-c%20{k}%3D{v}"))
        .collect();
    format!("{url}?options={}", options.join("%20"))
}

async fn diagnose(url: &str, durable_grants: bool) -> Diagnosis {
    let store = PgLeaseStore::builder()
        .with_schema("fencelock_test")
        .with_table(support::unique("diagnose"))
        .with_durable_grants(durable_grants)
        .with_url(url)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store.diagnose().await.unwrap()
}

#[tokio::test]
async fn a_durable_server_is_all_ok() {
    let server = support::own_server(PostgresServerOptions {
        durable: true,
        ..PostgresServerOptions::default()
    })
    .await;
    let d = diagnose(&server.url(), true).await;
    assert_eq!(d.backend, "postgres");
    assert!(d.server.starts_with("PostgreSQL 15"), "{d:#?}");
    assert_eq!(d.verdict(), Verdict::Ok, "{d:#?}");
    assert_eq!(finding(&d, "role"), ("primary", Verdict::Ok));
    assert_eq!(finding(&d, "fsync"), ("on", Verdict::Ok));
    assert_eq!(finding(&d, "synchronous_commit"), ("on", Verdict::Ok));
    assert_eq!(
        finding(&d, "synchronous_standby_names"),
        ("(none)", Verdict::Ok)
    );
}

#[tokio::test]
async fn the_fast_test_server_warns_about_fsync() {
    let d = diagnose(&support::shared_url().await, true).await;
    assert_eq!(finding(&d, "fsync"), ("off", Verdict::Warn));
    assert_eq!(finding(&d, "full_page_writes"), ("off", Verdict::Warn));
    assert_eq!(d.verdict(), Verdict::Warn);
}

/// `synchronous_commit` as the store's own sessions see it, and judged with the store's own
/// durable-grants option.
#[tokio::test]
async fn synchronous_commit_of_the_stores_sessions() {
    let url = support::shared_url().await;
    let local = with_session_settings(&url, &[("synchronous_commit", "local")]);
    let d = diagnose(&local, true).await;
    assert_eq!(finding(&d, "synchronous_commit"), ("local", Verdict::Warn));

    let off = with_session_settings(&url, &[("synchronous_commit", "off")]);
    let d = diagnose(&off, true).await;
    assert_eq!(finding(&d, "synchronous_commit"), ("off", Verdict::Ok));
    let d = diagnose(&off, false).await;
    assert_eq!(finding(&d, "synchronous_commit"), ("off", Verdict::Warn));
}

#[tokio::test]
async fn a_read_only_default_fails() {
    let url = with_session_settings(
        &support::shared_url().await,
        &[("default_transaction_read_only", "on")],
    );
    // The lease table cannot be created read-only; the diagnosis says why.
    let store = PgLeaseStore::builder()
        .with_migrate_on_connect(false)
        .with_url(&url)
        .connect()
        .await
        .unwrap();
    let d = store.diagnose().await.unwrap();
    assert_eq!(
        finding(&d, "default_transaction_read_only"),
        ("on", Verdict::Fail)
    );
    assert_eq!(d.verdict(), Verdict::Fail);
}

/// A server restarted with `standby.signal` stays in recovery (it has no primary to follow):
/// a read-only standby, as after a failover went the wrong way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_fails() {
    let server = support::own_server(PostgresServerOptions::default()).await;
    let store = PgLeaseStore::builder()
        .with_op_timeout(Duration::from_secs(5))
        .with_url(server.url())
        .connect()
        .await
        .unwrap();
    server.kill().unwrap();
    std::fs::write(server.data_dir().join("standby.signal"), "").unwrap();
    server.restart().await.unwrap();
    // The pool's connections died with the server; a diagnosis may meet one of them once.
    let d = match store.diagnose().await {
        Ok(d) => d,
        Err(e) if e.is_transient() => store.diagnose().await.unwrap(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(finding(&d, "role"), ("standby", Verdict::Fail), "{d:#?}");
    assert_eq!(d.verdict(), Verdict::Fail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_an_error_within_the_op_timeout() {
    let server = support::own_server(PostgresServerOptions::default()).await;
    let store = PgLeaseStore::builder()
        .with_op_timeout(Duration::from_millis(500))
        .with_connect_timeout(Duration::from_millis(300))
        .with_url(server.url())
        .connect()
        .await
        .unwrap();
    server.kill().unwrap();
    let started = Instant::now();
    let err = store.diagnose().await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
        ),
        "{err}"
    );
    // The op timeout, plus slack for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
}

/// The harness's pgbouncer (transaction mode, two server connections) in front of the shared
/// server.
async fn pooler_url() -> String {
    shared_pgbouncer()
        .await
        .expect("the harness must start pgbouncer (install pgbouncer) or FENCELOCK_PGBOUNCER_URL must be set")
        .url()
        .to_owned()
}

async fn diagnose_with(what: &str, builder: PgBuilder) -> Diagnosis {
    let store = builder
        .with_schema("fencelock_test")
        .with_table("diagnose_pooler")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    settle::definite(what, || store.diagnose()).await
}

/// The same server straight and through the pooler: `pooler` and `listen` tell them apart, and
/// say what each route means for named statements and for LISTEN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_pooler_is_seen_and_a_direct_connection_is_not() {
    let direct = support::shared_url().await;
    let pooled = pooler_url().await;

    let d = diagnose_with("direct", PgBuilder::new().with_url(&direct)).await;
    assert_eq!(finding(&d, "pooler"), ("none seen", Verdict::Ok), "{d:#?}");
    assert_eq!(
        finding(&d, "listen"),
        ("own session", Verdict::Ok),
        "{d:#?}"
    );

    let d = diagnose_with(
        "pooled, LISTEN direct",
        PgBuilder::new().with_url(&pooled).with_listen_url(&direct),
    )
    .await;
    assert_eq!(
        finding(&d, "pooler"),
        ("transaction mode", Verdict::Ok),
        "{d:#?}"
    );
    assert_eq!(
        finding(&d, "listen"),
        ("own session", Verdict::Ok),
        "{d:#?}"
    );

    // LISTEN on the store's own URL goes through the pooler too: waiters would poll.
    let d = diagnose_with("pooled", PgBuilder::new().with_url(&pooled)).await;
    assert_eq!(
        finding(&d, "listen"),
        ("through a transaction-mode pooler", Verdict::Warn),
        "{d:#?}"
    );
    let listen = d.findings.iter().find(|f| f.setting == "listen").unwrap();
    assert!(listen.advice.contains("listen_url"), "{listen:?}");

    // And the other way round: the store straight to PostgreSQL, its LISTEN through the pooler.
    let d = diagnose_with(
        "direct, LISTEN pooled",
        PgBuilder::new().with_url(&direct).with_listen_url(&pooled),
    )
    .await;
    assert_eq!(finding(&d, "pooler"), ("none seen", Verdict::Ok), "{d:#?}");
    assert_eq!(
        finding(&d, "listen"),
        ("through a transaction-mode pooler", Verdict::Warn),
        "{d:#?}"
    );

    // Named prepared statements through it are a warning that names what to set. (The table
    // is made by the cases above; this store's migration would collide like its statements.)
    let d = diagnose_with(
        "pooled, prepared statements",
        PgBuilder::new()
            .with_url(&pooled)
            .with_push_wakeups(false)
            .with_prepared_statements(true)
            .with_migrate_on_connect(false),
    )
    .await;
    let pooler = d.findings.iter().find(|f| f.setting == "pooler").unwrap();
    assert_eq!(
        (pooler.value.as_str(), pooler.verdict),
        ("transaction mode", Verdict::Warn),
        "{d:#?}"
    );
    assert!(
        pooler.advice.contains("max_prepared_statements"),
        "{pooler:?}"
    );
    assert_eq!(finding(&d, "listen"), ("off", Verdict::Ok), "{d:#?}");
}

/// A LISTEN URL nothing answers on is a warning (waiters poll), not a failed diagnosis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_listen_url_is_a_warning() {
    let direct = support::shared_url().await;
    let port = fencelock_conformance::harness::free_port().unwrap();
    let d = diagnose_with(
        "LISTEN unreachable",
        PgBuilder::new()
            .with_url(&direct)
            .with_listen_url(format!("postgres://postgres@127.0.0.1:{port}/postgres")),
    )
    .await;
    assert_eq!(finding(&d, "pooler"), ("none seen", Verdict::Ok), "{d:#?}");
    assert_eq!(
        finding(&d, "listen"),
        ("unreachable", Verdict::Warn),
        "{d:#?}"
    );
}
