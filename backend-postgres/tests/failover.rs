//! A failover to a streaming standby: the primary is killed (`kill -9`) while locks are held
//! and renewed, the standby is promoted, and the clients' route is re-pointed at it.
//!
//! Routing: sqlx 0.9 takes one host per URL (a URL listing two hosts is `InvalidInput`, and
//! `target_session_attrs` is ignored), so the store follows a failover through the user's own
//! routing — a virtual IP, DNS, HAProxy, a pooler re-pointed by the failover tool. Here that is
//! the harness's `TcpProxy`, re-pointed at the promoted standby. Replication is asynchronous, the
//! PostgreSQL default: what the primary committed but had not streamed is gone after the
//! failover (the test makes sure of it: replication runs through a proxy that holds the last
//! WAL back and discards it). What the test shows:
//!
//! - **Tokens keep rising**: every grant after the failover has a larger token than every grant
//!   before it, including grants the standby never received (the clock floor
//!   `greatest(token + 1, clock µs)` in `acquire.sql`).
//! - **Holders whose grant was not replicated get the lost signal** (`NotHeld`) at their next
//!   renewal on the new primary; holders whose grant was replicated keep their lock.
//! - **The lock is granted again** within a stated bound: a lost grant's name at once (the new
//!   primary never saw it), a replicated grant whose holder died within its TTL.
//! - **Unknown outcomes are counted**: a contender keeps acquiring through the failover; requests
//!   cut by the kill are `OutcomeUnknown` or `Unavailable`, never a wrong answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fencelock_conformance::harness::{PostgresServer, PostgresServerOptions, TcpProxy};
use fencelock_core::{
    AcquireOptions, ErrorKind, FencingToken, LeaseStore, LockName, Locker, LossReason,
};
use fencelock_postgres::PgLeaseStore;
use tokio::time::Instant;

/// Lease TTL of the locked names; the failover must finish well within it.
const TTL: Duration = Duration::from_secs(15);
/// Renewal interval of the locked names.
const RENEW: Duration = Duration::from_secs(1);
/// The stated bound: after the route points at the new primary, a holder whose grant was lost
/// hears it, and its name is granted again, within this long (renewal interval + one
/// operation timeout + reconnecting, on a loaded machine).
const REGRANT_BOUND: Duration = Duration::from_secs(8);

