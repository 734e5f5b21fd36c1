//! `https://` endpoints: the whole conformance suite over TLS to a real etcd whose certificate
//! a throwaway authority signed, and the failures a client must see instead of a silent
//! downgrade (an authority it does not trust, a mix of schemes).

#![cfg(feature = "tls")]
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, TlsOptions};
use fencelock_conformance::Fixture;
use fencelock_conformance::harness::EtcdCluster;
use fencelock_core::ErrorKind;
use fencelock_etcd::EtcdLeaseStore;
use tokio::sync::OnceCell;

/// etcd leases count whole seconds; with the harness's election settings etcd grants 1 s.
const SHORT_TTL: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(10);

/// One single-member etcd with TLS for every test of this process.
async fn cluster() -> &'static EtcdCluster {
    static CLUSTER: OnceCell<EtcdCluster> = OnceCell::const_new();
    CLUSTER
        .get_or_init(|| async {
            EtcdCluster::start_tls(1)
                .await
                .unwrap_or_else(|e| panic!("an etcd with TLS: {e}"))
        })
        .await
}

async fn etcd_tls() -> Fixture {
    let cluster = cluster().await;
    let ca = cluster.tls().unwrap().ca_pem().unwrap();
    let tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
    let store = EtcdLeaseStore::builder()
        .with_urls(cluster.tls_endpoints())
        .with_connect_options(
            ConnectOptions::new()
                .with_tls(tls)
                .with_connect_timeout(Duration::from_secs(5))
                .with_require_leader(true),
        )
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting over TLS: {e}"));
    Fixture::new(store).with_short_ttl(SHORT_TTL)
}

fencelock_conformance::conformance_suite!(etcd_tls);

/// Without TLS options fencelock verifies against the system's roots, which do not include
/// the test authority: the first request must fail, typed, and soon.
#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let endpoints = cluster().await.tls_endpoints();
    let attempt = async {
        let store = EtcdLeaseStore::connect(&endpoints).await?;
        fencelock_core::LeaseStore::inspect(&store, &"tls-probe".parse().unwrap()).await
    };
    let result = tokio::time::timeout(LIMIT, attempt)
        .await
        .expect("the request did not end");
    let error = result.expect_err("a certificate nobody trusts was accepted");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
}

/// A cluster is reached by one scheme: a mix is refused before anything is sent.
#[tokio::test]
async fn a_mix_of_schemes_is_invalid_input() {
    let cluster = cluster().await;
    let mut endpoints = cluster.tls_endpoints();
    endpoints.extend(cluster.endpoints());
    let error = EtcdLeaseStore::connect(&endpoints).await.err().unwrap();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("https://"), "{error}");
}
