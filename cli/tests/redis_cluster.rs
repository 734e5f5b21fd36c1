//! The real binary against a real Redis Cluster (three primaries with a replica each) started by
//! the harness, or the one named by `FENCELOCK_REDIS_CLUSTER_URL`.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fencelock_conformance::harness;

backend_cli_tests!(url, "redis+cluster://127.0.0.1:{port}", "redis");

async fn url() -> String {
    harness::shared_redis_cluster()
        .await
        .unwrap()
        .url()
        .to_owned()
}