async fn store(url: &str) -> PgLeaseStore {
    PgLeaseStore::builder()
        .with_op_timeout(Duration::from_secs(3))
        .with_connect_timeout(Duration::from_secs(3))
        .with_max_connections(4)
        .with_url(url)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

fn name(n: &str) -> LockName {
    LockName::new(format!("failover/{n}")).unwrap()
}

/// One acquire attempt of the contender: when it was sent, when it ended, and how.
#[derive(Debug)]
struct Attempt {
    sent: Instant,
    done: Instant,
    outcome: Outcome,
}

#[derive(Debug)]
enum Outcome {
    Granted(LockName, FencingToken),
    Held,
    Unavailable,
    Unknown,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rise_and_lost_grants_are_reported_across_a_failover() {
    let primary = support::own_server(PostgresServerOptions::default()).await;
    // Replication streams through a proxy, so that it can be cut off with WAL in flight.
    let replication = TcpProxy::start(primary.addr()).unwrap();
    let standby = PostgresServer::start_standby_via(replication.port())
        .await
        .unwrap();
    let router = TcpProxy::start(primary.addr()).unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", router.port());
    let holders = store(&url).await;
    let locker = Locker::new(holders.clone());
    let lock = AcquireOptions::new()
        .with_ttl(TTL)
        .with_renew_interval(RENEW)
        .with_no_wait();

    // A name granted and released before, then granted again while the standby is cut off:
    // without the clock floor the new primary would hand out a token it already gave.
    let cycled = name("cycled");
    let first = holders.try_acquire(&cycled, TTL).await.unwrap().unwrap();
    holders.release(&first).await.unwrap();

    // Replicated grants: held and renewed by the locker.
    let mut replicated = Vec::new();
    for i in 0..3 {
        replicated.push(
            locker
                .acquire(name(&format!("replicated-{i}")), lock.clone())
                .await
                .unwrap(),
        );
    }
    // A replicated grant whose holder dies with the primary (a raw lease, never renewed).
    let orphan_ttl = Duration::from_secs(10);
    let orphan = holders
        .try_acquire(&name("orphan"), orphan_ttl)
        .await
        .unwrap()
        .unwrap();
    let orphan_granted = Instant::now();
    standby.wait_replayed(&primary).await.unwrap();

    // The contender keeps acquiring and releasing through everything that follows.
    let contender = store(&url).await;
    let stop = Arc::new(AtomicBool::new(false));
    let contending = {
        let (contender, stop) = (contender.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = 0_u32;
            while !stop.load(Ordering::SeqCst) {
                let n = name(&format!("contended-{}", i % 4));
                i += 1;
                let sent = Instant::now();
                let result = contender.try_acquire(&n, Duration::from_secs(5)).await;
                let done = Instant::now();
                let outcome = match result {
                    Ok(Some(lease)) => {
                        // A release lost in the failover only leaves a 5 s lease behind.
                        let _ = contender.release(&lease).await;
                        Outcome::Granted(n, lease.token())
                    }
                    Ok(None) => Outcome::Held,
                    Err(e) if e.kind() == ErrorKind::Unavailable => Outcome::Unavailable,
                    Err(e) if e.kind() == ErrorKind::OutcomeUnknown => Outcome::Unknown,
                    Err(e) => panic!("contender: {e}"),
                };
                outcomes.push(Attempt {
                    sent,
                    done,
                    outcome,
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Hold back everything the primary streams from now on, then grant what the standby will
    // never see.
    replication.stall();
    let lost_guards = vec![
        locker
            .acquire(name("unreplicated-0"), lock.clone())
            .await
            .unwrap(),
        locker
            .acquire(name("unreplicated-1"), lock.clone())
            .await
            .unwrap(),
        locker.acquire(cycled.clone(), lock).await.unwrap(),
    ];
    assert!(lost_guards[2].token() > first.token());

    // The failover: kill -9 the primary, promote the standby, re-point the route.
    let killed_at = Instant::now();
    primary.kill().unwrap();
    replication.cut();
    drop(replication);
    standby.promote().await.unwrap();
    router.set_upstream(standby.addr());
    router.cut();
    let repointed_at = Instant::now();
    println!(
        "failover: primary killed, standby promoted and routed to in {:?}",
        repointed_at - killed_at
    );

    // The orphaned replicated grant still blocks on the new primary.
    if orphan_granted.elapsed() < orphan_ttl - Duration::from_secs(2) {
        assert!(
            contender
                .try_acquire(orphan.name(), TTL)
                .await
                .unwrap()
                .is_none(),
            "a replicated live grant keeps blocking on the new primary"
        );
    }

    // Holders whose grant was not replicated hear it at their next renewal.
    for guard in &lost_guards {
        let reason = tokio::time::timeout(REGRANT_BOUND, guard.lost())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} not told of its lost grant within {REGRANT_BOUND:?}",
                    guard.name()
                )
            });
        assert!(
            matches!(reason, LossReason::NotHeld | LossReason::Superseded { .. }),
            "{}: {reason}",
            guard.name()
        );
    }
    let lost_heard = repointed_at.elapsed();

    // Their names are granted again at once, with larger tokens than they ever had.
    let regranter = store(&url).await;
    for guard in &lost_guards {
        let again = regranter
            .try_acquire(&guard.name(), TTL)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} is free on the new primary", guard.name()));
        assert!(
            again.token() > guard.token(),
            "{}: token {} after the failover, {} before",
            guard.name(),
            again.token(),
            guard.token()
        );
        regranter.release(&again).await.unwrap();
    }
    let regranted = repointed_at.elapsed();
    assert!(
        regranted < REGRANT_BOUND,
        "granted again after {regranted:?}"
    );
    println!(
        "lost grants reported {lost_heard:?} and granted again {regranted:?} after re-pointing"
    );

    // Holders whose grant was replicated keep their lock: renewed on the new primary.
    tokio::time::sleep(RENEW * 3).await;
    for guard in &replicated {
        assert!(
            guard.loss_reason().is_none(),
            "{}: {:?}",
            guard.name(),
            guard.loss_reason()
        );
        let info = regranter.inspect(&guard.name()).await.unwrap().unwrap();
        assert_eq!(info.token, guard.token());
        assert!(
            info.remaining > TTL - RENEW * 3,
            "{}: renewed on the new primary, {:?} left",
            guard.name(),
            info.remaining
        );
    }

    // The orphaned replicated grant is granted again once its TTL ran out.
    let waited = regranter
        .acquire_waiting(
            orphan.name(),
            TTL,
            None,
            fencelock_core::backend::WaitPolicy::until(Some(Instant::now() + orphan_ttl * 2)),
        )
        .await
        .unwrap()
        .expect("granted once the orphan's TTL ran out");
    assert!(waited.token() > orphan.token());
    assert!(
        orphan_granted.elapsed() < orphan_ttl + Duration::from_secs(3),
        "granted again within the orphan's TTL (+3 s): {:?}",
        orphan_granted.elapsed()
    );

    // The contender: unknown outcomes counted; every grant after the failover above every
    // grant before it, name by name.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let outcomes = contending.await.unwrap();
    let (mut before, mut after, mut straddling) = (Vec::new(), Vec::new(), 0);
    let (mut held, mut unavailable, mut unknown) = (0, 0, 0);
    for attempt in &outcomes {
        match &attempt.outcome {
            // Answered before the kill: the old primary granted it.
            Outcome::Granted(n, token) if attempt.done < killed_at => {
                before.push((n.clone(), *token));
            }
            // Sent after the re-pointing: the new primary granted it.
            Outcome::Granted(n, token) if attempt.sent > repointed_at => {
                after.push((n.clone(), *token));
            }
            // In flight across the failover: either could have; counted, not compared.
            Outcome::Granted(..) => straddling += 1,
            Outcome::Held => held += 1,
            Outcome::Unavailable => unavailable += 1,
            Outcome::Unknown => unknown += 1,
        }
    }
    println!(
        "contender: {} grants before the kill, {} after the failover, {straddling} across it, \
         {held} held, {unavailable} unavailable, {unknown} outcome unknown",
        before.len(),
        after.len()
    );
    assert!(!before.is_empty() && !after.is_empty(), "{outcomes:?}");
    for (n, token) in &after {
        for (m, earlier) in &before {
            if n == m {
                assert!(
                    token > earlier,
                    "{n}: {token} after the failover, {earlier} before"
                );
            }
        }
    }
    for guard in replicated {
        guard.release().await.unwrap();
    }
}

/// The routes sqlx 0.9 does not offer fail closed: a URL listing two hosts is rejected before
/// anything is sent, and `target_session_attrs=read-write` is ignored — a store pointed at a
/// standby grants nothing (the standby refuses writes: `Unavailable`, retry elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_host_urls_are_rejected_and_a_standby_grants_nothing() {
    let primary = support::own_server(PostgresServerOptions::default()).await;
    let standby = PostgresServer::start_standby(&primary).await.unwrap();
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let err = PgLeaseStore::connect(&both).await.unwrap_err();
    println!("two hosts: {err}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // The table exists on the standby (replicated), but nothing can be granted there.
    let _ = store(&primary.url()).await;
    standby.wait_replayed(&primary).await.unwrap();
    let on_standby = PgLeaseStore::builder()
        .with_migrate_on_connect(false)
        .with_url(format!("{}?target_session_attrs=read-write", standby.url()))
        .connect()
        .await
        .unwrap();
    let err = on_standby
        .try_acquire(&name("standby"), TTL)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        on_standby
            .inspect(&name("standby"))
            .await
            .unwrap()
            .is_none()
    );
}
