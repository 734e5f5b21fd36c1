//! `renew_many` over more queues than one txn reads (100 per txn), on one keepalive stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_core::{ErrorKind, LeaseStore};
use futures::future::join_all;
use support::{shared_store, unique_name};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_250_spans_txns_and_answers_each_in_order() {
    let store = shared_store().await;
    let ttl = Duration::from_secs(10);
    let leases: Vec<_> = join_all((0..250).map(|i| {
        let store = store.clone();
        async move {
            store
                .try_acquire(&unique_name(&format!("many-{i}")), ttl)
                .await
                .unwrap()
                .unwrap()
        }
    }))
    .await;
    // Release every tenth: those must be lost, the rest renewed; duplicates answered each.
    for lease in leases.iter().step_by(10) {
        store.release(lease).await.unwrap();
    }
    let mut batch = leases.clone();
    batch.extend(leases[..5].iter().cloned());
    let sent = Instant::now();
    let answers = store.renew_many(&batch, ttl).await;
    assert_eq!(answers.len(), batch.len());
    for (i, (lease, answer)) in batch.iter().zip(&answers).enumerate() {
        if (i % 250) % 10 == 0 {
            let err = answer.as_ref().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::LeaseLost, "{i}: {err}");
        } else {
            let renewed = answer.as_ref().unwrap_or_else(|e| panic!("{i}: {e}"));
            assert_eq!(renewed.token(), lease.token());
            assert_eq!(renewed.holder(), lease.holder());
            assert!(renewed.deadline() >= sent + ttl / 2, "{i}");
            assert!(renewed.deadline() >= lease.deadline(), "{i}");
        }
    }
    let invalid = store.renew_many(&batch, Duration::ZERO).await;
    assert_eq!(invalid.len(), batch.len());
    assert!(
        invalid
            .iter()
            .all(|a| a.as_ref().unwrap_err().kind() == ErrorKind::InvalidInput)
    );
}
