//! fencelock and `etcdctl lock NAME` (Go's `concurrency.Mutex`) exclude each other and queue
//! together, with the default (empty) key prefix; fencelock's elections and `etcdctl elect NAME`
//! (Go's `concurrency.Election`, the same layout) are one election.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::LeaseStore;
use fencelock_etcd::EtcdLeaseStore;
use support::elect::{Observer, candidate, election, label_of, lease_hex};
use support::{
    EtcdctlElect, EtcdctlLock, PROMPTLY, queue_len, shared_endpoints, unique_name,
    wait_for_queue_len,
};
use tokio::time::timeout;

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_holder_excludes_us_until_it_exits() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("etcdctl-holds");
    let mut etcdctl = EtcdctlLock::spawn(&endpoints, &name);
    let key = timeout(PROMPTLY, etcdctl.held_key())
        .await
        .expect("etcdctl takes the free lock");
    assert!(key.starts_with(&format!("{name}/")), "etcdctl holds {key}");

    assert!(
        store.try_acquire(&name, TTL).await.unwrap().is_none(),
        "etcdctl holds {key}"
    );
    assert_eq!(
        queue_len(&store, &name).await,
        1,
        "our losing key was removed"
    );
    let theirs = store
        .inspect(&name)
        .await
        .unwrap()
        .expect("etcdctl's key is the owner");
    let lease_hex = key.rsplit('/').next().unwrap();
    assert_eq!(
        theirs.holder.map(|h| format!("{:x}", h.as_u128())),
        Some(lease_hex.to_owned()),
        "inspect names etcdctl's lease"
    );

    etcdctl.unlock_and_wait().await;
    let ours = store
        .try_acquire(&name, TTL)
        .await
        .unwrap()
        .expect("free once etcdctl unlocked");
    assert!(ours.token() > theirs.token);
    store.release(&ours).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_holder_blocks_etcdctl_until_we_release() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("we-hold");
    let ours = store.try_acquire(&name, TTL).await.unwrap().unwrap();

    let mut etcdctl = EtcdctlLock::spawn(&endpoints, &name);
    support::wait_for_queue_len(&store, &name, 2).await;
    assert!(
        timeout(Duration::from_millis(500), etcdctl.held_key())
            .await
            .is_err(),
        "etcdctl must wait while we hold"
    );
    assert_eq!(
        store.inspect(&name).await.unwrap().unwrap().token,
        ours.token(),
        "we are still the owner, etcdctl queues behind us"
    );

    store.release(&ours).await.unwrap();
    let key = timeout(PROMPTLY, etcdctl.held_key())
        .await
        .expect("etcdctl gets the lock as soon as we release");
    assert!(key.starts_with(&format!("{name}/")));
    let theirs = store.inspect(&name).await.unwrap().unwrap();
    assert!(theirs.token > ours.token(), "etcdctl's key is newer");
    assert!(store.try_acquire(&name, TTL).await.unwrap().is_none());

    etcdctl.unlock_and_wait().await;
    assert!(store.inspect(&name).await.unwrap().is_none());
}

/// The owner label is the lock key's value: `etcdctl get` shows it, as it shows an `etcdctl
/// elect -l` campaigner's, and `list` finds the holder with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_get_shows_our_owner_label() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("labelled");
    let label = fencelock_core::OwnerLabel::new("web-3:4711 nightly").unwrap();
    let lease = store
        .try_acquire_as(&name, TTL, Some(&label))
        .await
        .unwrap()
        .unwrap();
    let out = tokio::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["get", "--prefix", &format!("{name}/")])
        .output()
        .await
        .expect("run etcdctl (apt-get install etcd-client)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "etcdctl get prints the key and its value: {text}"
    );
    assert!(lines[0].starts_with(&format!("{name}/")), "{text}");
    assert_eq!(lines[1], label.as_str(), "{text}");
    let listed = store
        .list(&fencelock_core::ListQuery::prefix(name.as_str()).unwrap())
        .await
        .unwrap();
    assert_eq!(listed.locks.len(), 1, "{listed:?}");
    assert_eq!(listed.locks[0].label.as_ref(), Some(&label));
    store.release(&lease).await.unwrap();
}

/// (a) While fencelock leads, `etcdctl elect -l` shows our label as the proposal and `etcdctl
/// elect` waits behind us; once we resign it leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_elect_sees_our_leader_and_waits_for_it() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("we-lead");
    let ours = election(&store, &name)
        .campaign(candidate("fencelock-1"))
        .await
        .unwrap();
    let our_lease = format!("{:x}", ours.guard().lease().holder().as_u128());

    let mut listener = EtcdctlElect::listen(&endpoints, &name);
    let seen = timeout(PROMPTLY, listener.next_leader())
        .await
        .expect("etcdctl elect -l prints the leader");
    assert_eq!(seen.key, format!("{name}/{our_lease}"), "{seen:?}");
    assert_eq!(seen.proposal, "fencelock-1", "{seen:?}");

    let mut rival = EtcdctlElect::campaign(&endpoints, &name, "etcdctl-2");
    wait_for_queue_len(&store, &name, 2).await;
    assert!(
        timeout(Duration::from_millis(500), rival.next_leader())
            .await
            .is_err(),
        "etcdctl must not lead while we do"
    );
    let leader = election(&store, &name).leader().await.unwrap().unwrap();
    assert_eq!(leader.term, ours.term(), "we still lead");

    let our_term = ours.term();
    ours.resign().await.unwrap();
    let elected = timeout(PROMPTLY, rival.next_leader())
        .await
        .expect("etcdctl leads once we resigned");
    assert_eq!(elected.proposal, "etcdctl-2", "{elected:?}");
    let heard = timeout(PROMPTLY, listener.next_leader())
        .await
        .expect("etcdctl elect -l prints the new leader");
    assert_eq!(heard, elected);
    let leader = election(&store, &name).leader().await.unwrap().unwrap();
    assert_eq!(label_of(Some(&leader)), Some("etcdctl-2"));
    assert!(leader.term > our_term, "{leader:?} after term {our_term}");
    assert_eq!(lease_hex(&leader).as_deref(), Some(elected.lease_hex()));

    assert!(rival.interrupt_and_wait().await, "etcdctl elect resigns");
    assert!(
        listener.interrupt_and_wait().await,
        "etcdctl elect -l stops"
    );
    assert_eq!(election(&store, &name).leader().await.unwrap(), None);
}

