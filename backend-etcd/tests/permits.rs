//! Semaphores on etcd beyond the conformance suite: the token rule (grant order, not queue
//! order), the key layout apart from locks (ours and `etcdctl lock`'s), FIFO waiters, no key left
//! behind by a waiter that gives up or asks with another limit, and a foreign key failing closed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock_conformance::harness::TcpProxy;
use fencelock_core::backend::WaitPolicy;
use fencelock_core::{
    AcquireOptions, ErrorKind, LeaseStore, LockName, Locker, OwnerLabel, PermitLimit,
};
use fencelock_etcd::EtcdLeaseStore;
use fencelock_etcd::etcd_client::{GetOptions, KeyValue};
use support::{EtcdctlLock, PROMPTLY, shared_endpoints, shared_store, unique_name};
use tokio::time::{Instant, timeout};

const TTL: Duration = Duration::from_secs(60);

fn limit(n: u32) -> PermitLimit {
    PermitLimit::new(n).unwrap()
}

/// `<prefix>\x1fsemaphores/NAME/`: where the semaphore's keys live.
fn permit_prefix(store: &EtcdLeaseStore, name: &LockName) -> String {
    format!("{}\u{1f}semaphores/{name}/", store.key_prefix())
}

/// The semaphore's keys, oldest first.
async fn permit_keys(store: &EtcdLeaseStore, name: &LockName) -> Vec<KeyValue> {
    let mut client = store.client().clone();
    let mut kvs = client
        .get(
            permit_prefix(store, name),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap()
        .kvs()
        .to_vec();
    kvs.sort_by_key(KeyValue::create_revision);
    kvs
}

/// Polls until the semaphore has `len` keys (a state in etcd, not an event we could await).
async fn wait_for_permit_keys(store: &EtcdLeaseStore, name: &LockName, len: usize) {
    let started = Instant::now();
    loop {
        let now = permit_keys(store, name).await.len();
        if now == len {
            return;
        }
        assert!(
            started.elapsed() < PROMPTLY,
            "semaphore {name} has {now} keys, expected {len}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn wait_until(after: Duration) -> WaitPolicy {
    WaitPolicy {
        until: Some(Instant::now() + after),
        // Only the watch may wake a waiter in these tests, never its safety-net poll.
        poll_interval: TTL,
    }
}

/// The scenario create revisions get wrong: with a limit of 2, A and B hold and C queues;
/// A and B leave while C cannot hear of it (its connection stalled); D arrives, has one key
/// ahead, and is granted at once. C is granted after D although its key is older: its token
/// must still be above D's. With create revisions as tokens, C's would be below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rise_in_grant_order_not_in_queue_order() {
    let endpoints = shared_endpoints().await;
    let direct = shared_store().await;
    let upstream: SocketAddr = endpoints[0]
        .trim_start_matches("http://")
        .parse()
        .expect("a loopback endpoint");
    let proxy = TcpProxy::start(upstream).unwrap();
    let stalled = EtcdLeaseStore::connect([format!("http://{}", proxy.addr())])
        .await
        .unwrap();
    let name = unique_name("grant-order");
    let two = limit(2);
    let a = direct.try_acquire_permit(&name, two, TTL, None).await;
    let b = direct.try_acquire_permit(&name, two, TTL, None).await;
    let (a, b) = (a.unwrap().expect("A"), b.unwrap().expect("B"));
    let c = tokio::spawn({
        let (stalled, name) = (stalled.clone(), name.clone());
        async move {
            stalled
                .acquire_permit_waiting(&name, two, TTL, None, wait_until(Duration::from_secs(30)))
                .await
        }
    });
    wait_for_permit_keys(&direct, &name, 3).await;
    proxy.stall();
    direct.release(&a).await.unwrap();
    direct.release(&b).await.unwrap();
    let d = direct
        .try_acquire_permit(&name, two, TTL, None)
        .await
        .unwrap()
        .expect("D has one key ahead of it and is granted");
    proxy.unstall();
    let c = timeout(PROMPTLY, c)
        .await
        .expect("C is granted once it hears of the releases")
        .unwrap()
        .unwrap()
        .expect("C's permit");
    let keys = permit_keys(&direct, &name).await;
    assert_eq!(keys.len(), 2, "C and D hold");
    assert!(
        keys[0].create_revision() < keys[1].create_revision()
            && keys[0]
                .key()
                .ends_with(format!("{:x}", c.holder().as_u128()).as_bytes()),
        "C's key is the older one: the queue order is C, D"
    );
    assert!(
        c.token() > d.token(),
        "C was granted after D, so its token {} must be above D's {}",
        c.token(),
        d.token()
    );
    assert_eq!(
        (c.token().get(), d.token().get()),
        (keys[0].mod_revision() as u64, keys[1].mod_revision() as u64),
        "each token is the revision of the write that granted it"
    );
    direct.release(&c).await.unwrap();
    direct.release(&d).await.unwrap();
    wait_for_permit_keys(&direct, &name, 0).await;
}

/// A permit's key sits under the reserved segment with its state, limit and label; the lock of
/// the same name keeps its own queue; a batch renews both and each release touches only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_and_the_lock_of_its_name_keep_apart() {
    let store = shared_store().await;
    let name = unique_name("apart");
    let label = OwnerLabel::new("worker 7").unwrap();
    let lock = store.try_acquire(&name, TTL).await.unwrap().expect("lock");
    let permit = store
        .try_acquire_permit(&name, limit(2), TTL, Some(&label))
        .await
        .unwrap()
        .expect("permit");
    let keys = permit_keys(&store, &name).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].key(),
        format!(
            "{}{:x}",
            permit_prefix(&store, &name),
            permit.holder().as_u128()
        )
        .as_bytes()
    );
    assert_eq!(keys[0].value(), b"held 2 worker 7");
    assert_eq!(support::queue_len(&store, &name).await, 1, "the lock's key");

    let renewed = store.renew_many(&[lock.clone(), permit.clone()], TTL).await;
    assert!(renewed.iter().all(Result::is_ok), "{renewed:?}");
    store.release(&permit).await.unwrap();
    let renewed = store.renew_many(&[lock.clone(), permit.clone()], TTL).await;
    assert!(renewed[0].is_ok(), "{renewed:?}");
    assert_eq!(
        renewed[1].as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::LeaseLost),
        "{renewed:?}"
    );
    assert_eq!(
        store.inspect(&name).await.unwrap().map(|i| i.token),
        Some(lock.token()),
        "the permit's release left the lock"
    );
    store.release(&lock).await.unwrap();
    assert!(permit_keys(&store, &name).await.is_empty());
}

