//! The real binary against a real PostgreSQL started by the harness.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_one_line_failure, output, status, stdout};
use fencelock_conformance::harness;

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
    let url = url().await;
    let out = output(&["check", "--store", &url], Duration::from_secs(20)).await;
    let text = stdout(&out);
    assert!(text.contains("PostgreSQL"), "{text}");
    assert!(text.contains("synchronous_commit"), "{text}");
    assert!(text.contains("lock operations"), "{text}");
    // The harness runs PostgreSQL with fsync=off, which check must flag.
    assert!(
        text.contains("WARN") && text.contains("fsync = off"),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(status::WARNINGS_OR_DECLINED),
        "{text}"
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
    let server = harness::PostgresServer::start(harness::PostgresConfig::default())
        .await
        .unwrap();
    let pooler = harness::PgBouncer::start(
        server.addr(),
        harness::PgBouncerConfig {
            ignore_startup_parameters: Vec::new(),
            ..harness::PgBouncerConfig::default()
        },
    )
    .await
    .unwrap();
    let url = pooler.url();
    let name = common::unique_name("pooled");
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
            common::stderr(&out)
        );
        let token: u64 = stdout(&out).trim().parse().unwrap();
        assert!(token > last, "run {run}: token {token} after {last}");
        last = token;
    }
}
