//! The suite catches planted bugs, and says what was wrong: `exclusive_until_local_deadline`
//! fails for [`EarlyExpiry`] over the memory store (and passes for the memory store itself),
//! and an `inspect` that reports expired grants is called an `inspect` bug, not a resurrection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock_conformance::planted::EarlyExpiry;
use fencelock_conformance::{Ctx, Fixture, cases};
use fencelock_core::backend::ForwardingStore;
use fencelock_core::{
    Error, FencingToken, Lease, LeaseInfo, LeaseStore, LockName, MemoryLeaseStore, OwnerLabel,
    async_trait,
};

/// Runs `case` over `fixture` on its own task: `Err` holds the panic message of a failed case.
macro_rules! run {
    ($fixture:expr, $case:ident) => {{
        let fixture = $fixture;
        let case = tokio::spawn(async move {
            let cx = Ctx::new(fixture);
            cases::$case(&cx).await;
        });
        match case.await {
            Ok(()) => Ok(()),
            Err(e) if e.is_panic() => Err(message(e.into_panic())),
            Err(e) => panic!("the case did not finish: {e}"),
        }
    }};
}

fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_until_local_deadline_passes_for_the_memory_store() {
    run!(
        Fixture::new(MemoryLeaseStore::new()),
        exclusive_until_local_deadline
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_until_local_deadline_fails_for_a_store_that_ends_grants_early() {
    let store = EarlyExpiry::new(Arc::new(MemoryLeaseStore::new()));
    let failure = run!(Fixture::new(store), exclusive_until_local_deadline)
        .expect_err("a store ending grants at 3/4 of the reported TTL must fail the case");
    println!("caught: {failure}");
    assert!(
        failure.contains("try_acquire granted") && failure.contains("two holders at once"),
        "the failure names the operation and the consequence: {failure}"
    );
}

/// `inspect` keeps reporting the last grant of a name until it is released: it ignores expiry.
#[derive(Debug, Default)]
struct InspectIgnoresExpiry {
    inner: MemoryLeaseStore,
    granted: Mutex<HashMap<LockName, FencingToken>>,
}

#[async_trait]
impl ForwardingStore for InspectIgnoresExpiry {
    fn inner(&self) -> &dyn LeaseStore {
        &self.inner
    }
    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        let lease = self.inner().try_acquire_as(name, ttl, label).await?;
        if let Some(lease) = &lease {
            self.granted
                .lock()
                .unwrap()
                .insert(name.clone(), lease.token());
        }
        Ok(lease)
    }
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        self.granted.lock().unwrap().remove(lease.name());
        self.inner().release(lease).await
    }
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        if let Some(info) = self.inner().inspect(name).await? {
            return Ok(Some(info));
        }
        let stale = self.granted.lock().unwrap().get(name).copied();
        Ok(stale.map(|token| LeaseInfo {
            token,
            holder: None,
            remaining: Duration::ZERO,
            label: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inspect_that_ignores_expiry_is_reported_as_an_inspect_bug() {
    let failure = run!(
        Fixture::new(InspectIgnoresExpiry::default()),
        renew_after_expiry_is_lost
    )
    .expect_err("an inspect that reports expired grants must fail the case");
    println!("caught: {failure}");
    assert!(
        failure.contains("inspect reports an expired grant") && !failure.contains("brought"),
        "the failure blames inspect, not renew: {failure}"
    );
}
