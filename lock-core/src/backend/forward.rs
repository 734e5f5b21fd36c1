//! One way to wrap a store: implement [`ForwardingStore`] and override only what you intercept.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{ReleaseWatch, WaitPolicy};
use crate::{
    Diagnosis, Error, FencingToken, Lease, LeaseInfo, LeaseStore, ListQuery, Listing, LockName,
    OwnerLabel, PermitAttempt, PermitLimit, Permits, TtlLimits,
};

/// A store that wraps another: every method forwards to [`ForwardingStore::inner`] unless the
/// wrapper overrides it, and every `ForwardingStore` is a [`LeaseStore`].
///
/// This is the one forwarding mechanism of the workspace: `Arc<S>` and `Box<S>` use it, and so
/// do instrumenting wrappers (the benchmark's counting store) and the torture suite's planted
/// bugs. The `LeaseStore` impl behind it is checked by `#[deny(clippy::missing_trait_methods)]`,
/// so a method added to the contract cannot be left unforwarded: it must be added here too, with
/// a forwarding default, and then every wrapper forwards it without a change.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use fencelock_core::backend::ForwardingStore;
/// use fencelock_core::{Error, Lease, LeaseStore, async_trait};
///
/// /// Counts renewals; everything else goes straight to the wrapped store.
/// #[derive(Debug)]
/// struct Counting {
///     inner: Arc<dyn LeaseStore>,
///     renewals: AtomicU64,
/// }
///
/// #[async_trait]
/// impl ForwardingStore for Counting {
///     fn inner(&self) -> &dyn LeaseStore {
///         &*self.inner
///     }
///     async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
///         self.renewals.fetch_add(1, Ordering::Relaxed);
///         self.inner().renew(lease, ttl).await
///     }
/// }
/// ```
///
/// Inside the impl, reach the wrapped store through [`ForwardingStore::inner`]: a
/// `&dyn LeaseStore` has only [`LeaseStore`]'s methods, where an `Arc` field would offer this
/// trait's methods of the same names too (the compiler asks which one you mean).
///
/// A wrapper that overrides a method changes what the wrapper does, not what the wrapped store
/// does: the wrapped store's own `acquire_waiting` still calls its own `try_acquire_as`, and its
/// own `renew_many` its own renewals. Override `acquire_waiting` with `try_acquire_as`, and
/// `renew_many` with `renew`, where the wrapper's behaviour must show there too (the
/// [`crate::Locker`] renews through `renew_many`).
#[async_trait]
pub trait ForwardingStore: Send + Sync + fmt::Debug {
    /// The wrapped store.
    fn inner(&self) -> &dyn LeaseStore;

    /// See [`LeaseStore::backend`].
    fn backend(&self) -> &'static str {
        self.inner().backend()
    }

    /// See [`LeaseStore::ttl_limits`].
    fn ttl_limits(&self) -> TtlLimits {
        self.inner().ttl_limits()
    }

    /// See [`LeaseStore::try_acquire_as`]; [`LeaseStore::try_acquire`] comes here too, so a
    /// wrapper intercepts every acquire by overriding this one method.
    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        self.inner().try_acquire_as(name, ttl, label).await
    }

    /// See [`LeaseStore::renew`].
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        self.inner().renew(lease, ttl).await
    }

    /// See [`LeaseStore::renew_many`].
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        self.inner().renew_many(leases, ttl).await
    }

    /// See [`LeaseStore::release`].
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        self.inner().release(lease).await
    }

    /// See [`LeaseStore::inspect`].
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        self.inner().inspect(name).await
    }

    /// See [`LeaseStore::list`].
    async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        self.inner().list(query).await
    }

    /// See [`LeaseStore::force_release`].
    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        self.inner().force_release(name).await
    }

    /// See [`LeaseStore::watch_released`].
    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.inner().watch_released(name).await
    }

    /// See [`LeaseStore::watch_holder`].
    async fn watch_holder(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.inner().watch_holder(name).await
    }

    /// See [`LeaseStore::diagnose`].
    async fn diagnose(&self) -> Result<Diagnosis, Error> {
        self.inner().diagnose().await
    }

    /// See [`LeaseStore::acquire_waiting`].
    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        self.inner().acquire_waiting(name, ttl, label, policy).await
    }

    /// See [`LeaseStore::try_acquire_permit`].
    async fn try_acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        self.inner()
            .try_acquire_permit(name, limit, ttl, label)
            .await
    }

    /// See [`LeaseStore::try_acquire_permit_or_next_expiry`].
    async fn try_acquire_permit_or_next_expiry(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        self.inner()
            .try_acquire_permit_or_next_expiry(name, limit, ttl, label)
            .await
    }

    /// See [`LeaseStore::inspect_permits`].
    async fn inspect_permits(&self, name: &LockName) -> Result<Permits, Error> {
        self.inner().inspect_permits(name).await
    }

    /// See [`LeaseStore::watch_permits`].
    async fn watch_permits(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.inner().watch_permits(name).await
    }

    /// See [`LeaseStore::acquire_permit_waiting`].
    async fn acquire_permit_waiting(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        self.inner()
            .acquire_permit_waiting(name, limit, ttl, label, policy)
            .await
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<W: ForwardingStore + ?Sized> LeaseStore for W {
    fn backend(&self) -> &'static str {
        ForwardingStore::backend(self)
    }
    fn ttl_limits(&self) -> TtlLimits {
        ForwardingStore::ttl_limits(self)
    }
    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        ForwardingStore::try_acquire_as(self, name, ttl, label).await
    }
    async fn try_acquire(&self, name: &LockName, ttl: Duration) -> Result<Option<Lease>, Error> {
        ForwardingStore::try_acquire_as(self, name, ttl, None).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        ForwardingStore::renew(self, lease, ttl).await
    }
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        ForwardingStore::renew_many(self, leases, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        ForwardingStore::release(self, lease).await
    }
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        ForwardingStore::inspect(self, name).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        ForwardingStore::list(self, query).await
    }
    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        ForwardingStore::force_release(self, name).await
    }
    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        ForwardingStore::watch_released(self, name).await
    }
    async fn watch_holder(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        ForwardingStore::watch_holder(self, name).await
    }
    async fn diagnose(&self) -> Result<Diagnosis, Error> {
        ForwardingStore::diagnose(self).await
    }
    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        ForwardingStore::acquire_waiting(self, name, ttl, label, policy).await
    }
    async fn try_acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        ForwardingStore::try_acquire_permit(self, name, limit, ttl, label).await
    }
    async fn try_acquire_permit_or_next_expiry(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        ForwardingStore::try_acquire_permit_or_next_expiry(self, name, limit, ttl, label).await
    }
    async fn inspect_permits(&self, name: &LockName) -> Result<Permits, Error> {
        ForwardingStore::inspect_permits(self, name).await
    }
    async fn watch_permits(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        ForwardingStore::watch_permits(self, name).await
    }
    async fn acquire_permit_waiting(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        ForwardingStore::acquire_permit_waiting(self, name, limit, ttl, label, policy).await
    }
}

/// Pointers to a store are the store: `Arc<MemoryLeaseStore>`, `Box<dyn LeaseStore>`, ….
macro_rules! pointers_forward {
    ($($ptr:ident),*) => {$(
        impl<S: LeaseStore> ForwardingStore for $ptr<S> {
            fn inner(&self) -> &dyn LeaseStore {
                &**self
            }
        }

        impl ForwardingStore for $ptr<dyn LeaseStore> {
            fn inner(&self) -> &dyn LeaseStore {
                &**self
            }
        }
    )*};
}

pointers_forward!(Arc, Box);
