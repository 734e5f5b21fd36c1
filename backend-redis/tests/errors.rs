//! Error classification against real failures: refused connections, a paused server, a killed
//! server, bad URLs and options, authentication — and `Debug` never shows the password.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness::{RedisServerOptions, free_port};
use fencelock_conformance::settle;
use fencelock_core::{ErrorKind, LeaseStore};
use fencelock_redis::{RedisConfig, RedisLeaseStore};
use support::{name, server, store};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let port = free_port().unwrap();
    let err = RedisLeaseStore::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("nothing was applied"), "{err}");
}

#[tokio::test]
async fn bad_urls_and_options_are_invalid_input_before_anything_is_sent() {
    let port = free_port().unwrap();
    let nowhere = format!("redis://127.0.0.1:{port}");
    for url in ["http://127.0.0.1:6379", "not a url", "redis://:6379:x"] {
        let err = RedisLeaseStore::connect(url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err}");
    }
    if !cfg!(feature = "tls") {
        let err = RedisLeaseStore::connect("rediss://127.0.0.1:6380")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
    // Options are checked first: the unreachable server is never contacted.
    let builders = [
        RedisLeaseStore::builder().with_key_prefix("{tag}"),
        RedisLeaseStore::builder().with_key_prefix("a\nb"),
        RedisLeaseStore::builder().with_max_ttl(Duration::ZERO),
        RedisLeaseStore::builder().with_max_ttl(Duration::from_secs(20 * 365 * 86_400)),
        RedisLeaseStore::builder().with_op_timeout(Duration::ZERO),
        RedisLeaseStore::builder().with_op_timeout(Duration::from_secs(2 * 86_400)),
        RedisLeaseStore::builder().with_connect_timeout(Duration::ZERO),
    ];
    for builder in builders {
        let shown = format!("{builder:?}");
        let err = builder.with_url(&nowhere).connect().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{shown}: {err}");
    }
    // No URL at all, and a config from a file naming one that is not Redis.
    let err = RedisLeaseStore::builder().connect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let config: RedisConfig = serde_json::from_str(r#"{"url": "http://127.0.0.1:6379"}"#).unwrap();
    let err = RedisLeaseStore::from_config(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// A config loaded from a file connects, with its options in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_from_a_file_connects_with_its_options() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let config: RedisConfig = serde_json::from_str(&format!(
        r#"{{"url": "{}", "key_prefix": "from-file:", "max_ttl_ms": 60000}}"#,
        server.url()
    ))
    .unwrap();
    let store = RedisLeaseStore::from_config(config).await.unwrap();
    assert_eq!(store.layout().prefix(), "from-file:");
    assert_eq!(store.ttl_limits().max(), Duration::from_secs(60));
    let err = store
        .try_acquire(&name("from-file"), Duration::from_secs(61))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_server_is_outcome_unknown_then_recovers() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = RedisLeaseStore::builder()
        .with_url(server.url())
        .with_op_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let n = name("paused");
    // 200 ms per reply is tight on a loaded machine: calls around the pause are settled.
    let lease = settle::grant(&store, &n, LONG, None).await;
    server.pause().unwrap();
    let err = store.renew(&lease, LONG).await.unwrap_err();
    server.resume().unwrap();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(err.is_transient());
    let lease = settle::definite("renew after the pause", || store.renew(&lease, LONG)).await;
    settle::release(&store, &lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_is_transient_and_then_unavailable() {
    let server = server(RedisServerOptions::ephemeral()).await;
    let store = store(&server).await;
    let n = name("killed");
    let lease = store.try_acquire(&n, LONG).await.unwrap().unwrap();
    server.kill().unwrap();
    // The first request may have been written to the dying connection (outcome unknown);
    // once the store tries to reconnect, it is refused: nothing applied.
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let err = store.renew(&lease, LONG).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        kinds.push(err.kind());
        if err.kind() == ErrorKind::Unavailable {
            break;
        }
    }
    assert_eq!(kinds.last(), Some(&ErrorKind::Unavailable), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_never_shows_and_a_wrong_one_is_a_backend_error() {
    let server = server(RedisServerOptions::ephemeral()).await;
    // Set after start: the harness waits for an unauthenticated PING.
    let reply = server
        .command(&["CONFIG", "SET", "requirepass", "hunter2"])
        .await
        .unwrap();
    assert_eq!(reply, "+OK\r\n");
    let url = format!("redis://:hunter2@127.0.0.1:{}", server.port());
    let store = RedisLeaseStore::connect(&url).await.unwrap();
    let n = name("auth");
    let lease = store.try_acquire(&n, LONG).await.unwrap().unwrap();
    store.release(&lease).await.unwrap();
    let shown = format!("{store:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let builder = RedisLeaseStore::builder()
        .with_pubsub_client(fencelock_redis::redis::Client::open(url.as_str()).unwrap());
    assert!(!format!("{builder:?}").contains("hunter2"));

    let wrong = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let err = RedisLeaseStore::connect(&wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(!err.to_string().contains("wrong@"), "{err}");
}
