//! The whole conformance suite (locks and semaphores) against a real single-node etcd and a real 3-node cluster, both
//! started by the harness (or `FENCELOCK_ETCD_ENDPOINTS` for the single node).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;
use std::time::Duration;

use fencelock_conformance::Fixture;
use fencelock_conformance::harness::{EtcdCluster, HarnessError, shared_etcd};
use fencelock_etcd::EtcdLeaseStore;

/// etcd leases count whole seconds; with the harness's election settings etcd grants 1 s.
const SHORT_TTL: Duration = Duration::from_secs(1);

async fn fixture(endpoints: &[String]) -> Fixture {
    let store = EtcdLeaseStore::connect(endpoints)
        .await
        .expect("connect to etcd");
    Fixture::new(store).with_short_ttl(SHORT_TTL)
}

async fn single_node() -> Fixture {
    let target = shared_etcd()
        .await
        .expect("start etcd (is etcd installed?)");
    fixture(target.endpoints()).await
}

/// One 3-member cluster for every case of this process (cases use their own names).
async fn three_nodes() -> Fixture {
    static CLUSTER: OnceLock<Result<EtcdCluster, HarnessError>> = OnceLock::new();
    let cluster = tokio::task::spawn_blocking(|| {
        CLUSTER
            .get_or_init(|| EtcdCluster::start_blocking(3))
            .as_ref()
            .map(EtcdCluster::endpoints)
            .map_err(Clone::clone)
    })
    .await
    .unwrap()
    .expect("start a 3-member etcd cluster");
    fixture(&cluster).await
}

mod single_node {
    fencelock_conformance::conformance_suite!(super::single_node);
    fencelock_conformance::semaphore_suite!(super::single_node);
}

mod three_nodes {
    fencelock_conformance::conformance_suite!(super::three_nodes);
    fencelock_conformance::semaphore_suite!(super::three_nodes);
}
