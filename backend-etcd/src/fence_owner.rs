//! "This lease still holds its lock" as a compare for the caller's own txn: what Go's
//! `concurrency.Mutex.IsOwner()` gives, so a write into etcd can be guarded by the lock itself
//! rather than by a stored token.

use etcd_client::{Compare, CompareOp};
use fencelock_core::{Error, Lease};

use crate::EtcdLeaseStore;
use crate::keys::{lease_id_of, revision_of};

impl EtcdLeaseStore {
    /// A [`Compare`] that holds iff `lease` still holds its lock: the lease's lock key
    /// (`<prefix><name>/<lease id>`) exists with the create revision that is the lease's token.
    ///
    /// Put it in your own [`Txn`](etcd_client::Txn)'s `when`: the success branch then runs
    /// only while the lease holds, in the same Raft entry as your puts, so "still the owner"
    /// and the write cannot be split by an expiry or a takeover. A lease that expired, was
    /// released or force-released, or was taken over fails the compare — its key is gone, or a
    /// later grant created the key anew with a higher revision. Unlike [`EtcdLeaseStore::fence`]
    /// it needs no mark beside your data, but it only guards writes into this etcd.
    ///
    /// The key is built with this store's key prefix: use the store that granted the lease.
    ///
    /// ```no_run
    /// # async fn demo(store: fencelock_etcd::EtcdLeaseStore, lease: fencelock_core::Lease) -> Result<(), Box<dyn std::error::Error>> {
    /// use fencelock_etcd::etcd_client::{Txn, TxnOp};
    ///
    /// let txn = Txn::new()
    ///     .when([store.owner_compare(&lease)?])
    ///     .and_then([TxnOp::put("reports/nightly", "done", None)]);
    /// let written = store.client().kv_client().txn(txn).await?.succeeded();
    /// if !written {
    ///     // The lease is gone: stop working under it.
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a lease no etcd store can have granted (its holder is not an
    /// etcd lease id, or its token not a revision).
    pub fn owner_compare(&self, lease: &Lease) -> Result<Compare, Error> {
        let (Some(lease_id), Some(revision)) =
            (lease_id_of(lease.holder()), revision_of(lease.token()))
        else {
            return Err(Error::invalid(
                "lease",
                format!(
                    "the lease on `{}` (holder {}, token {}) was not granted by an etcd store",
                    lease.name(),
                    lease.holder(),
                    lease.token()
                ),
            ));
        };
        let key = self.lock_keys(lease.name()).holder_key(lease_id);
        Ok(Compare::create_revision(key, CompareOp::Equal, revision))
    }
}
