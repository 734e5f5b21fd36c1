//! The documented metrics are emitted with the documented names and labels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use fencelock_core::{
    AcquireOptions, FenceGate, FencingToken, LeaseStore, LockName, Locker, MemoryLeaseStore,
    metrics as names,
};
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// Counter value, or number of histogram samples, summed over matching label sets.
fn counter(snapshot: &Snapshot, name: &str, label: Option<(&str, &str)>) -> u64 {
    snapshot
        .iter()
        .filter(|(key, ..)| key.key().name() == name)
        .filter(|(key, ..)| {
            label.is_none_or(|(k, v)| key.key().labels().any(|l| l.key() == k && l.value() == v))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            DebugValue::Histogram(samples) => samples.len() as u64,
            DebugValue::Gauge(_) => 0,
        })
        .sum()
}

#[tokio::test(start_paused = true)]
async fn locker_and_gate_emit_their_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let store = MemoryLeaseStore::new();
    let locker = Locker::new(store.clone());
    let opts = AcquireOptions::new()
        .with_ttl(Duration::from_secs(3))
        .with_no_wait();
    let guard = locker.acquire("m", opts.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // one renewal at TTL/3
    store
        .force_release(&LockName::new("m").unwrap())
        .await
        .unwrap();
    guard.lost().await;
    tokio::task::yield_now().await;
    assert!(
        locker
            .try_acquire("held", opts.clone())
            .await
            .unwrap()
            .is_some()
    );
    assert!(locker.try_acquire("held", opts).await.unwrap().is_none());

    let gate = FenceGate::new();
    gate.admit("r", FencingToken::new(2)).unwrap();
    gate.admit("r", FencingToken::new(1)).unwrap_err();

    // One snapshot: taking one drains the histograms.
    let s = &snapshotter.snapshot().into_vec();
    assert_eq!(
        counter(s, names::ACQUIRE_SECONDS, Some(("outcome", "acquired"))),
        2
    );
    assert_eq!(
        counter(s, names::ACQUIRE_SECONDS, Some(("outcome", "timeout"))),
        1
    );
    assert_eq!(
        counter(s, names::ACQUIRE_SECONDS, Some(("backend", "memory"))),
        3
    );
    assert_eq!(
        counter(s, names::RENEWALS_TOTAL, Some(("outcome", "ok"))),
        1
    );
    assert_eq!(counter(s, names::RENEW_LAG_SECONDS, None), 1);
    // Both renewals (the one that worked, the one that found the lease gone) went as batches.
    assert_eq!(counter(s, names::RENEW_BATCH_LEASES, None), 2);
    assert_eq!(
        counter(s, names::RENEWALS_TOTAL, Some(("outcome", "lost"))),
        1
    );
    assert_eq!(
        counter(s, names::LEASES_LOST_TOTAL, Some(("reason", "not_held"))),
        1
    );
    assert_eq!(counter(s, names::STALE_WRITES_REJECTED_TOTAL, None), 1);
    assert_eq!(counter(s, names::TOKEN_REGRESSIONS_TOTAL, None), 0);
}
