//! The real binary against Redis behind Sentinel (a primary, a replica, three sentinels)
//! started by the harness, or the deployment named by `FENCELOCK_REDIS_SENTINEL_URL`.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fencelock_conformance::harness;

backend_cli_tests!(url, "redis+sentinel://127.0.0.1:{port}/mymaster", "redis");

async fn url() -> String {
    harness::shared_redis_sentinel()
        .await
        .unwrap()
        .url()
        .to_owned()
}
