//! etcd: `EtcdLeaseStore` (a claim txn on a spare lease to acquire, a compare-revision delete
//! txn to release) against a put-if-absent txn + delete with a pre-granted lease, the store's
//! own txns issued by hand, and etcd's built-in lock service.

use fencelock_core::Locker;
use fencelock_etcd::EtcdLeaseStore;
use fencelock_etcd::etcd_client::{
    Client, Compare, CompareOp, GetOptions, LockOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp,
};

use super::{PERMIT_ROW, TTL, locker_cycle, permit_cycle, run_id, store_cycle, unexpectedly_held};
use crate::cycle::{Cycle, Role, Variant, cycle};
use crate::error::Result;

/// The lease the raw floor and the built-in lock use for the whole run.
const SESSION_TTL_SECS: i64 = 3_600;

/// The store and a client sharing its channel.
#[derive(Clone)]
pub struct EtcdBench {
    /// Our store.
    pub store: EtcdLeaseStore,
    /// A locker over it.
    pub locker: Locker,
    /// The store's client, for the raw floor.
    pub client: Client,
    /// A lease granted once, for the raw floor and the built-in lock.
    pub session: i64,
    prefix: String,
}

impl std::fmt::Debug for EtcdBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBench")
            .field("session", &self.session)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl EtcdBench {
    /// Connects to `endpoints`.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let store = EtcdLeaseStore::connect(endpoints).await?;
        let mut client = store.client().clone();
        let session = client.lease_grant(SESSION_TTL_SECS, None).await?.id();
        Ok(Self {
            locker: Locker::new(store.clone()),
            client,
            store,
            session,
            prefix: format!("bench/{}", run_id()),
        })
    }

    /// Revokes the session lease.
    pub async fn close(&self) -> Result<()> {
        self.client.clone().lease_revoke(self.session).await?;
        Ok(())
    }

    /// The server's version.
    pub async fn version(&self) -> Result<String> {
        let status = self.client.clone().status().await?;
        Ok(format!("etcd {}", status.version()))
    }

    /// Ours through `Locker`, on a fresh name per call.
    pub fn ours(&self, tag: &str) -> Cycle {
        locker_cycle(&self.locker, format!("{}/{tag}", self.prefix))
    }

    /// Ours through the store alone.
    pub fn ours_store(&self, tag: &str) -> Cycle {
        store_cycle(&self.store, format!("{}/{tag}", self.prefix))
    }

    /// The raw floor: txn (create revision = 0 → put with the pre-granted lease) + delete.
    pub fn raw(&self, tag: &str) -> Cycle {
        let (client, session) = (self.client.clone(), self.session);
        let prefix = format!("{}/raw/{tag}", self.prefix);
        cycle(move |i| {
            let mut client = client.clone();
            let key = format!("{prefix}/{i}");
            async move {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key.clone(),
                        Vec::new(),
                        Some(PutOptions::new().with_lease(session)),
                    )]);
                if !client.txn(txn).await?.succeeded() {
                    return Err(unexpectedly_held("put-if-absent txn"));
                }
                client.delete(key, None).await?;
                Ok(())
            }
        })
    }

    /// The store's two txns by hand, on the session lease: the claim (put iff nothing is under
    /// the name, else read the queue) and the release (delete iff the create revision matches,
    /// else read the queue). What the store costs without its client-side work.
    pub fn store_txns(&self, tag: &str) -> Cycle {
        let (client, session) = (self.client.clone(), self.session);
        let prefix = format!("{}/txns/{tag}", self.prefix);
        cycle(move |i| {
            let mut client = client.clone();
            let queue = format!("{prefix}/{i}/");
            let key = format!("{queue}{session:x}");
            async move {
                let read = || {
                    TxnOp::get(
                        queue.clone(),
                        Some(
                            GetOptions::new()
                                .with_prefix()
                                .with_keys_only()
                                .with_sort(SortTarget::Create, SortOrder::Ascend),
                        ),
                    )
                };
                let claim = Txn::new()
                    .when([
                        Compare::create_revision(queue.clone(), CompareOp::Equal, 0).with_prefix()
                    ])
                    .and_then([TxnOp::put(
                        key.clone(),
                        Vec::new(),
                        Some(PutOptions::new().with_lease(session)),
                    )])
                    .or_else([read()]);
                let claimed = client.txn(claim).await?;
                if !claimed.succeeded() {
                    return Err(unexpectedly_held("claim txn"));
                }
                let revision = claimed.header().map_or(0, |h| h.revision());
                let release = Txn::new()
                    .when([Compare::create_revision(
                        key.clone(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then([TxnOp::delete(key, None)])
                    .or_else([read()]);
                if !client.txn(release).await?.succeeded() {
                    return Err(unexpectedly_held("release txn"));
                }
                Ok(())
            }
        })
    }

    /// etcd-client's built-in `lock` + `unlock` (the v3lock service), on the session lease.
    pub fn builtin(&self, tag: &str) -> Cycle {
        let (client, session) = (self.client.clone(), self.session);
        let prefix = format!("{}/builtin/{tag}", self.prefix);
        cycle(move |i| {
            let mut client = client.clone();
            let name = format!("{prefix}/{i}");
            async move {
                let held = client
                    .lock(name, Some(LockOptions::new().with_lease(session)))
                    .await?;
                client.unlock(held.key()).await?;
                Ok(())
            }
        })
    }

    /// The built-in lock with a lease of its own per lock, as ours has: grant + lock + unlock
    /// + revoke.
    pub fn builtin_own_lease(&self, tag: &str) -> Cycle {
        let client = self.client.clone();
        let prefix = format!("{}/builtin-lease/{tag}", self.prefix);
        let ttl = TTL.as_secs() as i64;
        cycle(move |i| {
            let mut client = client.clone();
            let name = format!("{prefix}/{i}");
            async move {
                let lease = client.lease_grant(ttl, None).await?.id();
                let held = client
                    .lock(name, Some(LockOptions::new().with_lease(lease)))
                    .await?;
                client.unlock(held.key()).await?;
                client.lease_revoke(lease).await?;
                Ok(())
            }
        })
    }

    /// One read round trip: a linearizable range read of one key.
    pub fn read(&self) -> Cycle {
        let client = self.client.clone();
        let key = format!("{}/rtt", self.prefix);
        cycle(move |_| {
            let mut client = client.clone();
            let key = key.clone();
            async move {
                client.get(key, None).await?;
                Ok(())
            }
        })
    }

    /// One write round trip: a put.
    pub fn write(&self) -> Cycle {
        let client = self.client.clone();
        let key = format!("{}/rtt", self.prefix);
        cycle(move |_| {
            let mut client = client.clone();
            let key = key.clone();
            async move {
                client.put(key, "x", None).await?;
                Ok(())
            }
        })
    }

    /// The uncontended variants, headline first.
    pub fn uncontended(&self, reference_every: usize) -> Vec<Variant> {
        vec![
            Variant::new(
                "fencelock `Locker` acquire + release",
                Role::Ours,
                self.ours("u"),
            ),
            Variant::new(
                "fencelock store try_acquire + release",
                Role::OursStore,
                self.ours_store("s"),
            ),
            Variant::new(
                "raw: put-if-absent txn + delete, pre-granted lease",
                Role::Raw,
                self.raw("u"),
            ),
            Variant::new(
                "the store's two txns by hand (claim + compare-revision delete, one session lease)",
                Role::Reference,
                self.store_txns("u"),
            ),
            Variant::new(
                PERMIT_ROW,
                Role::Reference,
                permit_cycle(&self.locker, format!("{}/permit", self.prefix)),
            ),
            Variant::new(
                "etcd-client built-in `lock` + `unlock` (one session lease)",
                Role::Reference,
                self.builtin("u"),
            ),
            Variant::new(
                "built-in `lock` + `unlock` with a lease per lock (grant, lock, unlock, revoke)",
                Role::Reference,
                self.builtin_own_lease("u"),
            )
            .every(reference_every),
            Variant::new("one read round trip (range)", Role::Reference, self.read())
                .every(reference_every),
            Variant::new("one write (put)", Role::Reference, self.write()).every(reference_every),
        ]
    }

    /// Throughput cycles, ours and raw: called with the task's index, so each task keeps one name.
    pub fn throughput(&self) -> (Cycle, Cycle) {
        (self.ours("tp"), self.raw("tp"))
    }

    /// The name the hand-off waiters share.
    pub fn handoff_name(&self) -> String {
        format!("{}/handoff", self.prefix)
    }
}
