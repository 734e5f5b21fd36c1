//! Exercises the Redis Cluster and Sentinel harness against the real binaries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use fencelock_conformance::harness::{RedisCluster, RedisSentinel};

/// Bound on a replica's promotion after its primary is killed (node timeout 1 s).
const FAILOVER: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forms_and_promotes_a_replica_when_a_primary_dies() {
    let cluster = RedisCluster::start().await.unwrap();
    assert_eq!(cluster.nodes().len(), 6);
    let topology = cluster.topology_blocking().unwrap();
    assert_eq!(topology.iter().filter(|n| n.is_live_primary).count(), 3);
    let covered: u32 = topology
        .iter()
        .flat_map(|n| n.slots.iter())
        .map(|&(a, b)| u32::from(b - a) + 1)
        .sum();
    assert_eq!(covered, 16384);
    assert!(cluster.url().starts_with("redis+cluster://127.0.0.1:"));

    let slot = cluster.slot_of("{job}:x").await.unwrap();
    let old = cluster.primary_of_key("{job}:x").await.unwrap();
    let node = cluster.node(old).unwrap();
    assert_eq!(
        node.command(&["SET", "{job}:x", "v"]).await.unwrap(),
        "+OK\r\n"
    );
    node.kill().unwrap();
    let new = cluster
        .wait_for_new_primary(slot, old, FAILOVER)
        .await
        .unwrap();
    assert_ne!(new, old);
    let promoted = cluster.node(new).unwrap();
    assert!(
        promoted
            .command(&["INFO", "replication"])
            .await
            .unwrap()
            .contains("role:master")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_fail_over_when_the_primary_dies() {
    let deployment = RedisSentinel::start().await.unwrap();
    assert_eq!(deployment.sentinels().len(), 3);
    assert!(deployment.url().ends_with("/mymaster"));
    let old = deployment.primary_port_blocking().unwrap();
    assert_eq!(old, deployment.servers()[0].port());
    deployment.primary_blocking().unwrap().kill().unwrap();
    let new = deployment.wait_for_failover(old, FAILOVER).await.unwrap();
    assert_eq!(new, deployment.servers()[1].port());
}