/// Waiters are granted in arrival order, with rising tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_waiters_are_granted_in_arrival_order() {
    let store = shared_store().await;
    let locker = Locker::new(store.clone());
    let name = unique_name("permit-fifo");
    let semaphore = locker.semaphore(name.clone(), 1).unwrap();
    let opts = AcquireOptions::new().with_ttl(TTL);
    let holder = semaphore
        .acquire(opts.clone().with_no_wait())
        .await
        .unwrap();
    let order: Arc<Mutex<Vec<(&str, u64)>>> = Arc::default();
    let mut waiters = Vec::new();
    for (i, who) in ["first", "second", "third"].into_iter().enumerate() {
        let (semaphore, order, opts) = (semaphore.clone(), order.clone(), opts.clone());
        waiters.push(tokio::spawn(async move {
            let permit = semaphore
                .acquire(opts.with_timeout(Duration::from_secs(30)))
                .await
                .unwrap();
            order.lock().unwrap().push((who, permit.token().get()));
            permit.release().await.unwrap();
        }));
        // Arrival = the waiter's key is in the queue.
        wait_for_permit_keys(&store, &name, i + 2).await;
    }
    let holder_token = holder.token();
    holder.release().await.unwrap();
    for waiter in waiters {
        timeout(PROMPTLY, waiter)
            .await
            .expect("handed over promptly")
            .unwrap();
    }
    let order = order.lock().unwrap().clone();
    let names: Vec<&str> = order.iter().map(|(who, _)| *who).collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert!(order.windows(2).all(|w| w[0].1 < w[1].1), "{order:?}");
    assert!(order[0].1 > holder_token.get());
    wait_for_permit_keys(&store, &name, 0).await;
}

