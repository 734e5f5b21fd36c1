//! A Redis Cluster primary killed (kill -9) while it holds a lock's slot: the replica is
//! promoted, and the holder either keeps renewing (the grant had reached the replica) or is told
//! its lease is lost (it had not); either way tokens of new grants rise above every earlier
//! token, and the lock is granted again within a stated bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use fencelock_conformance::harness::{ClusterNode, RedisCluster};
use fencelock_core::{Error, ErrorKind, Lease, LeaseStore, LockName};
use fencelock_redis::RedisLeaseStore;
use fencelock_redis::redis::cluster_async::ClusterConnection;

/// Bound on a replica's promotion after its primary dies (node timeout 1 s; elections take a
/// second or two more on a loaded machine).
const FAILOVER: Duration = Duration::from_secs(20);
/// Bound, after the promotion, on the store's first successful request for the slot (the
/// driver refreshes its slot map on the first errors).
const RECOVERY: Duration = Duration::from_secs(10);
/// Lease TTL: longer than a failover, so a replicated grant outlives it.
const TTL: Duration = Duration::from_secs(30);

async fn store(cluster: &RedisCluster) -> RedisLeaseStore<ClusterConnection> {
    RedisLeaseStore::builder()
        .with_url(cluster.url())
        .with_op_timeout(Duration::from_millis(1000))
        .connect_cluster()
        .await
        .unwrap()
}

/// The replica of the primary on `port`.
fn replica_of(topology: &[ClusterNode], port: u16) -> u16 {
    let primary = topology.iter().find(|n| n.port == port).unwrap();
    topology
        .iter()
        .find(|n| n.primary_id.as_deref() == Some(primary.id.as_str()))
        .unwrap()
        .port
}

/// `field:value` of an `INFO` reply, as a number.
fn info_number(info: &str, field: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {info}"))
}

/// Renew until the store answers for the slot again: `Ok` (the grant survived) or a loss
/// (`LeaseLost`); `Unavailable`/`OutcomeUnknown` while the cluster fails over are counted and
/// retried.
async fn renew_through_failover(
    store: &RedisLeaseStore<ClusterConnection>,
    lease: &Lease,
) -> (Result<Lease, Error>, u32) {
    let deadline = Instant::now() + FAILOVER + RECOVERY;
    let mut transient = 0;
    loop {
        match store.renew(lease, TTL).await {
            Err(e)
                if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::OutcomeUnknown)
                    && Instant::now() < deadline =>
            {
                transient += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return (other, transient),
        }
    }
}

