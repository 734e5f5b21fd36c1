//! [`CheckOptions`]: how [`super::check_store`] runs.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fencelock_core::LockName;
use futures::future::BoxFuture;

pub(super) type ServerFault = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// How [`super::check_store`] runs: `CheckOptions::new()` and the `with_*` methods.
#[derive(Clone)]
pub struct CheckOptions {
    pub(super) ttl: Duration,
    pub(super) workers: u32,
    pub(super) stalls: u32,
    pub(super) slack: Duration,
    pub(super) seed: u64,
    pub(super) name: Option<LockName>,
    pub(super) server_fault: Option<ServerFault>,
    pub(super) keeps_state: bool,
}

impl fmt::Debug for CheckOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckOptions")
            .field("ttl", &self.ttl)
            .field("workers", &self.workers)
            .field("stalls", &self.stalls)
            .field("slack", &self.slack)
            .field("seed", &self.seed)
            .field("name", &self.name)
            .field("server_fault", &self.server_fault.is_some())
            .field("keeps_state", &self.keeps_state)
            .finish()
    }
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_millis(300),
            workers: 3,
            stalls: 3,
            slack: Duration::from_secs(1),
            seed: 1,
            name: None,
            server_fault: None,
            keeps_state: true,
        }
    }
}

impl CheckOptions {
    /// Three workers, a 300 ms TTL, three stalls, 1 s of slack.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lease TTL (default 300 ms); use the shortest one the store honours precisely (as
    /// [`crate::Fixture::with_short_ttl`]: etcd counts whole seconds). Renewals come every
    /// third of it, waiters poll every tenth, a stall lasts three.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Worker tasks contending for the lock (default 3, at least 2).
    pub fn with_workers(mut self, workers: u32) -> Self {
        self.workers = workers.max(2);
        self
    }

    /// How many times a holder's store calls are stalled (default 3).
    pub fn with_stalls(mut self, stalls: u32) -> Self {
        self.stalls = stalls;
        self
    }

    /// The allowance on top of TTL + renew interval for the lock to be granted again after
    /// a fault (I5; default 1 s): waking a waiter, reconnecting, the store's expiry
    /// granularity.
    pub fn with_slack(mut self, slack: Duration) -> Self {
        self.slack = slack;
        self
    }

    /// The seed of the workers' random choices (work times, writes per grant).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The lock the workers contend for (default: `fl-check/` and 16 random hex digits), so
    /// that a server fault can aim at it.
    pub fn with_name(mut self, name: LockName) -> Self {
        self.name = Some(name);
        self
    }

    /// A fault of the caller's, injected after each stall while the workers run: kill and
    /// restart the server, fail it over, cut its network. The lock must be granted again
    /// within the I5 bound of the future's end. If the fault may lose grants (a server
    /// without persistence restarted), say so with [`CheckOptions::server_fault_loses_grants`].
    pub fn with_server_fault<F, Fut>(mut self, fault: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.server_fault = Some(Arc::new(move || Box::pin(fault())));
        self
    }

    /// The server fault may lose grants, so a new holder may be granted while an old one's
    /// guard still says valid: I6 is not checked (fencing is what protects that case, and
    /// I1 still checks it).
    pub fn server_fault_loses_grants(mut self) -> Self {
        self.keeps_state = false;
        self
    }
}
