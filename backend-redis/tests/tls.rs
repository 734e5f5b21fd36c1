//! `rediss://`: the whole conformance suite over TLS to a real redis-server whose certificate
//! a throwaway authority signed, and the failures a client must see instead of a silent
//! downgrade (an authority it does not trust, plain RESP to the TLS port).

#![cfg(feature = "tls")]
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use fencelock_conformance::Fixture;
use fencelock_conformance::harness::{RedisServer, RedisServerOptions};
use fencelock_core::ErrorKind;
use fencelock_redis::RedisLeaseStore;
use redis::TlsCertificates;
use tokio::sync::OnceCell;

/// One TLS server for every test of this process (killed when the process exits).
async fn server() -> &'static RedisServer {
    static SERVER: OnceCell<RedisServer> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            RedisServer::start(RedisServerOptions::tls())
                .await
                .unwrap_or_else(|e| panic!("a redis-server with TLS: {e}"))
        })
        .await
}

/// A client that trusts the test authority and nothing else.
async fn trusting_client() -> redis::Client {
    let server = server().await;
    let ca = server.tls().unwrap().files.ca_pem().unwrap();
    redis::Client::build_with_tls(
        server.tls_url().unwrap(),
        TlsCertificates {
            client_tls: None,
            root_cert: Some(ca),
        },
    )
    .unwrap()
}

async fn redis_tls() -> Fixture {
    let store = RedisLeaseStore::from_client(trusting_client().await)
        .await
        .unwrap_or_else(|e| panic!("connecting over TLS: {e}"));
    Fixture::new(store)
}

fencelock_conformance::conformance_suite!(redis_tls);

const LIMIT: Duration = Duration::from_secs(10);

/// The system's roots do not include the test authority: connecting must fail, typed, and
/// soon; it must not fall back to an unverified or plain connection.
#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let url = server().await.tls_url().unwrap();
    let connect = RedisLeaseStore::connect(&url);
    let result = tokio::time::timeout(LIMIT, connect)
        .await
        .expect("connecting did not end");
    let error = result.expect_err("a certificate nobody trusts was accepted");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let text = format!("{error:#}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

/// Plain RESP to the TLS port gets no answer the client could mistake for Redis.
#[tokio::test]
async fn plain_redis_to_the_tls_port_fails() {
    let port = server().await.tls().unwrap().port;
    let url = format!("redis://127.0.0.1:{port}");
    let store = RedisLeaseStore::builder()
        .with_url(&url)
        .with_connect_timeout(Duration::from_secs(1))
        .with_op_timeout(Duration::from_secs(1))
        .with_reconnect_attempts(0)
        .connect();
    let result = tokio::time::timeout(LIMIT, store)
        .await
        .expect("connecting did not end");
    let error = result.expect_err("plain RESP to a TLS port connected");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
}
