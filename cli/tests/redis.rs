//! The real binary against a real Redis started by the harness.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_one_line_failure, output, scenarios, status, stdout};
use fencelock_conformance::harness;

async fn url() -> String {
    harness::shared_redis().await.unwrap().url().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_runs_never_overlap() {
    scenarios::concurrent_runs_never_overlap(&url().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_rises_run_after_run() {
    scenarios::token_rises_run_after_run(&url().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_cli_loses_lease_and_stops_program() {
    scenarios::paused_cli_loses_lease_and_stops_program(&url().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_status_and_forced_release() {
    scenarios::busy_status_and_forced_release(&url().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_one_line() {
    scenarios::bad_input_is_one_line(&url().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_server_and_wrong_url_are_one_line() {
    let port = harness::free_port().unwrap();
    let dead = format!("redis://127.0.0.1:{port}");
    let started = tokio::time::Instant::now();
    let out = output(
        &[
            "run",
            "--store",
            &dead,
            "--connect-timeout",
            "1s",
            "n",
            "--",
            "true",
        ],
        Duration::from_secs(10),
    )
    .await;
    assert_one_line_failure(&out, status::UNAVAILABLE, "redis");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
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
