//! A Sentinel failover while a lock is held: the primary killed (kill -9) after a grant the
//! replica never received. The store finds the promoted replica through the sentinels, the
//! holder is told its lease is lost (never that it still holds), and the next token is above
//! every earlier one although the promoted replica missed the counter (the server-clock floor).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use fencelock_conformance::harness::RedisSentinel;
use fencelock_core::{Error, ErrorKind, Lease, LeaseStore, LockName};
use fencelock_redis::{RedisLeaseStore, SentinelConnection};

/// Bound on the sentinels' failover after the primary dies (`down-after-milliseconds 1000`, an
/// election and a promotion; more on a loaded machine).
const FAILOVER: Duration = Duration::from_secs(30);
/// Bound, after the failover, on the lock being granted again.
const RECOVERY: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_secs(30);

/// Renew until the store answers again: `Ok` or a loss; `Unavailable`/`OutcomeUnknown` while
/// the deployment fails over are counted and retried.
async fn renew_through_failover(
    store: &RedisLeaseStore<SentinelConnection>,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_replica_that_missed_the_grant_loses_it_and_tokens_rise() {
    let deployment = RedisSentinel::start().await.unwrap();
    let store = RedisLeaseStore::builder()
        .with_url(deployment.url())
        .with_op_timeout(Duration::from_millis(1000))
        .connect_sentinel()
        .await
        .unwrap();
    let name = LockName::new("sentinel-fault").unwrap();
    let mut earlier = Vec::new();
    for _ in 0..3 {
        let lease = store.try_acquire(&name, TTL).await.unwrap().unwrap();
        earlier.push(lease.token());
        store.release(&lease).await.unwrap();
    }

    let old = deployment.primary_port_blocking().unwrap();
    let primary = deployment.primary_blocking().unwrap();
    let replica = deployment
        .servers()
        .iter()
        .find(|s| s.port() != old)
        .unwrap();
    // Cut the replica's link while it is paused, so the grant below never reaches it.
    replica.pause().unwrap();
    let cut = primary
        .command(&["CLIENT", "KILL", "TYPE", "replica"])
        .await
        .unwrap();
    assert_eq!(cut, ":1\r\n");
    let held = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    earlier.push(held.token());
    primary.kill().unwrap();
    replica.resume().unwrap();

    let (new, (renewed, transient)) = tokio::join!(
        deployment.wait_for_failover(old, FAILOVER),
        renew_through_failover(&store, &held)
    );
    assert_eq!(new.unwrap(), replica.port());
    let err = renewed.expect_err("the grant was never replicated; a renewal must not succeed");
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
    println!("failover: {transient} transient renew errors, then {err}");

    let start = Instant::now();
    let again = loop {
        match store.try_acquire(&name, TTL).await {
            Ok(Some(lease)) => break lease,
            Ok(None) | Err(_) if start.elapsed() < RECOVERY => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("not granted within {RECOVERY:?}: {other:?}"),
        }
    };
    let highest = earlier.iter().max().copied().unwrap();
    assert!(again.token() > highest, "{} <= {highest}", again.token());
    store.release(&again).await.unwrap();
}
