//! The real binary against a real PostgreSQL started by the harness.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness;
use support::{assert_one_line_failure, check_both, check_json, finding, output, status, stdout};

backend_cli_tests!(
    url,
    "postgres://postgres@127.0.0.1:{port}/postgres",
    "postgres"
);

async fn url() -> String {
    harness::shared_postgres().await.unwrap().url().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_settings_with_advice() {
    let (text, json) = check_both(&url().await, status::WARNINGS_OR_DECLINED).await;
    assert!(
        text.starts_with("store    postgres (PostgreSQL 15"),
        "{text}"
    );
    assert!(text.contains("ok       role = primary"), "{text}");
    assert!(text.contains("ok       synchronous_commit = on"), "{text}");
    assert!(text.contains("ok       lock operations = work"), "{text}");
    assert!(text.contains("ok       pooler = none seen"), "{text}");
    assert!(text.contains("ok       listen = own session"), "{text}");
    // The harness runs PostgreSQL with fsync=off, which check must flag.
    assert!(text.contains("WARN     fsync = off"), "{text}");
    assert_eq!(json["backend"], "postgres");
    assert_eq!(json["verdict"], "warn");
    assert_eq!(finding(&json, "fsync")["value"], "off");
}

/// The store's sessions commit with `synchronous_commit = local` (a `-c` option in the URL):
/// grants do not wait for synchronous standbys, which check warns about.
#[tokio::test(flavor = "multi_thread")]
async fn check_warns_about_what_the_stores_sessions_run_with() {
    let server = harness::PostgresServer::start(harness::PostgresServerOptions {
        durable: true,
        ..harness::PostgresServerOptions::default()
    })
    .await
    .unwrap();
    let (code, json) = check_json(&server.url(), &[]).await;
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["verdict"], "ok");

    let local = format!("{}?options=-c%20synchronous_commit%3Dlocal", server.url());
    let (code, json) = check_json(&local, &[]).await;
    assert_eq!(code, Some(status::WARNINGS_OR_DECLINED), "{json:#}");
    let sc = finding(&json, "synchronous_commit");
    assert_eq!(
        (&sc["value"], &sc["verdict"]),
        (&"local".into(), &"warn".into())
    );
}

/// `fencelock check` through the harness's pgbouncer in transaction mode: it says so, that the
/// store's statements are fine there, and that LISTEN (on the same URL) hears nothing there.
#[tokio::test(flavor = "multi_thread")]
async fn check_through_pgbouncer_reports_the_pooler() {
    let pooled = harness::shared_pgbouncer().await.unwrap().url().to_owned();
    let out = output(&["check", "--store", &pooled], Duration::from_secs(20)).await;
    let text = stdout(&out);
    assert!(
        text.contains("ok       pooler = transaction mode"),
        "{text}"
    );
    assert!(
        text.contains("WARN     listen = through a transaction-mode pooler"),
        "{text}"
    );
    assert!(text.contains("ok       lock operations = work"), "{text}");

    let (code, json) = check_json(&pooled, &[]).await;
    assert_eq!(code, Some(status::WARNINGS_OR_DECLINED), "{json:#}");
    let pooler = finding(&json, "pooler");
    assert_eq!(
        (&pooler["value"], &pooler["verdict"]),
        (&"transaction mode".into(), &"ok".into())
    );
    let listen = finding(&json, "listen");
    assert_eq!(listen["verdict"], "warn");
    assert!(
        listen["advice"].as_str().unwrap().contains("listen_url"),
        "{json:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_url_is_one_line() {
    let out = output(
        &[
            "status",
            "--store",
            "postgres://postgres@127.0.0.1:notaport/x",
            "n",
        ],
        Duration::from_secs(10),
    )
    .await;
    assert!(matches!(
        out.status.code(),
        Some(status::USAGE | status::UNAVAILABLE)
    ));
    assert_one_line_failure(&out, out.status.code().unwrap(), "fencelock: ");
}

/// `fencelock run` through Debian's pgbouncer in transaction mode, configured with nothing at
/// all (not even `ignore_startup_parameters`), 100 times in a row as from a shell loop: every
/// run succeeds, and tokens rise from run to run.
#[tokio::test(flavor = "multi_thread")]
async fn hundred_runs_in_a_row_through_pgbouncer() {
    let server = harness::PostgresServer::start(harness::PostgresServerOptions::default())
        .await
        .unwrap();
    let pooler = harness::PgBouncer::start(
        server.addr(),
        harness::PgBouncerOptions {
            ignore_startup_parameters: Vec::new(),
            ..harness::PgBouncerOptions::default()
        },
    )
    .await
    .unwrap();
    let url = pooler.url();
    let name = support::unique_name("pooled");
    let mut last = 0_u64;
    for run in 1..=100 {
        let out = output(
            &[
                "run",
                "--store",
                &url,
                "--no-wait",
                &name,
                "--",
                "sh",
                "-c",
                r#"echo "$FENCELOCK_TOKEN""#,
            ],
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "run {run}: {}",
            support::stderr(&out)
        );
        let token: u64 = stdout(&out).trim().parse().unwrap();
        assert!(token > last, "run {run}: token {token} after {last}");
        last = token;
    }
}
