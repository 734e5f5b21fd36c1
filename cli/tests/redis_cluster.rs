//! The real binary against a real Redis Cluster (three primaries with a replica each) started by
//! the harness, or the one named by `FENCELOCK_REDIS_CLUSTER_URL`.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fencelock_conformance::harness;
use support::{check_both, finding, status};

backend_cli_tests!(url, "redis+cluster://127.0.0.1:{port}", "redis");

async fn url() -> String {
    harness::shared_redis_cluster()
        .await
        .unwrap()
        .url()
        .to_owned()
}

/// `check` on a cluster reports the cluster's state, its replicas, its coverage setting and every
/// primary judged as a single server, then runs a lock round trip.
#[tokio::test(flavor = "multi_thread")]
async fn check_reports_the_cluster_and_every_primary() {
    let (text, json) = check_both(&url().await, status::WARNINGS_OR_DECLINED).await;
    assert!(text.starts_with("store    redis (Redis "), "{text}");
    assert!(text.contains("ok       cluster_state = ok ("), "{text}");
    assert!(
        text.contains("ok       replicas = 3 primaries, each with a replica: "),
        "{text}"
    );
    assert!(
        text.contains("ok       cluster-require-full-coverage = yes: "),
        "{text}"
    );
    let primaries = text
        .lines()
        .filter(|l| l.contains("     primary 127.0.0.1:") && l.contains(": role = primary, "))
        .count();
    assert_eq!(primaries, 3, "{text}");
    // The harness runs the nodes without persistence, which check must flag on each primary.
    let no_aof = text
        .lines()
        .filter(|l| l.starts_with("WARN     primary ") && l.contains(": appendonly = no: "))
        .count();
    assert_eq!(no_aof, 3, "{text}");
    assert_eq!(finding(&json, "cluster_state")["verdict"], "ok");
    assert_eq!(
        finding(&json, "cluster-require-full-coverage")["value"],
        "yes"
    );
}
