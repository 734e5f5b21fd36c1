//! The scripts against a real server: NOSCRIPT recovery, hostile names, token limits, and a
//! taken-over lease that can no longer renew, release or write. (The fence's own cases are the
//! fence tier, `fence_tier.rs`, and `fence_script.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::RedisServerOptions;
use fencelock_core::{
    ErrorKind, Fence, FencedValue, FencingToken, LeaseStore, LockName, LossReason,
};
use fencelock_redis::RedisLeaseStore;
use fencelock_redis::redis::AsyncCommands;
use support::{name, raw, server, store};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noscript_after_script_flush_is_handled() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = store(&server).await;
    let fence = store.fence();
    let n = name("flush");
    let resource = format!("data/{n}");
    // Every script once, so they are cached on the server.
    let lease = store.try_acquire(&n, LONG).await.unwrap().unwrap();
    fence.write(&resource, lease.token(), b"v1").await.unwrap();
    store.inspect(&n).await.unwrap().unwrap();

    let flush = |server: &fencelock_conformance::harness::RedisServer| {
        let reply = server.command_blocking(&["SCRIPT", "FLUSH"]).unwrap();
        assert_eq!(reply, "+OK\r\n");
    };
    flush(&server);
    let lease = store.renew(&lease, LONG).await.unwrap();
    flush(&server);
    // A pipelined batch of renewals recovers too, and answers every lease.
    let batch = store
        .renew_many(&[lease.clone(), lease.clone()], LONG)
        .await;
    assert_eq!(batch.len(), 2);
    for answer in batch {
        assert_eq!(answer.unwrap().token(), lease.token());
    }
    flush(&server);
    assert_eq!(
        store.inspect(&n).await.unwrap().unwrap().token,
        lease.token()
    );
    flush(&server);
    fence.write(&resource, lease.token(), b"v2").await.unwrap();
    flush(&server);
    store.release(&lease).await.unwrap();
    flush(&server);
    let next = store.try_acquire(&n, LONG).await.unwrap().unwrap();
    assert!(next.token() > lease.token());
    flush(&server);
    assert_eq!(store.force_release(&n).await.unwrap(), Some(next.token()));
    assert_eq!(
        fence.read(&resource).await.unwrap().unwrap().value,
        b"v2".to_vec()
    );
}

/// Names that would break Lua source, `KEYS` patterns or our own key syntax only ever reach
/// the scripts as `KEYS`/`ARGV`: each gets exactly its own two keys, nothing else is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_stay_inside_their_keys() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = RedisLeaseStore::builder()
        .with_url(server.url())
        .with_key_prefix("hostile:")
        .connect()
        .await
        .unwrap();
    let mut conn = raw(&server).await;
    let _: () = conn.set("sentinel", "still here").await.unwrap();
    let hostile = [
        "]] .. redis.call('FLUSHALL') .. [[",
        "'); redis.call('FLUSHALL'); --",
        "\"; redis.call('FLUSHALL') --",
        "KEYS[1]",
        "ARGV[1]",
        "*",
        "hostile:*",
        "{}",
        "}{",
        "{hostile:}",
        ":lock:x",
        "x:token:y",
        "\\\\0 \\x00",
        "%s%n%d",
        "ünïcødé 🔒",
    ];
    let mut leases = Vec::new();
    for raw_name in hostile {
        let n = LockName::new(raw_name).unwrap();
        let lease = store
            .try_acquire(&n, LONG)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{raw_name:?} is a lock of its own"));
        assert_eq!(lease.name().as_str(), raw_name);
        let keys = store.layout().lock(&n);
        let value: String = conn.get(&keys.lock).await.unwrap();
        assert!(value.ends_with(&format!(":{}", lease.token())), "{value}");
        leases.push((n, lease));
    }
    let sentinel: Option<String> = conn.get("sentinel").await.unwrap();
    assert_eq!(
        sentinel.as_deref(),
        Some("still here"),
        "nothing was flushed"
    );
    // Exactly two keys per name (lock + counter), all under our prefix.
    let keys: Vec<String> = conn.keys("hostile:*").await.unwrap();
    assert_eq!(keys.len(), 2 * hostile.len(), "{keys:#?}");
    for (n, lease) in &leases {
        assert_eq!(
            store.inspect(n).await.unwrap().unwrap().token,
            lease.token()
        );
        store.release(lease).await.unwrap();
    }
    let keys: Vec<String> = conn.keys("hostile:*").await.unwrap();
    assert_eq!(
        keys.len(),
        hostile.len(),
        "only the counters remain: {keys:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_counter_stops_at_2_pow_53_minus_1() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = store(&server).await;
    let mut conn = raw(&server).await;
    let n = name("overflow");
    let counter = store.layout().lock(&n).counter;
    let _: () = conn
        .set(&counter, FencingToken::MAX_EXACT - 1)
        .await
        .unwrap();
    let last = store.try_acquire(&n, LONG).await.unwrap().unwrap();
    assert_eq!(last.token().get(), FencingToken::MAX_EXACT);
    store.release(&last).await.unwrap();
    let err = store.try_acquire(&n, LONG).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.to_string().contains("exhausted"), "{err}");
    assert!(
        store.inspect(&n).await.unwrap().is_none(),
        "nothing granted"
    );
    // A counter that is not a number is an error too, never a token from nowhere.
    let _: () = conn.set(&counter, "garbage").await.unwrap();
    let err = store.try_acquire(&n, LONG).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
}

/// A lease that expired and was taken over can no longer renew, release or write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_over_lease_rejects_old_holders_renew_release_and_fenced_write() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = store(&server).await;
    let fence = store.fence();
    let n = name("takeover");
    let resource = format!("account/{n}");

    let old = store
        .try_acquire(&n, Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    fence.write(&resource, old.token(), b"old 1").await.unwrap();
    fence.write(&resource, old.token(), b"old 2").await.unwrap(); // equal tokens are admitted
    tokio::time::sleep(Duration::from_millis(500)).await; // 2.5 TTLs: expired on the server
    let new = store.try_acquire(&n, LONG).await.unwrap().unwrap();
    assert!(new.token() > old.token());
    fence.write(&resource, new.token(), b"new").await.unwrap();

    let renew = store.renew(&old, LONG).await.unwrap_err();
    assert_eq!(renew.kind(), ErrorKind::LeaseLost, "{renew}");
    match &renew {
        fencelock_core::Error::LeaseLost { reason, .. } => {
            assert_eq!(reason, &LossReason::Superseded { by: new.token() });
        }
        other => panic!("{other}"),
    }
    let release = store.release(&old).await.unwrap_err();
    assert_eq!(release.kind(), ErrorKind::LeaseLost, "{release}");
    let write = fence
        .write(&resource, old.token(), b"stale")
        .await
        .unwrap_err();
    assert_eq!(write.kind(), ErrorKind::StaleToken, "{write}");
    let message = write.to_string();
    assert!(
        message.contains(&format!("token {}", old.token()))
            && message.contains(&format!("accepted token {}", new.token())),
        "{message}"
    );
    assert_eq!(
        fence.read(&resource).await.unwrap(),
        Some(FencedValue::new(b"new".to_vec(), new.token()))
    );
    assert_eq!(store.inspect(&n).await.unwrap().unwrap().token, new.token());
    store.release(&new).await.unwrap();
}