/// A waiter that times out, one that is dropped, and one that asks with another limit each
/// leave no key behind and take nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_that_give_up_leave_no_key() {
    let store = shared_store().await;
    let name = unique_name("give-up");
    let one = limit(1);
    let held = store
        .try_acquire_permit(&name, one, TTL, None)
        .await
        .unwrap()
        .expect("free");

    let timed_out = store
        .acquire_permit_waiting(
            &name,
            one,
            TTL,
            None,
            wait_until(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert!(timed_out.is_none(), "{timed_out:?}");
    assert_eq!(permit_keys(&store, &name).await.len(), 1, "after a timeout");

    let dropped = store.acquire_permit_waiting(&name, one, TTL, None, wait_until(TTL));
    let waited = timeout(Duration::from_millis(300), dropped).await;
    assert!(waited.is_err(), "the dropped waiter was still waiting");
    // The drop revokes the lease in the background.
    wait_for_permit_keys(&store, &name, 1).await;

    let other = store
        .acquire_permit_waiting(&name, limit(3), TTL, None, wait_until(TTL))
        .await;
    let error = other.expect_err("another limit");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains('3'), "{error}");
    assert_eq!(
        permit_keys(&store, &name).await.len(),
        1,
        "the refused waiter removed its key"
    );
    let tried = store
        .try_acquire_permit(&name, limit(3), TTL, None)
        .await
        .expect_err("another limit");
    assert_eq!(tried.kind(), ErrorKind::InvalidInput, "{tried}");
    assert_eq!(permit_keys(&store, &name).await.len(), 1);

    store.release(&held).await.unwrap();
    wait_for_permit_keys(&store, &name, 0).await;
}

/// A key in a semaphore's range that is not a permit's fails closed: nobody can tell its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_fails_closed() {
    let store = shared_store().await;
    let name = unique_name("foreign");
    let key = format!("{}ff", permit_prefix(&store, &name));
    let mut client = store.client().clone();
    client.put(key.clone(), "hello", None).await.unwrap();
    let answer = store.try_acquire_permit(&name, limit(2), TTL, None).await;
    let error = answer.expect_err("a foreign key in the queue");
    assert_eq!(error.kind(), ErrorKind::Backend, "{error}");
    assert!(
        error.to_string().contains("not a fencelock permit"),
        "{error}"
    );
    client.delete(key, None).await.unwrap();
    let permit = store
        .try_acquire_permit(&name, limit(2), TTL, None)
        .await
        .unwrap()
        .expect("free again");
    store.release(&permit).await.unwrap();
}

/// Go's `concurrency.Mutex` (`etcdctl lock NAME`) waits on every key under `NAME/`: a held
/// permit and a queued permit waiter of `NAME` are not there, so it takes the lock at once, and
/// the semaphore stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lock_never_waits_on_a_permit() {
    let endpoints = shared_endpoints().await;
    let store = shared_store().await;
    let name = unique_name("etcdctl-apart");
    let one = limit(1);
    let held = store
        .try_acquire_permit(&name, one, TTL, None)
        .await
        .unwrap()
        .expect("free");
    let waiter = tokio::spawn({
        let (store, name) = (store.clone(), name.clone());
        async move {
            store
                .acquire_permit_waiting(&name, one, TTL, None, wait_until(TTL))
                .await
        }
    });
    wait_for_permit_keys(&store, &name, 2).await;
    let mut etcdctl = EtcdctlLock::spawn(&endpoints, &name);
    let key = timeout(PROMPTLY, etcdctl.held_key())
        .await
        .expect("etcdctl takes the lock beside the semaphore of its name");
    assert!(key.starts_with(&format!("{name}/")), "etcdctl holds {key}");
    assert_eq!(
        permit_keys(&store, &name).await.len(),
        2,
        "the semaphore as it was"
    );
    etcdctl.unlock_and_wait().await;
    store.release(&held).await.unwrap();
    let next = timeout(PROMPTLY, waiter)
        .await
        .expect("the waiter is granted on the release")
        .unwrap()
        .unwrap()
        .expect("the waiter's permit");
    assert!(next.token() > held.token());
    store.release(&next).await.unwrap();
    wait_for_permit_keys(&store, &name, 0).await;
}
