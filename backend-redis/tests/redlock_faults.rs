//! Redlock under failures, against real redis-server processes: a server killed, a server
//! restarted empty, a paused minority, a paused majority, and two clients racing.
//!
//! Every server has at most 100 ms (a quarter of the TTL, if shorter) to answer, so any call
//! may fail transiently on a loaded machine; where a test's point lies elsewhere its calls are
//! settled (`fencelock_conformance::settle`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::{RedisServer, RedisServerOptions};
use fencelock_conformance::settle;
use fencelock_core::backend::WaitPolicy;
use fencelock_core::{
    AcquireOptions, ErrorKind, FenceGate, FencingToken, Lease, LeaseStore, LockName, Locker,
    LossReason,
};
use fencelock_redis::RedlockLeaseStore;
use futures::future::join_all;
use support::{eventually, name};
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(60);
const RECONNECT: Duration = Duration::from_secs(10);

async fn servers(options: &[RedisServerOptions]) -> Vec<RedisServer> {
    join_all(options.iter().cloned().map(RedisServer::start))
        .await
        .into_iter()
        .map(|s| s.unwrap_or_else(|e| panic!("starting redis-server: {e}")))
        .collect()
}

async fn ephemeral(n: usize) -> Vec<RedisServer> {
    servers(&vec![RedisServerOptions::ephemeral(); n]).await
}

async fn store(servers: &[RedisServer]) -> RedlockLeaseStore {
    RedlockLeaseStore::connect(servers.iter().map(RedisServer::url))
        .await
        .unwrap()
}

/// The TTL of the grants [`cycle`] takes. A release that missed a server (its 100 ms ran out on
/// a loaded machine) leaves the grant there; where only a bare majority of servers is up, that
/// blocks the name until this TTL runs out.
const CYCLE_TTL: Duration = Duration::from_secs(3);

/// Acquires and releases `name` `rounds` times (settled: servers may be restarting), waiting
/// out a grant an earlier release left on a server it missed; returns the tokens. `seen` are
/// the tokens granted for `name` before.
async fn cycle(
    store: &RedlockLeaseStore,
    name: &LockName,
    rounds: usize,
    seen: &[FencingToken],
) -> Vec<FencingToken> {
    let mut tokens = Vec::new();
    for _ in 0..rounds {
        let floor = seen.iter().chain(&tokens).max().copied();
        let policy = WaitPolicy::until(Some(Instant::now() + CYCLE_TTL * 2));
        let lease = settle::acquire(store, name, floor, || {
            store.acquire_waiting(name, CYCLE_TTL, None, policy)
        })
        .await
        .unwrap_or_else(|| panic!("`{name}` still held {:?} on", CYCLE_TTL * 2));
        tokens.push(lease.token());
        settle::release(store, &lease).await;
    }
    tokens
}

/// A server whose loss leaves `lease`'s grant on a majority of the others. A grant needs only a
/// majority: a server may have refused it (its counter was ahead, or a release that missed it
/// left an older grant there), and losing one that holds it then leaves too few. Asked after
/// the grant: a write still on its way can only add servers, never remove them.
async fn expendable(servers: &[RedisServer], store: &RedlockLeaseStore, lease: &Lease) -> usize {
    let key = store.layout().lock(lease.name()).lock;
    let value = format!("{}:{}", lease.holder(), lease.token());
    let mut holding = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        if server
            .command(&["GET", &key])
            .await
            .unwrap()
            .contains(&value)
        {
            holding.push(i);
        }
    }
    assert!(
        holding.len() >= store.quorum(),
        "granted, yet only servers {holding:?} of {} hold {value}",
        servers.len()
    );
    let spare = (0..servers.len()).find(|i| !holding.contains(i));
    // With every server holding it, any one will do; else the one that refused it.
    spare.unwrap_or(0)
}

