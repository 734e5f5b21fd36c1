//! The real binary against a real etcd started by the harness.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_one_line_failure, output, scenarios, status, stdout};
use fencelock_conformance::harness;

async fn url() -> String {
    let target = harness::shared_etcd().await.unwrap();
    let hosts: Vec<&str> = target
        .endpoints()
        .iter()
        .map(|e| e.trim_start_matches("http://"))
        .collect();
    format!("etcd://{}", hosts.join(","))
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
    let dead = format!("etcd://127.0.0.1:{port}");
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
    assert_one_line_failure(&out, status::UNAVAILABLE, "etcd");
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
    assert!(text.contains("etcd 3."), "{text}");
    assert!(
        text.contains("leader") && text.contains("members = 1"),
        "{text}"
    );
    assert!(text.contains("every endpoint answers"), "{text}");
    assert!(!text.contains("WARN"), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
}