/// Acquire until granted, within `bound`; the time it took.
async fn acquire_within(
    store: &RedisLeaseStore<ClusterConnection>,
    name: &LockName,
    bound: Duration,
) -> (Lease, Duration) {
    let start = Instant::now();
    loop {
        match store.try_acquire(name, TTL).await {
            Ok(Some(lease)) => return (lease, start.elapsed()),
            Ok(None) | Err(_) if start.elapsed() < bound => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("not granted within {bound:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_after_replication_keeps_the_grant_and_tokens_rise() {
    let cluster = RedisCluster::start().await.unwrap();
    let store = store(&cluster).await;
    let name = LockName::new("cluster-fault-replicated").unwrap();
    let key = store.layout().lock_key(&name);
    let first = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    store.release(&first).await.unwrap();
    let held = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    assert!(held.token() > first.token());

    let slot = cluster.slot_of(&key).await.unwrap();
    let old = cluster.primary_of_key(&key).await.unwrap();
    let primary = cluster.node(old).unwrap();
    let replica = replica_of(&cluster.topology_blocking().unwrap(), old);
    // Wait until the replica has everything the primary wrote, the grant included.
    let written = info_number(
        &primary.command(&["INFO", "replication"]).await.unwrap(),
        "master_repl_offset",
    );
    let synced = Instant::now() + Duration::from_secs(10);
    while info_number(
        &cluster
            .node(replica)
            .unwrap()
            .command(&["INFO", "replication"])
            .await
            .unwrap(),
        "slave_repl_offset",
    ) < written
    {
        assert!(Instant::now() < synced, "replica never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    primary.kill().unwrap();
    let killed = Instant::now();
    // The holder keeps renewing from the moment of the kill.
    let (new, (renewed, transient)) = tokio::join!(
        cluster.wait_for_new_primary(slot, old, FAILOVER),
        renew_through_failover(&store, &held)
    );
    assert_eq!(new.unwrap(), replica);

    // The grant reached the replica, so renewals continue on the promoted one.
    let renewed = renewed.unwrap_or_else(|e| panic!("renew after failover: {e}"));
    assert_eq!(renewed.token(), held.token());
    println!("failover: {transient} transient renew errors");
    store.release(&renewed).await.unwrap();
    let (again, waited) = acquire_within(&store, &name, RECOVERY).await;
    assert!(
        again.token() > held.token(),
        "{} <= {}",
        again.token(),
        held.token()
    );
    assert!(killed.elapsed() < FAILOVER + 2 * RECOVERY);
    println!("granted again {waited:?} after the release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_before_replication_loses_the_grant_but_tokens_rise() {
    let cluster = RedisCluster::start().await.unwrap();
    let store = store(&cluster).await;
    let name = LockName::new("cluster-fault-unreplicated").unwrap();
    let key = store.layout().lock_key(&name);
    let slot = cluster.slot_of(&key).await.unwrap();
    let old = cluster.primary_of_key(&key).await.unwrap();
    let replica_port = replica_of(&cluster.topology_blocking().unwrap(), old);
    let replica = cluster.node(replica_port).unwrap();

    // Earlier tokens, replicated; then a grant the replica never sees.
    let mut earlier = Vec::new();
    for _ in 0..3 {
        let lease = store.try_acquire(&name, TTL).await.unwrap().unwrap();
        earlier.push(lease.token());
        store.release(&lease).await.unwrap();
    }
    // A paused replica would still read the stream from its socket buffer when resumed: cut
    // its link while it is paused, so nothing written after the cut reaches it.
    replica.pause().unwrap();
    let primary = cluster.node(old).unwrap();
    let cut = primary
        .command(&["CLIENT", "KILL", "TYPE", "replica"])
        .await
        .unwrap();
    assert_eq!(cut, ":1\r\n");
    let held = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    earlier.push(held.token());
    primary.kill().unwrap();
    replica.resume().unwrap();
    let killed = Instant::now();
    let (new, (renewed, transient)) = tokio::join!(
        cluster.wait_for_new_primary(slot, old, FAILOVER),
        renew_through_failover(&store, &held)
    );
    assert_eq!(new.unwrap(), replica_port);

    // The promoted replica never had the grant: the holder is told it is lost, never that it
    // still holds.
    let err = renewed.expect_err("the grant was never replicated; a renewal must not succeed");
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    println!("failover: {transient} transient renew errors, then {err}");

    // The lock is free on the new primary, and its token is above every earlier one although
    // the counter was lost with the grant (the server-clock floor).
    let (again, waited) = acquire_within(&store, &name, RECOVERY).await;
    let highest = earlier.iter().max().copied().unwrap();
    assert!(again.token() > highest, "{} <= {highest}", again.token());
    assert!(killed.elapsed() < FAILOVER + 2 * RECOVERY);
    println!("granted again {waited:?} after the renewal failed");
}

/// A slot migrated (resharding) while a lock on it is held and renewed: every renewal between the
/// steps succeeds (the driver follows `ASK` and then `MOVED`) or fails typed — never a silent
/// wrong answer — and after the move renew, release and a new grant with a higher token work on
/// the new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_migrated_while_held_keeps_the_lock_working() {
    let cluster = RedisCluster::start().await.unwrap();
    let store = store(&cluster).await;
    let name = LockName::new("cluster-migrated").unwrap();
    let key = store.layout().lock_key(&name);
    let slot = cluster.slot_of(&key).await.unwrap();
    let from = cluster.primary_of_key(&key).await.unwrap();
    let to = cluster
        .topology_blocking()
        .unwrap()
        .iter()
        .find(|n| n.is_live_primary && n.port != from)
        .unwrap()
        .port;
    let held = store.try_acquire(&name, TTL).await.unwrap().unwrap();

    let mut lease = held.clone();
    let mut renew = async |step: &str| match store.renew(&lease, TTL).await {
        Ok(renewed) => {
            assert_eq!(renewed.token(), held.token(), "{step}");
            lease = renewed;
        }
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::OutcomeUnknown),
            "{step}: a renewal during a migration failed untyped: {e}"
        ),
    };
    cluster.begin_slot_migration(slot, to).await.unwrap();
    renew("migrating, keys on the source").await;
    let moved = cluster.move_slot_keys(slot, to).await.unwrap();
    assert!(moved >= 2, "the grant and the counter moved: {moved}");
    renew("migrating, keys on the target (ASK)").await;
    cluster.finish_slot_migration(slot, to).await.unwrap();
    renew("migrated (MOVED)").await;
    assert_eq!(cluster.primary_of_key(&key).await.unwrap(), to);

    // On the new owner: the renewal succeeds (retried through transient errors), release
    // works, and the next token is higher.
    let (renewed, _) = renew_through_failover(&store, &lease).await;
    let renewed = renewed.unwrap_or_else(|e| panic!("renew after the migration: {e}"));
    store.release(&renewed).await.unwrap();
    let (again, _) = acquire_within(&store, &name, RECOVERY).await;
    assert!(again.token() > held.token());
    store.release(&again).await.unwrap();
}