/// (b) While `etcdctl elect` leads, we see its proposal and term, `try_campaign` is refused,
/// and a waiting campaign is elected with a greater term once etcdctl resigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_see_etcdctl_lead_and_succeed_it() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("etcdctl-leads");
    let ours = election(&store, &name);

    let mut etcdctl = EtcdctlElect::campaign(&endpoints, &name, "etcdctl-1");
    let elected = timeout(PROMPTLY, etcdctl.next_leader())
        .await
        .expect("etcdctl wins the empty election");
    assert_eq!(elected.key, format!("{name}/{}", elected.lease_hex()));
    let theirs = ours.leader().await.unwrap().expect("etcdctl leads");
    assert_eq!(label_of(Some(&theirs)), Some("etcdctl-1"));
    assert_eq!(lease_hex(&theirs).as_deref(), Some(elected.lease_hex()));

    assert!(
        ours.try_campaign(candidate("fencelock-2"))
            .await
            .unwrap()
            .is_none(),
        "etcdctl leads"
    );
    let waiting = tokio::spawn({
        let ours = ours.clone();
        async move { ours.campaign(candidate("fencelock-2")).await }
    });
    wait_for_queue_len(&store, &name, 2).await;
    assert!(!waiting.is_finished(), "our campaign waits behind etcdctl");

    assert!(etcdctl.interrupt_and_wait().await, "etcdctl elect resigns");
    let leadership = timeout(PROMPTLY, waiting)
        .await
        .expect("we lead once etcdctl resigned")
        .unwrap()
        .unwrap();
    assert!(
        leadership.term() > theirs.term,
        "{} after {}",
        leadership.term(),
        theirs.term
    );
    let leader = ours.leader().await.unwrap().unwrap();
    assert_eq!(
        (leader.term, label_of(Some(&leader))),
        (leadership.term(), Some("fencelock-2"))
    );
    leadership.resign().await.unwrap();
}

/// (c) An observer reports etcdctl's leaders and ours, in order, each by push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_reports_etcdctl_and_our_leaders_in_order() {
    let endpoints = shared_endpoints().await;
    let store = EtcdLeaseStore::connect(&endpoints).await.unwrap();
    let name = unique_name("mixed");
    let ours = election(&store, &name);
    let mut observer = Observer::start(&endpoints, &name).await;
    assert_eq!(observer.next("the first answer").await, None);
    let mut terms = Vec::new();

    let (first, seen) = observer
        .pushed("etcdctl-1 elected", async {
            let mut first = EtcdctlElect::campaign(&endpoints, &name, "etcdctl-1");
            timeout(PROMPTLY, first.next_leader())
                .await
                .expect("etcdctl wins the empty election");
            first
        })
        .await;
    let seen = seen.unwrap();
    assert_eq!(label_of(Some(&seen)), Some("etcdctl-1"));
    terms.push(seen.term);
    let (resigned, seen) = observer
        .pushed("etcdctl-1 resigned", first.interrupt_and_wait())
        .await;
    assert!(resigned, "etcdctl elect resigns");
    assert_eq!(seen, None);

    let leadership = observer.elects(&ours, "fencelock-2").await;
    terms.push(leadership.term());

    let mut third = EtcdctlElect::campaign(&endpoints, &name, "etcdctl-3");
    wait_for_queue_len(&store, &name, 2).await;
    let (resigned, mut seen) = observer
        .pushed("etcdctl-3 elected", leadership.resign())
        .await;
    resigned.unwrap();
    if seen.is_none() {
        // Read between the resignation and etcdctl's election (none in etcd, but allowed).
        seen = observer.next("etcdctl-3 elected after the vacancy").await;
    }
    let seen = seen.unwrap();
    assert_eq!(label_of(Some(&seen)), Some("etcdctl-3"));
    terms.push(seen.term);
    timeout(PROMPTLY, third.next_leader())
        .await
        .expect("etcdctl says it leads once we resigned");
    let (resigned, seen) = observer
        .pushed("etcdctl-3 resigned", third.interrupt_and_wait())
        .await;
    assert!(resigned, "etcdctl elect resigns");
    assert_eq!(seen, None);

    assert!(terms.windows(2).all(|w| w[0] < w[1]), "terms {terms:?}");
}
