//! The fence tier against a real single-node etcd started by the harness (or
//! `FENCELOCK_ETCD_ENDPOINTS`), with a dead twin on a port nothing listens on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use fencelock_conformance::FenceFixture;
use fencelock_conformance::harness::{free_port, shared_etcd};
use fencelock_etcd::EtcdLeaseStore;

async fn etcd() -> FenceFixture {
    let target = shared_etcd()
        .await
        .expect("start etcd (is etcd installed?)");
    let store = EtcdLeaseStore::connect(target.endpoints())
        .await
        .expect("connect to etcd");
    FenceFixture::new(store.fence()).with_dead(dead().await.fence())
}

/// A store on a port nothing listens on (etcd-client connects lazily), giving up fast.
async fn dead() -> EtcdLeaseStore {
    let port = free_port().expect("a free port");
    EtcdLeaseStore::builder()
        .with_urls([format!("http://127.0.0.1:{port}")])
        .with_op_timeout(Duration::from_millis(300))
        .connect()
        .await
        .expect("etcd-client connects lazily")
}

fencelock_conformance::fence_suite!(etcd);
