//! The real binary against a real Redis started by the harness.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{output, status, stdout};
use fencelock_conformance::harness;

backend_cli_tests!(url, "redis://127.0.0.1:{port}", "redis");

async fn url() -> String {
    harness::shared_redis().await.unwrap().url().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_settings_with_advice() {
    let url = url().await;
    let out = output(&["check", "--store", &url], Duration::from_secs(20)).await;
    let text = stdout(&out);
    assert!(text.contains("Redis "), "{text}");
    assert!(text.contains("maxmemory-policy"), "{text}");
    assert!(text.contains("role = primary"), "{text}");
    assert!(text.contains("lock operations"), "{text}");
    // The harness runs Redis without persistence, which check must flag.
    assert!(
        text.contains("WARN") && text.contains("persistence"),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(status::WARNINGS_OR_DECLINED),
        "{text}"
    );
}
