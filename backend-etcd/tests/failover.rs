//! kill -9 of the etcd leader while a lease is held: never two holders, tokens keep rising.
//!
//! The store gives each request 1 s, through an election: calls whose point lies elsewhere are
//! settled (`fencelock_conformance::settle`), the contender counts its transient errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::EtcdCluster;
use fencelock_conformance::settle;
use fencelock_core::{AcquireOptions, FencingToken, LeaseStore, Locker};
use fencelock_etcd::EtcdLeaseStore;
use support::unique_name;
use tokio::time::{Instant, sleep};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_never_yields_two_holders_and_tokens_keep_rising() {
    let cluster = EtcdCluster::start(3).await.unwrap();
    let store = EtcdLeaseStore::builder()
        .with_urls(cluster.endpoints())
        .with_op_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let name = unique_name("failover");
    let ttl = Duration::from_secs(2);
    let mut tokens: Vec<FencingToken> = Vec::new();
    for _ in 0..3 {
        let lease = settle::grant(&store, &name, ttl, tokens.last().copied()).await;
        tokens.push(lease.token());
        settle::release(&store, &lease).await;
    }
    let locker = Locker::new(store.clone());
    let guard = settle::acquire(&store, &name, tokens.last().copied(), || {
        locker.try_acquire(&name, AcquireOptions::new().with_ttl(ttl).with_no_wait())
    })
    .await
    .expect("granted");
    tokens.push(guard.token());

    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .await
        .unwrap();
    cluster.member(leader).unwrap().kill().unwrap();
    let killed_at = Instant::now();
    let new_leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    assert_ne!(new_leader, leader);
    println!("new leader after {:?}", killed_at.elapsed());

    // For three TTLs a contender keeps trying. Whenever it wins, the first holder must already
    // know it lost (its deadline is conservative), so the two never overlap.
    let until = Instant::now() + ttl * 3;
    let mut contender = None;
    let mut transient = 0;
    while Instant::now() < until && contender.is_none() {
        match store.try_acquire(&name, ttl).await {
            Ok(Some(lease)) => {
                assert!(
                    !guard.is_valid(),
                    "two holders: {} and {}",
                    guard.token(),
                    lease.token()
                );
                contender = Some(lease);
            }
            Ok(None) => assert!(guard.is_valid() || guard.loss_reason().is_some()),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                transient += 1;
            }
        }
        sleep(Duration::from_millis(50)).await;
    }
    match contender {
        Some(lease) => {
            println!(
                "the lease was lost in the failover ({:?}); contender got {}",
                guard.loss_reason(),
                lease.token()
            );
            tokens.push(lease.token());
            settle::release(&store, &lease).await;
        }
        None if guard.is_valid() => {
            assert_eq!(
                settle::inspect(&store, &name).await.map(|i| i.token),
                Some(guard.token())
            );
            println!("the lease survived the failover ({transient} transient errors on the way)");
            settle::release_guard(&store, guard).await;
        }
        None => {
            // Lost, yet the contender never won: only a grant of one of its attempts that
            // failed can have held the name meanwhile (nobody else asks for it).
            assert!(
                transient > 0,
                "held through the failover, or the contender wins: lost ({:?}) with every answer definite",
                guard.loss_reason()
            );
            let holder = settle::inspect(&store, &name).await;
            assert!(
                holder.as_ref().is_none_or(|h| h.token > guard.token()),
                "the lost grant {} still holds the name three TTLs on: {holder:?}",
                guard.token()
            );
            println!(
                "the lease was lost in the failover ({:?}); {transient} contender attempts failed transiently; holder now {holder:?}",
                guard.loss_reason()
            );
        }
    }

    cluster.member(leader).unwrap().restart().await.unwrap();
    for _ in 0..3 {
        let floor = tokens.iter().max().copied();
        let lease = settle::grant(&store, &name, ttl, floor).await;
        tokens.push(lease.token());
        settle::release(&store, &lease).await;
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens {tokens:?} must rise"
    );
}
