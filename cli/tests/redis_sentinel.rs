//! The real binary against Redis behind Sentinel (a primary, a replica, three sentinels)
//! started by the harness, or the deployment named by `FENCELOCK_REDIS_SENTINEL_URL`.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fencelock_conformance::harness;
use support::{check_both, finding, status};

backend_cli_tests!(url, "redis+sentinel://127.0.0.1:{port}/mymaster", "redis");

async fn url() -> String {
    harness::shared_redis_sentinel()
        .await
        .unwrap()
        .url()
        .to_owned()
}

/// `check` behind Sentinel reports the primary as a single server, then what the sentinels say,
/// then runs a lock round trip.
#[tokio::test(flavor = "multi_thread")]
async fn check_reports_the_primary_and_the_sentinels() {
    let (text, json) = check_both(&url().await, status::WARNINGS_OR_DECLINED).await;
    assert!(text.starts_with("store    redis (Redis "), "{text}");
    for line in [
        "ok       role = primary, 1 replica(s): ",
        "ok       min-replicas-to-write = 0: ",
        "ok       sentinels = 3 of 3 answer, 3 known to them: ",
        "ok       quorum = 2 of 3 sentinels: ",
        "ok       primary = 127.0.0.1:",
        "ok       down-after-milliseconds = 1000 ms: ",
        "ok       failover-timeout = 3000 ms: ",
        // In sync or not yet: a sentinel refreshes what it knows of a replica every 10 s.
        "replicas = 1 known, ",
        "WARN     appendonly = no: ",
    ] {
        assert!(text.contains(line), "{line:?} not in {text}");
    }
    assert_eq!(finding(&json, "quorum")["value"], "2 of 3 sentinels");
    assert_eq!(finding(&json, "sentinels")["verdict"], "ok");
}
