//! What the Redis fence adds to the fence tier: its compare-and-set script on its own (for
//! your own pipelines and scripts), NUL and binary keys, and typed errors for bad input and
//! foreign keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use fencelock_conformance::harness::RedisServerOptions;
use fencelock_core::{ErrorKind, Fence, FencedValue, FencingToken};
use fencelock_redis::redis::{AsyncCommands, Value};
use fencelock_redis::scripts::SCRIPTS;
use support::{raw, server, store};

fn t(n: u64) -> FencingToken {
    FencingToken::new(n)
}

/// `fenced_set.lua` run by hand answers `{1}` or `{0, mark}`, and what it writes is what the
/// fence reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compare_and_set_script_runs_on_its_own() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let fence = store(&server).await.fence();
    let mut conn = raw(&server).await;
    let key = "own-script";
    let set = |token: u64, value: &'static str| {
        let mut conn = conn.clone();
        async move {
            SCRIPTS
                .fenced_set
                .key(key)
                .arg(token)
                .arg(value)
                .invoke_async::<Value>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(set(9, "by hand").await, Value::Array(vec![Value::Int(1)]));
    assert_eq!(
        set(8, "stale").await,
        Value::Array(vec![Value::Int(0), Value::BulkString(b"9".to_vec())])
    );
    assert_eq!(
        fence.read(key).await.unwrap(),
        Some(FencedValue::new(b"by hand".to_vec(), t(9)))
    );
    let plain: String = conn.hget(key, "value").await.unwrap();
    assert_eq!(plain, "by hand", "the value is a plain hash field");
    let err = fence.write(key, t(8), b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StaleToken, "{err}");
}

/// Redis keys and values are binary-safe: a key with NUL is a key of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_and_binary_keys_round_trip() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let fence = store(&server).await.fence();
    let keys = ["nul\0key", "nul\0key\0", "nul", "\u{1}\u{7f}"];
    for (i, key) in keys.iter().enumerate() {
        let value = [key.as_bytes(), &[0, 255]].concat();
        fence.write(key, t(1 + i as u64), &value).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let value = [key.as_bytes(), &[0, 255]].concat();
        assert_eq!(
            fence.read(key).await.unwrap(),
            Some(FencedValue::new(value, t(1 + i as u64))),
            "{key:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_foreign_keys_are_typed_errors() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let fence = store(&server).await.fence();
    for (key, token) in [("", t(5)), ("k", t(FencingToken::MAX_EXACT + 1))] {
        let err = fence.write(key, token, b"v").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
    assert_eq!(
        fence.read("").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut conn = raw(&server).await;
    let _: () = conn.set("plain-string", "x").await.unwrap();
    let _: () = conn.hset("half-hash", "value", "x").await.unwrap();
    let err = fence.write("plain-string", t(5), b"v").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    for key in ["plain-string", "half-hash"] {
        let err = fence.read(key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend, "{key}: {err}");
    }
    let kept: String = conn.get("plain-string").await.unwrap();
    assert_eq!(kept, "x", "a foreign key is left alone");
}