fn assert_rising(tokens: &[FencingToken]) {
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens must strictly increase: {tokens:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_killed_locking_continues_and_tokens_rise() {
    let servers = ephemeral(3).await;
    let store = store(&servers).await;
    let n = name("killed");
    let mut tokens = cycle(&store, &n, 3, &[]).await;
    // With one server dead, a release that misses another leaves the grant there until its
    // TTL: the held grant has the cycles' TTL, not a long one.
    let held = settle::grant(&store, &n, CYCLE_TTL, tokens.last().copied()).await;
    tokens.push(held.token());

    servers[expendable(&servers, &store, &held).await]
        .kill()
        .unwrap();

    // The grant still holds on the other two: nobody else gets it, and its holder keeps it.
    let other = settle::try_acquire(&store, &n, LONG, Some(held.token())).await;
    assert!(
        other.is_none(),
        "granted while {} holds: {other:?}",
        held.token()
    );
    let held = settle::definite("renew", || store.renew(&held, CYCLE_TTL)).await;
    assert_eq!(
        settle::inspect(&store, &n).await.map(|i| i.token),
        Some(held.token())
    );
    settle::release(&store, &held).await;
    let started = Instant::now();
    tokens.extend(cycle(&store, &n, 5, &tokens).await);
    let per_cycle = started.elapsed() / 5;
    assert_rising(&tokens);
    assert!(
        per_cycle < Duration::from_millis(100),
        "a dead server must not slow the others down: {per_cycle:?} per acquire + release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_restarted_empty_tokens_rise() {
    let servers = ephemeral(3).await;
    let store = store(&servers).await;
    let n = name("restarted");
    let mut tokens = cycle(&store, &n, 3, &[]).await;
    let held = settle::grant(&store, &n, LONG, tokens.last().copied()).await;
    tokens.push(held.token());

    let restarted = &servers[expendable(&servers, &store, &held).await];
    restarted.kill().unwrap();
    restarted.restart().await.unwrap();
    // It came back without the grant and without the counter.
    assert_eq!(restarted.command(&["DBSIZE"]).await.unwrap(), ":0\r\n");

    // The grant still holds on the other two.
    let other = settle::try_acquire(&store, &n, LONG, Some(held.token())).await;
    assert!(
        other.is_none(),
        "granted while {} holds: {other:?}",
        held.token()
    );
    settle::release(&store, &held).await;
    tokens.extend(cycle(&store, &n, 3, &tokens).await);
    assert_rising(&tokens);
}

/// The case the clock floor exists for: the only server shared by the last grants' majority and
/// the next acquire's majority lost its data. Server C (append-only file, survives a kill) is
/// down while grants go to A and B; then A restarts empty and B dies, so the next acquire sees
/// only A (no counter) and C (an old counter). Its token must still be above every earlier one:
/// the servers' clocks, which every read floors at, moved on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rises_when_the_only_shared_server_lost_its_data() {
    let servers = servers(&[
        RedisServerOptions::ephemeral(),
        RedisServerOptions::ephemeral(),
        RedisServerOptions::aof(),
    ])
    .await;
    let store = store(&servers).await;
    let n = name("floor");
    let mut tokens = cycle(&store, &n, 2, &[]).await;
    // The last release returns once a majority freed the name; it must reach C too, or C keeps
    // the grant in its append-only file. On a loaded machine the request to C may miss its
    // 100 ms: then the grant's TTL frees the name there.
    let lock_key = store.layout().lock(&n).lock;
    eventually(CYCLE_TTL * 2, "C freed the name", || async {
        servers[2].command(&["EXISTS", &lock_key]).await.unwrap() == ":0\r\n"
    })
    .await;
    servers[2].kill().unwrap();
    tokens.extend(cycle(&store, &n, 3, &tokens).await);
    servers[2].restart().await.unwrap();
    servers[0].kill().unwrap();
    servers[0].restart().await.unwrap();
    servers[1].kill().unwrap();
    let after = cycle(&store, &n, 2, &tokens).await;
    assert!(
        after[0] > *tokens.iter().max().unwrap(),
        "{after:?} after {tokens:?}"
    );
    tokens.extend(after);
    assert_rising(&tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_minority_grants_within_the_validity_budget() {
    let servers = ephemeral(5).await;
    let store = store(&servers).await;
    let n = name("paused-minority");
    let mut tokens = cycle(&store, &n, 2, &[]).await;
    servers[0].pause().unwrap();
    servers[3].pause().unwrap();
    let ttl = Duration::from_secs(2);
    for _ in 0..5 {
        // Timed from the attempt that was granted: one that failed transiently on a loaded
        // machine is settled, not timed.
        let mut sent = Instant::now();
        let lease = settle::acquire(&store, &n, tokens.last().copied(), || {
            sent = Instant::now();
            store.try_acquire(&n, ttl)
        })
        .await
        .expect("granted");
        let took = sent.elapsed();
        // The grant never waited for the paused servers (their time limit is 100 ms) …
        assert!(took < Duration::from_millis(90), "acquire took {took:?}");
        // … and its deadline is inside the budget: sent + TTL − elapsed − drift.
        let drift = ttl / 100 + Duration::from_millis(2);
        assert!(
            lease.deadline() <= sent + ttl - drift,
            "deadline beyond the budget"
        );
        assert!(lease.deadline() > Instant::now());
        tokens.push(lease.token());
        let lease = settle::definite("renew", || store.renew(&lease, ttl)).await;
        settle::release(&store, &lease).await;
    }
    assert_rising(&tokens);
    servers[0].resume().unwrap();
    servers[3].resume().unwrap();
    tokens.extend(cycle(&store, &n, 2, &tokens).await);
    assert_rising(&tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_majority_fires_the_lost_signal() {
    let servers = ephemeral(3).await;
    let store = store(&servers).await;
    let locker = Locker::new(store.clone());
    let n = name("paused-majority");
    let ttl = Duration::from_millis(600);
    let guard = settle::acquire(&store, &n, None, || {
        locker.try_acquire(&n, AcquireOptions::new().with_ttl(ttl).with_no_wait())
    })
    .await
    .expect("granted");
    let token = guard.token();
    let cancel = guard.cancellation_token();
    servers[0].pause().unwrap();
    servers[1].pause().unwrap();
    let paused_at = Instant::now();
    let reason = tokio::time::timeout(ttl * 3, guard.lost())
        .await
        .expect("the lost signal fired");
    assert_eq!(reason, LossReason::DeadlineReached);
    assert!(
        paused_at.elapsed() <= ttl + Duration::from_millis(100),
        "fired {:?} after the pause, the lease's TTL is {ttl:?}",
        paused_at.elapsed()
    );
    assert!(!guard.is_valid());
    // `lost()` answers from the local deadline; the watchdog fires the tokens right after.
    tokio::time::timeout(Duration::from_millis(200), cancel.cancelled())
        .await
        .expect("the cancellation token fired");
    assert_eq!(guard.check().unwrap_err().kind(), ErrorKind::LeaseLost);
    servers[0].resume().unwrap();
    servers[1].resume().unwrap();
    drop(guard);
    // Once the old grant expired everywhere, the next one has a greater token.
    let resumed = Instant::now();
    let next = loop {
        if let Some(lease) = settle::try_acquire(&store, &n, LONG, Some(token)).await {
            break lease;
        }
        assert!(
            resumed.elapsed() < RECONNECT,
            "still held {RECONNECT:?} after the pause: {:?}",
            settle::inspect(&store, &n).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(next.token() > token, "{} after {token}", next.token());
}

/// How one racing client's attempts were answered.
#[derive(Debug, Default)]
struct Answers {
    attempts: u32,
    /// `Ok(None)`: the other client's grant (or one nobody knows) holds the name.
    held: u32,
    /// `Unavailable`: not applied (or rolled back).
    unavailable: u32,
    /// `OutcomeUnknown`: perhaps granted, to a holder no one knows; nobody can use such a
    /// grant, and it ends at its TTL or with its rollback.
    unknown: u32,
}

/// Two clients with their own connections race for one name on 3 servers. Each grant's
/// validity runs from the moment `try_acquire` returned to its deadline (or its release); no two
/// may overlap, tokens must rise in grant order, and a fence gate admits every write.
///
/// The TTL of 80 ms gives each server 20 ms to answer, so on a loaded machine some attempts
/// end in a transient error (`OutcomeUnknown` when a server may have applied the request). Such
/// an attempt is counted, not used: a grant it may have made is held by nobody the test knows
/// and ends at its TTL or with its rollback. Fewer attempts may fail so than are granted, or
/// the race proved little.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_racing_never_both_hold_a_valid_grant() {
    let servers = ephemeral(3).await;
    let clients = [store(&servers).await, store(&servers).await];
    let n = name("race");
    let ttl = Duration::from_millis(80);
    let until = Instant::now() + Duration::from_secs(3);
    let gate = std::sync::Arc::new(FenceGate::new());
    let tasks = clients.into_iter().enumerate().map(|(client, store)| {
        let (n, gate) = (n.clone(), gate.clone());
        tokio::spawn(async move {
            let mut grants = Vec::new();
            let mut answers = Answers::default();
            let mut round = 0_u32;
            while Instant::now() < until {
                round += 1;
                answers.attempts += 1;
                let lease = match store.try_acquire(&n, ttl).await {
                    Ok(Some(lease)) => lease,
                    Ok(None) => {
                        answers.held += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::OutcomeUnknown => {
                        answers.unknown += 1;
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::Unavailable => {
                        answers.unavailable += 1;
                        continue;
                    }
                    Err(e) => panic!("client {client}, attempt {round}: {e}"),
                };
                let from = Instant::now();
                gate.admit("resource", lease.token())
                    .unwrap_or_else(|e| panic!("client {client}: {e}"));
                // Hold briefly; every third grant is left to expire instead of released.
                tokio::time::sleep(Duration::from_millis(u64::from(round % 4) * 5)).await;
                let to = if round.is_multiple_of(3) {
                    lease.deadline()
                } else {
                    let to = Instant::now().min(lease.deadline());
                    let _ = store.release(&lease).await;
                    to
                };
                grants.push((from, to, lease.token(), client));
                if round.is_multiple_of(3) {
                    tokio::time::sleep_until(lease.deadline()).await;
                }
            }
            (grants, answers)
        })
    });
    let mut grants = Vec::new();
    let mut answers = Vec::new();
    for (client, task) in join_all(tasks).await.into_iter().enumerate() {
        let (won, answered) = task.unwrap_or_else(|e| panic!("client {client}: {e}"));
        println!(
            "client {client}: {} attempts: {} granted, {} held, {} unavailable, {} outcome unknown",
            answered.attempts,
            won.len(),
            answered.held,
            answered.unavailable,
            answered.unknown
        );
        grants.extend(won);
        answers.push(answered);
    }
    grants.sort_by_key(|g| g.0);
    let by_client = |c| grants.iter().filter(|g| g.3 == c).count();
    assert!(
        by_client(0) > 5 && by_client(1) > 5,
        "both clients won some rounds: {} and {}",
        by_client(0),
        by_client(1)
    );
    // Nearly every attempt meets the other client's grant ("held"); the ones that count are
    // those that could change hands. Fewer of them may fail than succeed.
    let failed: u32 = answers.iter().map(|a| a.unavailable + a.unknown).sum();
    assert!(
        (failed as usize) < grants.len(),
        "most attempts must be answered definitely: {failed} failed transiently, {} granted",
        grants.len()
    );
    for pair in grants.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            a.1 <= b.0,
            "two valid grants overlap: token {} (client {}) until {:?} and token {} (client {}) from {:?}",
            a.2,
            a.3,
            a.1,
            b.2,
            b.3,
            b.0
        );
        assert!(
            a.2 < b.2,
            "tokens must rise in grant order: {} then {}",
            a.2,
            b.2
        );
    }
}

#[tokio::test]
async fn bad_configurations_are_invalid_input() {
    for servers in [
        vec![],
        vec!["redis://127.0.0.1:1"],
        vec!["redis://127.0.0.1:1", "redis://127.0.0.1:2"],
        vec![
            "redis://127.0.0.1:1",
            "redis://127.0.0.1:2",
            "redis://127.0.0.1:3",
            "redis://127.0.0.1:4",
        ],
        vec![
            "redis://127.0.0.1:1",
            "redis://127.0.0.1:2",
            "redis://127.0.0.1:1",
        ],
        vec!["redis://127.0.0.1:1", "redis://127.0.0.1:2", "nonsense://"],
    ] {
        let err = RedlockLeaseStore::connect(servers.clone())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{servers:?}: {err}");
    }
    let err = RedlockLeaseStore::builder()
        .with_urls([
            "redis://127.0.0.1:1",
            "redis://127.0.0.1:2",
            "redis://127.0.0.1:3",
        ])
        .with_drift_factor(0.7)
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_majority_reachable_is_unavailable_and_ttls_below_the_drift_are_invalid() {
    let servers = ephemeral(3).await;
    let store = store(&servers).await;
    let n = name("minority");
    let err = store
        .try_acquire(&n, Duration::from_millis(4))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    servers[0].kill().unwrap();
    servers[1].kill().unwrap();
    let err = store.try_acquire(&n, LONG).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("no majority"), "{err}");
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let err = RedlockLeaseStore::connect(urls).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}
