//! The real binary over TLS to a real redis-server and etcd, each with a certificate from a
//! throwaway authority: trusted through `SSL_CERT_FILE`, `run`, `status` and `check` work;
//! untrusted, `run` fails with one line, as unavailable, and the program never starts.
#![cfg(all(feature = "redis", feature = "etcd"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use fencelock_conformance::harness::{EtcdCluster, RedisServer, RedisServerOptions};
use support::{assert_one_line_failure, fencelock, status, stderr, stdout, unique_name};

const LIMIT: Duration = Duration::from_secs(20);

/// `fencelock run --store url NAME -- sh -c 'echo token $FENCELOCK_TOKEN'`, trusting `ca` (a
/// PEM file) through `SSL_CERT_FILE` or, without it, only the system's roots.
async fn run(url: &str, ca: Option<&Path>) -> std::process::Output {
    let name = unique_name("tls");
    let mut cmd = fencelock(&[
        "run",
        "--store",
        url,
        &name,
        "--",
        "sh",
        "-c",
        "echo token $FENCELOCK_TOKEN",
    ]);
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca);
    }
    tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("fencelock did not finish")
        .unwrap()
}

async fn trusted_and_untrusted(url: &str, ca: &Path) {
    // `check` (the store's own diagnosis over its TLS connection) and `status` trust the
    // same authority.
    let mut check = fencelock(&["check", "--store", url]);
    check.env("SSL_CERT_FILE", ca);
    let out = check.output().await.unwrap();
    let report = stdout(&out);
    // 1 is "warnings" (the harness's Redis has no persistence), never a failure to check.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{url}: {report}{}",
        stderr(&out)
    );
    assert!(
        report.contains(" 7.") || report.contains(" 3."),
        "{url}: {report}"
    );
    let mut inspect = fencelock(&["status", "--store", url, "tls-free"]);
    inspect.env("SSL_CERT_FILE", ca);
    let out = inspect.output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{url}: {}", stderr(&out));
    assert!(stdout(&out).contains("free"), "{url}: {}", stdout(&out));

    let out = run(url, Some(ca)).await;
    assert_eq!(out.status.code(), Some(0), "{url}: {}", stderr(&out));
    let token = stdout(&out);
    let token = token
        .trim()
        .strip_prefix("token ")
        .unwrap_or_else(|| panic!("{token:?}"));
    assert!(token.parse::<u64>().unwrap() > 0, "{token}");

    let out = run(url, None).await;
    assert_one_line_failure(&out, status::UNAVAILABLE, "certificate");
    assert_eq!(stdout(&out), "", "the program ran without a lease");
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_url_trusts_ssl_cert_file() {
    let server = RedisServer::start(RedisServerOptions::tls()).await.unwrap();
    let ca = &server.tls().unwrap().files.ca_cert;
    trusted_and_untrusted(&server.tls_url().unwrap(), ca).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_https_url_trusts_ssl_cert_file() {
    let cluster = EtcdCluster::start_tls(1).await.unwrap();
    let ca = &cluster.tls().unwrap().ca_cert;
    let endpoint = cluster.tls_endpoints().remove(0);
    let url = endpoint.replace("https://", "etcd+https://");
    trusted_and_untrusted(&url, ca).await;
}
