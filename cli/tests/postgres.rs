//! The real binary against a real PostgreSQL started by the harness.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness;
use support::{assert_one_line_failure, output, status, stdout};

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
