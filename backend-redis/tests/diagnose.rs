//! `diagnose()` against real redis-server processes configured well and badly: persistence,
//! eviction, a replica, a write quorum nobody meets, an ACL without INFO, a password, a dead
//! server, Redlock with servers going down, a Redis Cluster before and after a primary dies,
//! and Sentinel with sentinels going down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::{
    RedisCluster, RedisSentinel, RedisServer, RedisServerOptions,
};
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
    assert_eq!(
        value_of(&d, "min-replicas-to-write"),
        "1 (0 in sync, max lag 10 s)"
    );
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

/// The findings of `d` whose setting starts with `prefix`, as `setting = value`.
fn named(d: &Diagnosis, prefix: &str) -> Vec<String> {
    d.findings
        .iter()
        .filter(|f| f.setting.starts_with(prefix))
        .map(|f| format!("{} = {}", f.setting, f.value))
        .collect()
}

/// A cluster of three primaries with a replica each, every node requiring one replica in sync
/// for writes: the cluster's state and coverage, then every primary as a single server. After a
/// primary is killed and its replica promoted, the promoted primary has no replica (a warning)
/// and, still requiring one, refuses writes (a failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_reports_its_state_coverage_and_every_primary() {
    let cluster = RedisCluster::start().await.unwrap();
    for node in cluster.nodes() {
        let reply = node
            .command(&["CONFIG", "SET", "min-replicas-to-write", "1"])
            .await
            .unwrap();
        assert!(reply.starts_with("+OK"), "{reply}");
    }
    let store = RedisLeaseStore::connect_cluster(&cluster.url())
        .await
        .unwrap();
    // A replica reports itself to its primary every second: wait until each primary counts its
    // replica as in sync.
    let d = settled(&store, "every primary has its replica in sync", |d| {
        named(d, "primary ")
            .iter()
            .filter(|f| f.ends_with("min-replicas-to-write = 1 (1 in sync, max lag 10 s)"))
            .count()
            == 3
    })
    .await;
    assert_eq!(d.backend, "redis");
    assert!(d.server.starts_with("Redis 7."), "{d:#?}");
    assert_eq!(value_of(&d, "cluster_state"), "ok (16384 slots served)");
    assert_eq!(verdict_of(&d, "cluster_state"), Verdict::Ok);
    assert_eq!(value_of(&d, "replicas"), "3 primaries, each with a replica");
    assert_eq!(verdict_of(&d, "replicas"), Verdict::Ok);
    assert_eq!(value_of(&d, "cluster-require-full-coverage"), "yes");
    let topology = cluster.topology_blocking().unwrap();
    let primaries: Vec<u16> = topology
        .iter()
        .filter(|n| n.is_live_primary)
        .map(|n| n.port)
        .collect();
    assert_eq!(primaries.len(), 3, "{topology:?}");
    for port in &primaries {
        let who = format!("primary 127.0.0.1:{port}");
        assert_eq!(
            value_of(&d, &format!("{who}: role")),
            "primary, 1 replica(s)"
        );
        // The harness runs the nodes without persistence: judged as on one server.
        assert_eq!(verdict_of(&d, &format!("{who}: appendonly")), Verdict::Warn);
        assert_eq!(
            verdict_of(&d, &format!("{who}: maxmemory-policy")),
            Verdict::Ok
        );
    }
    assert_eq!(d.verdict(), Verdict::Warn, "{d:#?}");

    // Kill the primary of a lock's slot; its replica takes over, with no replica of its own.
    let key = store.layout().lock_key(&support::name("diagnose-failover"));
    let victim = cluster.primary_of_key(&key).await.unwrap();
    let slot = cluster.slot_of(&key).await.unwrap();
    cluster.node(victim).unwrap().kill().unwrap();
    let promoted = cluster
        .wait_for_new_primary(slot, victim, Duration::from_secs(30))
        .await
        .unwrap();
    let who = format!("primary 127.0.0.1:{promoted}");
    let d = settled(&store, "the promoted primary is diagnosed", |d| {
        named(d, &who).len() > 1 && named(d, "replicas").iter().all(|r| r.contains("without"))
    })
    .await;
    assert_eq!(
        value_of(&d, "replicas"),
        format!("3 primaries, 1 without a replica (127.0.0.1:{promoted})")
    );
    assert_eq!(verdict_of(&d, "replicas"), Verdict::Warn);
    assert_eq!(
        value_of(&d, &format!("{who}: role")),
        "primary, no replicas"
    );
    assert_eq!(
        value_of(&d, &format!("{who}: min-replicas-to-write")),
        "1 (0 in sync, max lag 10 s)"
    );
    assert_eq!(
        verdict_of(&d, &format!("{who}: min-replicas-to-write")),
        Verdict::Fail
    );
    assert!(
        named(&d, &format!("primary 127.0.0.1:{victim}")).is_empty(),
        "the dead primary serves no slot any more: {d:#?}"
    );
    assert_eq!(d.verdict(), Verdict::Fail);
}

