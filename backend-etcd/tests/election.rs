//! Election observers on etcd are woken by an etcd watch on the election's queue (grants,
//! hand-overs, resignations, revokes), one per observed name, ended with its last observer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::EtcdCluster;
use fencelock_core::{LeaseStore, LockName};
use fencelock_etcd::EtcdLeaseStore;
use support::elect::{Observer, candidate, election, label_of};
use support::{PROMPTLY, shared_endpoints, unique_name, wait_for_queue_len};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout};

/// A grant, a hand-over (a delete, no write for the new leader), a resignation and a revoke
/// by another client each reach an observer that polls once a minute within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_are_pushed_grants_handovers_and_vacancies() {
    let endpoints = shared_endpoints().await;
    let leaders = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("pushed");
    let mut observer = Observer::start(&endpoints, &name).await;
    assert_eq!(observer.next("the first answer").await, None);

    let theirs = election(&leaders, &name);
    let first = observer.elects(&theirs, "first").await;

    // A hand-over: the next leader's key is already queued; the resignation's delete is the
    // only write.
    let waiting = tokio::spawn({
        let theirs = theirs.clone();
        async move { theirs.campaign(candidate("second")).await }
    });
    wait_for_queue_len(&leaders, &name, 2).await;
    let (resigned, seen) = observer.pushed("the hand-over", first.resign()).await;
    resigned.unwrap();
    let second = timeout(PROMPTLY, waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(label_of(seen.as_ref()), Some("second"));
    assert_eq!(seen.unwrap().term, second.term());

    let (resigned, seen) = observer.pushed("the resignation", second.resign()).await;
    resigned.unwrap();
    assert_eq!(seen, None);

    // Broken by another client: a delete and a revoke; the leader's lease had a minute left.
    let third = observer.elects(&theirs, "third").await;
    let (broken, seen) = observer
        .pushed("the revoke", leaders.force_release(&name))
        .await;
    assert_eq!(broken.unwrap(), Some(third.term()));
    assert_eq!(seen, None);
    drop(third);
}

/// Keys of the nested election `NAME/sub` share `NAME/`'s range, but are not `NAME`'s
/// leaders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_elections_are_not_reported() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("outer");
    let nested = LockName::new(format!("{name}/sub")).unwrap();
    let mut observer = Observer::start(&endpoints, &name).await;
    assert_eq!(observer.next("the first answer").await, None);
    let inner = election(&store, &nested)
        .campaign(candidate("inner"))
        .await
        .unwrap();
    let outer = observer.elects(&election(&store, &name), "outer").await;
    inner.resign().await.unwrap();
    let (resigned, seen) = observer.pushed("the outer vacancy", outer.resign()).await;
    resigned.unwrap();
    assert_eq!(seen, None);
}

/// `etcd_debugging_mvcc_watcher_total` of the member at `addr`: the watches etcd keeps.
async fn etcd_watchers(addr: std::net::SocketAddr) -> u64 {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .unwrap_or_else(|| panic!("no watcher gauge in /metrics: {text:.300}"))
        .trim()
        .parse::<f64>()
        .map(|n| n as u64)
        .unwrap()
}

/// Polls until the store has `tasks` observer watches and etcd `watchers` watches (states,
/// not events we could await).
async fn wait_for_watches(
    store: &EtcdLeaseStore,
    addr: std::net::SocketAddr,
    tasks: usize,
    watchers: u64,
) {
    let started = Instant::now();
    loop {
        let now = (store.observed_elections(), etcd_watchers(addr).await);
        if now == (tasks, watchers) {
            return;
        }
        assert!(
            started.elapsed() < PROMPTLY,
            "(observer watches, etcd watchers) = {now:?}, expected {:?}",
            (tasks, watchers)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One etcd watch per observed name, however many observers; it ends (in etcd too) with the
/// name's last observer, and the next observer starts a new one that pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_watch_per_observed_name_ends_with_its_last_observer() {
    // A member of our own: its watcher gauge counts this test's watches only.
    let cluster = EtcdCluster::start(1).await.expect("start etcd");
    let addr = cluster.members()[0].client_addr();
    let store = EtcdLeaseStore::connect(cluster.endpoints()).await.unwrap();
    assert_eq!(store.observed_elections(), 0);
    let (a, b) = (unique_name("watched-a"), unique_name("watched-b"));

    let mut a1 = election(&store, &a).observe().unwrap();
    let mut a2 = election(&store, &a).observe().unwrap();
    let mut b1 = election(&store, &b).observe().unwrap();
    for watch in [&mut a1, &mut a2, &mut b1] {
        let first = timeout(PROMPTLY, watch.changed()).await.unwrap().unwrap();
        assert_eq!(first, None, "the first answer");
    }
    wait_for_watches(&store, addr, 2, 2).await;

    drop(a1);
    // A negative: nothing to await but time; three idle checks of the task.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.observed_elections(), 2, "a2 still observes `a`");
    assert_eq!(etcd_watchers(addr).await, 2);

    drop(a2);
    wait_for_watches(&store, addr, 1, 1).await;
    drop(b1);
    wait_for_watches(&store, addr, 0, 0).await;

    // The next observer starts a new watch, which pushes.
    let mut again = Observer::start(&cluster.endpoints(), &a).await;
    assert_eq!(again.next("the first answer again").await, None);
    // The one watch is the new observer's (its store is its own).
    assert_eq!(etcd_watchers(addr).await, 1);
    let leader = again.elects(&election(&store, &a), "later").await;
    leader.resign().await.unwrap();
    drop(again);
    // The store observes nothing; the new observer's watch is gone from etcd too.
    wait_for_watches(&store, addr, 0, 0).await;
}

/// When etcd goes away and comes back, the observer's watch is opened again and pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_comes_back_after_etcd_restarts() {
    let cluster = EtcdCluster::start(1).await.expect("start etcd");
    let member = cluster.member(0).unwrap();
    let store = EtcdLeaseStore::connect(cluster.endpoints()).await.unwrap();
    let name = unique_name("restarted");
    let mut observer = Observer::start(&cluster.endpoints(), &name).await;
    assert_eq!(observer.next("the first answer").await, None);
    observer.napping().await;

    member.kill().unwrap();
    member.restart().await.expect("restart etcd");
    // Reads failed while etcd was down (each error answered once).
    observer.napping_after_errors(PROMPTLY * 2).await;
    // The change is pushed by a watch opened after the restart, or seen by the read its
    // creation wakes; without one the observer would sleep for a minute.
    let leader = observer
        .elects(&election(&store, &name), "after-restart")
        .await;
    leader.resign().await.unwrap();
}

/// The store answers `watch_holder` with a live subscription (the observer does not poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_holder_is_native() {
    let store = EtcdLeaseStore::connect(shared_endpoints().await)
        .await
        .unwrap();
    let watch = store
        .watch_holder(&unique_name("native"))
        .await
        .unwrap()
        .expect("etcd pushes to observers");
    assert!(watch.is_observer());
}
