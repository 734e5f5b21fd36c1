//! Semaphores on one redis-server, beyond the conformance tier: hostile names and labels, the
//! keys a semaphore leaves behind, mixed renewal batches, and permit wake-ups on a channel of
//! their own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::RedisServerOptions;
use fencelock_core::{LeaseStore, LockName, OwnerLabel, PermitLimit};
use fencelock_redis::redis::AsyncCommands;
use support::{eventually, mixed_batch_renews_exactly_the_held, name, raw, server, store};

const TTL: Duration = Duration::from_secs(60);

fn limit(n: u32) -> PermitLimit {
    PermitLimit::new(n).unwrap()
}

/// Names with Lua, glob, hash-tag and key-separator characters each get a semaphore of their
/// own, in one slot, apart from the lock of the same name; hostile labels come back as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_labels_stay_apart_and_round_trip() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = store(&server).await;
    let mut conn = raw(&server).await;
    let run = rand::random::<u32>();
    let hostile = [
        "{a}",
        "{",
        "}",
        "}{",
        "x{}y",
        "*",
        "a?",
        "[a]",
        "\\",
        "]] .. redis.call('FLUSHALL') .. [[",
        "'; --",
        "\" OR 1=1 --",
        "%s %d %%",
        "permits:x",
        "lock:x",
        "a b  c",
        "ünï{ç}ø",
    ];
    let label = OwnerLabel::new("]] .. redis.call('FLUSHALL') .. [[ {x} *?: \"'").unwrap();
    let mut held = Vec::new();
    for raw_name in hostile {
        let name = LockName::new(format!("{run}/{raw_name}")).unwrap();
        // A limit of 1 each: if two names shared a semaphore, the second would be refused.
        let permit = store
            .try_acquire_permit(&name, limit(1), TTL, Some(&label))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("`{name}` shares a semaphore with another name"));
        assert!(
            store.inspect(&name).await.unwrap().is_none(),
            "the permit of `{name}` took the lock of the same name"
        );
        let shown = store.inspect_permits(&name).await.unwrap();
        assert_eq!(shown.holders.len(), 1, "`{name}`: {shown:?}");
        assert_eq!(shown.holders[0].label.as_ref(), Some(&label), "`{name}`");
        assert_eq!(shown.holders[0].token, permit.token());
        held.push(permit);
    }
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    assert!(
        !keys.is_empty(),
        "FLUSHALL in a name or label must never run"
    );
    for permit in &held {
        store.release(permit).await.unwrap();
        assert_eq!(
            store.inspect_permits(permit.name()).await.unwrap().holders,
            [],
            "`{}`",
            permit.name()
        );
    }
}

/// A semaphore leaves only its token counter behind: its set and limit go with the last permit,
/// released or expired (the keys expire with it), and the counter keeps tokens rising.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_with_the_last_permit() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = store(&server).await;
    let mut conn = raw(&server).await;
    let name = name("keys");
    let keys = store.layout().permits(&name);
    let a = store
        .try_acquire_permit(&name, limit(2), TTL, None)
        .await
        .unwrap()
        .unwrap();
    let exists: u32 = conn.exists(&[&keys.permits, &keys.limit]).await.unwrap();
    assert_eq!(exists, 2, "the set and the limit while a permit holds");
    let pttl: i64 = conn.pttl(&keys.permits).await.unwrap();
    assert!(
        pttl > 0 && pttl <= 60_002,
        "the set expires with its permit: {pttl}"
    );
    store.release(&a).await.unwrap();
    let exists: u32 = conn.exists(&[&keys.permits, &keys.limit]).await.unwrap();
    assert_eq!(exists, 0, "released: nothing but the counter is left");
    let counter: Option<u64> = conn.get(&keys.counter).await.unwrap();
    assert_eq!(counter, Some(a.token().get()), "the counter stays");

    let short = Duration::from_millis(200);
    let b = store
        .try_acquire_permit(&name, limit(3), short, None)
        .await
        .unwrap()
        .unwrap();
    assert!(b.token() > a.token());
    eventually(
        Duration::from_secs(10),
        "the expired semaphore's keys go",
        || {
            let mut conn = conn.clone();
            let keys = keys.clone();
            async move {
                let exists: u32 = conn.exists(&[&keys.permits, &keys.limit]).await.unwrap();
                exists == 0
            }
        },
    )
    .await;
    let c = store
        .try_acquire_permit(&name, limit(1), TTL, None)
        .await
        .unwrap()
        .expect("the limit went with the last permit");
    assert!(c.token() > b.token());
    store.release(&c).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_may_mix_locks_and_permits() {
    let server = server(RedisServerOptions::ephemeral()).await;
    mixed_batch_renews_exactly_the_held(&store(&server).await).await;
}

/// A permit release wakes the semaphore's waiters and not the lock's of the same name; a lock
/// release wakes the lock's and not the semaphore's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_and_lock_releases_wake_only_their_own_waiters() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = store(&server).await;
    let name = name("channels");
    let lock = store.try_acquire(&name, TTL).await.unwrap().unwrap();
    let permit = store
        .try_acquire_permit(&name, limit(1), TTL, None)
        .await
        .unwrap()
        .unwrap();
    let mut lock_watch = store.watch_released(&name).await.unwrap().unwrap();
    let mut permit_watch = store.watch_permits(&name).await.unwrap().unwrap();

    store.release(&permit).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), permit_watch.notified())
        .await
        .expect("the permit release wakes the semaphore's waiter");
    assert!(woken, "the permit watch was closed instead of notified");
    store.release(&lock).await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), lock_watch.notified())
        .await
        .expect("the lock release wakes the lock's waiter");
    assert!(woken, "the lock watch was closed instead of notified");
    // Each release is announced once, on its own channel: by now the lock's announcement has
    // arrived (it woke the lock's waiter), so a permit waiter it had woken would be notified.
    let crossed = tokio::time::timeout(Duration::from_millis(50), permit_watch.notified()).await;
    assert!(
        crossed.is_err(),
        "the lock's release woke the semaphore's waiter"
    );
}
