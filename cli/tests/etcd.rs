//! The real binary against a real etcd started by the harness.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness;
use support::{output, stdout};

backend_cli_tests!(url, "etcd://127.0.0.1:{port}", "etcd");

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
