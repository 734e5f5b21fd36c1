//! A `LeaseStore` wrapper that counts renewals and the store calls that carried them, so the
//! renewal benchmark reports what the watchdogs really sent (and the first few failures'
//! errors before the release phase, on stderr).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fencelock_core::backend::ForwardingStore;
use fencelock_core::{Error, Lease, LeaseStore};

/// Renewal counters.
#[derive(Debug, Default)]
pub struct Counts {
    /// Renew calls that succeeded.
    pub renewed: AtomicU64,
    /// Renew calls that failed (transient or lost).
    pub failed: AtomicU64,
    /// Store calls that carried renewals: each `renew`, and each `renew_many` batch.
    pub calls: AtomicU64,
    /// Set once the leases are being released: a renewal already sent when its lease is
    /// released fails as lost, as it should, and is counted but not printed.
    pub releasing: AtomicBool,
}

/// Failed renewals whose error is printed to stderr (the run's log); the rest are only counted.
const LOGGED_FAILURES: u64 = 5;

impl Counts {
    fn count(&self, result: &Result<Lease, Error>) {
        match result {
            Ok(_) => {
                self.renewed.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                let n = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= LOGGED_FAILURES && !self.releasing.load(Ordering::Relaxed) {
                    eprintln!("renewal failure {n}: {error}");
                }
            }
        }
    }
}

/// Forwards everything to `inner`, counting renewals.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn LeaseStore>,
    counts: Arc<Counts>,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LeaseStore>) -> (Self, Arc<Counts>) {
        let counts = Arc::new(Counts::default());
        (
            Self {
                inner,
                counts: Arc::clone(&counts),
            },
            counts,
        )
    }
}

#[async_trait]
impl ForwardingStore for CountingStore {
    fn inner(&self) -> &dyn LeaseStore {
        &*self.inner
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let result = self.inner().renew(lease, ttl).await;
        self.counts.calls.fetch_add(1, Ordering::Relaxed);
        self.counts.count(&result);
        result
    }
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        let results = self.inner().renew_many(leases, ttl).await;
        self.counts.calls.fetch_add(1, Ordering::Relaxed);
        for result in &results {
            self.counts.count(result);
        }
        results
    }
}
