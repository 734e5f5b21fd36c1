//! The real binary against a real etcd started by the harness.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness;
use fencelock_etcd::etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client};
use support::{check_both, check_json, finding, output, status, stdout};

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
    let (text, json) = check_both(&url().await, 0).await;
    assert!(text.starts_with("store    etcd (etcd 3."), "{text}");
    assert!(text.contains("ok       leader = member "), "{text}");
    // One member is fine for locks, but the advice says what it costs.
    assert!(
        text.contains("ok       members = 1: ") && text.contains("no fault tolerance"),
        "{text}"
    );
    assert!(
        text.contains("ok       endpoints = 1 of 1 members answer"),
        "{text}"
    );
    assert!(!text.contains("WARN") && !text.contains("FAIL"), "{text}");
    assert_eq!(json["backend"], "etcd");
    assert_eq!(json["verdict"], "ok");
    assert_eq!(finding(&json, "alarms")["value"], "none");
}

/// A raised NOSPACE alarm: etcd refuses every write, so check fails with status 78.
#[tokio::test(flavor = "multi_thread")]
async fn check_of_a_cluster_out_of_space_fails() {
    let cluster = harness::EtcdCluster::start(1).await.unwrap();
    let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
    let member = client.status().await.unwrap().header().unwrap().member_id();
    let mut options = AlarmOptions::new();
    options.with_member(member);
    client
        .alarm(AlarmAction::Activate, AlarmType::Nospace, Some(options))
        .await
        .unwrap();
    let url = cluster.endpoints()[0].replace("http://", "etcd://");
    let out = output(&["check", "--store", &url], Duration::from_secs(20)).await;
    let text = stdout(&out);
    assert!(
        text.contains("FAIL     alarms = NOSPACE on member "),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(status::UNSAFE_FOR_LOCKS), "{text}");

    let (code, json) = check_json(&url, &[]).await;
    assert_eq!(code, Some(status::UNSAFE_FOR_LOCKS), "{json:#}");
    assert_eq!(json["verdict"], "fail");
    assert_eq!(finding(&json, "alarms")["verdict"], "fail");
}
