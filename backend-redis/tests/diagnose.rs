//! `diagnose()` against real redis-server processes configured well and badly: persistence,
//! eviction, a replica, a write quorum nobody meets, an ACL without INFO, a password, a dead
//! server, and Redlock with servers going down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::{RedisServer, RedisServerOptions};
use fencelock_core::{Diagnosis, ErrorKind, LeaseStore, Verdict};
use fencelock_redis::{RedisLeaseStore, RedlockLeaseStore};
use futures::future::join_all;
use support::server;

/// The verdict of the finding named `setting` (exactly one must exist).
fn verdict_of(d: &Diagnosis, setting: &str) -> Verdict {
    let found: Vec<_> = d.findings.iter().filter(|f| f.setting == setting).collect();
    assert_eq!(found.len(), 1, "one `{setting}` finding expected: {d:#?}");
    found[0].verdict
}

fn value_of<'a>(d: &'a Diagnosis, setting: &str) -> &'a str {
    d.findings
        .iter()
        .find(|f| f.setting == setting)
        .map(|f| f.value.as_str())
        .unwrap_or_else(|| panic!("no `{setting}` finding: {d:#?}"))
}

async fn diagnose(server: &RedisServer) -> Diagnosis {
    let store = RedisLeaseStore::connect(&server.url()).await.unwrap();
    store.diagnose().await.unwrap()
}

fn with_args(mut config: RedisServerOptions, args: &[&str]) -> RedisServerOptions {
    config.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
    config
}

#[tokio::test]
async fn append_only_and_noeviction_is_all_ok() {
    let redis = server(RedisServerOptions::aof()).await;
    let d = diagnose(&redis).await;
    assert_eq!(d.backend, "redis");
    assert!(d.server.starts_with("Redis 7."), "{d:#?}");
    assert_eq!(d.verdict(), Verdict::Ok, "{d:#?}");
    assert_eq!(value_of(&d, "appendonly"), "yes");
    assert_eq!(value_of(&d, "appendfsync"), "always");
    assert_eq!(value_of(&d, "maxmemory-policy"), "noeviction");
    assert_eq!(value_of(&d, "role"), "primary, no replicas");
    assert!(d.findings.iter().all(|f| !f.advice.is_empty()), "{d:#?}");
}