/// Diagnoses until `done` holds for the diagnosis (the cluster's own view converges: replicas
/// report in every second, a failover is gossiped, sentinels refresh what they know every 10 s),
/// at most 30 s; a diagnosis that fails while
/// the driver catches up is retried.
async fn settled<C>(
    store: &RedisLeaseStore<C>,
    what: &str,
    done: impl Fn(&Diagnosis) -> bool,
) -> Diagnosis
where
    C: fencelock_redis::redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = store.diagnose().await;
        if let Ok(d) = &d
            && done(d)
        {
            return d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 30 s: {what}: {d:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Behind Sentinel: the primary as a single server, then the sentinels: all three answer, the
/// quorum, the primary they agree on, their timeouts and the replica. With two sentinels down,
/// too few answer to replace a dead primary (a warning).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_reports_the_primary_the_sentinels_and_the_replicas() {
    let deployment = RedisSentinel::start().await.unwrap();
    let store = RedisLeaseStore::connect_sentinel(&deployment.url())
        .await
        .unwrap();
    let primary = deployment.servers()[0].port();
    // A sentinel refreshes what it knows of the replica (its link to the primary) every 10 s.
    let d = settled(&store, "the sentinels see the replica in sync", |d| {
        named(d, "replicas") == ["replicas = 1 known, 1 in sync"]
    })
    .await;
    assert!(d.server.starts_with("Redis 7."), "{d:#?}");
    assert_eq!(value_of(&d, "role"), "primary, 1 replica(s)", "{d:#?}");
    assert_eq!(value_of(&d, "min-replicas-to-write"), "0");
    assert_eq!(verdict_of(&d, "appendonly"), Verdict::Warn);
    assert_eq!(value_of(&d, "sentinels"), "3 of 3 answer, 3 known to them");
    assert_eq!(verdict_of(&d, "sentinels"), Verdict::Ok);
    assert_eq!(value_of(&d, "quorum"), "2 of 3 sentinels");
    assert_eq!(verdict_of(&d, "quorum"), Verdict::Ok);
    assert_eq!(value_of(&d, "primary"), format!("127.0.0.1:{primary}"));
    assert_eq!(verdict_of(&d, "primary"), Verdict::Ok);
    assert_eq!(value_of(&d, "down-after-milliseconds"), "1000 ms");
    assert_eq!(value_of(&d, "failover-timeout"), "3000 ms");
    assert_eq!(value_of(&d, "replicas"), "1 known, 1 in sync");
    assert_eq!(verdict_of(&d, "replicas"), Verdict::Ok);
    assert_eq!(d.verdict(), Verdict::Warn, "only appendonly warns: {d:#?}");

    deployment.sentinels()[1].kill().unwrap();
    deployment.sentinels()[2].kill().unwrap();
    let d = store.diagnose().await.unwrap();
    assert_eq!(value_of(&d, "sentinels"), "1 of 3 answer, 3 known to them");
    assert_eq!(verdict_of(&d, "sentinels"), Verdict::Warn, "{d:#?}");
    // The primary is still diagnosed over the store's connection.
    assert_eq!(value_of(&d, "role"), "primary, 1 replica(s)");

    deployment.sentinels()[0].kill().unwrap();
    let d = store.diagnose().await.unwrap();
    assert_eq!(value_of(&d, "sentinels"), "0 of 3 answer");
    assert_eq!(verdict_of(&d, "sentinels"), Verdict::Fail, "{d:#?}");
    assert_eq!(d.verdict(), Verdict::Fail);
}