#[tokio::test]
async fn no_persistence_and_eviction_warn() {
    let redis = server(with_args(
        RedisServerOptions::ephemeral(),
        &["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
    ))
    .await;
    let d = diagnose(&redis).await;
    assert_eq!(verdict_of(&d, "appendonly"), Verdict::Warn);
    assert_eq!(verdict_of(&d, "maxmemory-policy"), Verdict::Warn);
    assert_eq!(value_of(&d, "maxmemory-policy"), "allkeys-lru");
    assert_eq!(verdict_of(&d, "role"), Verdict::Ok);
    assert_eq!(d.verdict(), Verdict::Warn);
}

#[tokio::test]
async fn a_replica_fails_and_its_primary_counts_it() {
    let primary = server(RedisServerOptions::aof()).await;
    let replica = RedisServer::start_replica_of(&primary).await.unwrap();
    let d = diagnose(&replica).await;
    assert_eq!(verdict_of(&d, "role"), Verdict::Fail, "{d:#?}");
    assert_eq!(d.verdict(), Verdict::Fail);

    let d = diagnose(&primary).await;
    assert_eq!(value_of(&d, "role"), "primary, 1 replica(s)", "{d:#?}");
    // With a replica, the option that bounds what a promoted replica can miss is reported.
    assert_eq!(value_of(&d, "min-replicas-to-write"), "0");
    assert_eq!(d.verdict(), Verdict::Ok, "{d:#?}");
}

#[tokio::test]
async fn a_write_quorum_nobody_meets_fails() {
    let redis = server(with_args(
        RedisServerOptions::aof(),
        &["--min-replicas-to-write", "1"],
    ))
    .await;
    let d = diagnose(&redis).await;
    assert_eq!(
        verdict_of(&d, "min-replicas-to-write"),
        Verdict::Fail,
        "{d:#?}"
    );
    assert_eq!(value_of(&d, "min-replicas-to-write"), "1 (0 in sync)");
    // And indeed the store cannot grant there.
    let store = RedisLeaseStore::connect(&redis.url()).await.unwrap();
    let name = support::name("noreplicas");
    assert!(
        store
            .try_acquire(&name, Duration::from_secs(5))
            .await
            .is_err(),
        "a grant must fail while Redis refuses writes"
    );
}

#[tokio::test]
async fn a_user_without_info_or_config_gets_warnings_not_an_error() {
    let redis = server(RedisServerOptions::aof()).await;
    let reply = redis
        .command(&[
            "ACL",
            "SETUSER",
            "locks",
            "on",
            ">s3cret-pw",
            "~*",
            "&*",
            "+@all",
            "-info",
            "-config",
        ])
        .await
        .unwrap();
    assert!(reply.starts_with("+OK"), "{reply}");
    let url = format!("redis://locks:s3cret-pw@127.0.0.1:{}", redis.port());
    let store = RedisLeaseStore::connect(&url).await.unwrap();
    let d = store.diagnose().await.unwrap();
    assert_eq!(verdict_of(&d, "INFO"), Verdict::Warn, "{d:#?}");
    assert_eq!(value_of(&d, "maxmemory-policy"), "unknown");
    let shown = serde_json::to_string(&d).unwrap();
    assert!(!shown.contains("s3cret-pw"), "{shown}");
}

#[tokio::test]
async fn a_password_never_shows() {
    // Set after start: the harness checks readiness with a PING that has no password.
    let redis = server(RedisServerOptions::aof()).await;
    let reply = redis
        .command(&["CONFIG", "SET", "requirepass", "hunter2-secret"])
        .await
        .unwrap();
    assert!(reply.starts_with("+OK"), "{reply}");
    let url = format!("redis://:hunter2-secret@127.0.0.1:{}", redis.port());
    let store = RedisLeaseStore::connect(&url).await.unwrap();
    let d = store.diagnose().await.unwrap();
    assert_eq!(d.verdict(), Verdict::Ok, "{d:#?}");
    let shown = format!("{} {d:?}", serde_json::to_string(&d).unwrap());
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn a_dead_server_is_an_error_in_bounded_time() {
    let redis = server(RedisServerOptions::ephemeral()).await;
    let store = RedisLeaseStore::builder()
        .with_op_timeout(Duration::from_millis(500))
        .with_connect_timeout(Duration::from_millis(500))
        .with_url(redis.url())
        .connect()
        .await
        .unwrap();
    redis.kill().unwrap();
    let started = tokio::time::Instant::now();
    let err = store.diagnose().await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
}

/// Three servers; then one down (a warning, the quorum holds), two down (the quorum fails),
/// all down (an error: nobody to ask).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_diagnoses_each_server_and_the_quorum() {
    let servers: Vec<RedisServer> =
        join_all((0..3).map(|_| RedisServer::start(RedisServerOptions::aof())))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let store = RedlockLeaseStore::builder()
        .with_urls(servers.iter().map(RedisServer::url))
        .with_op_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();

    let d = store.diagnose().await.unwrap();
    assert_eq!(d.backend, "redlock");
    assert!(d.server.starts_with("Redis "), "{d:#?}");
    for n in 1..=3 {
        assert_eq!(
            verdict_of(&d, &format!("server {n}: appendonly")),
            Verdict::Ok
        );
    }
    assert_eq!(value_of(&d, "quorum"), "3 of 3 servers answer");
    assert_eq!(d.verdict(), Verdict::Ok, "{d:#?}");

    servers[2].kill().unwrap();
    let d = store.diagnose().await.unwrap();
    assert_eq!(
        verdict_of(&d, "server 3: reachable"),
        Verdict::Warn,
        "{d:#?}"
    );
    assert_eq!(verdict_of(&d, "quorum"), Verdict::Ok);
    assert_eq!(value_of(&d, "quorum"), "2 of 3 servers answer");
    assert_eq!(d.verdict(), Verdict::Warn);

    servers[1].kill().unwrap();
    let d = store.diagnose().await.unwrap();
    assert_eq!(verdict_of(&d, "quorum"), Verdict::Fail, "{d:#?}");
    assert_eq!(verdict_of(&d, "server 1: appendonly"), Verdict::Ok);

    servers[0].kill().unwrap();
    let err = store.diagnose().await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
        ),
        "{err}"
    );
}
