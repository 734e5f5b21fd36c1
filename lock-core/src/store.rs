//! The `LeaseStore` contract: the small surface every backend implements.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{ReleaseWatch, WaitPolicy, acquire_permit_with_polling, acquire_with_polling};
use crate::{
    Diagnosis, Error, FencingToken, Lease, LeaseInfo, ListQuery, Listing, LockName, Operation,
    OwnerLabel, PermitAttempt, PermitLimit, Permits, TtlLimits,
};

/// A store that grants leases with a TTL and issues fencing tokens.
///
/// Backends implement this (the [`crate::backend`] module is the guide and holds the pieces);
/// users normally go through [`crate::Locker`], which adds waiting, renewal, loss signals and
/// regression checks on top. `Arc<S>`, `Box<S>` and wrappers built on
/// [`crate::backend::ForwardingStore`] are stores too. Every `# Behavior` bullet below has a
/// conformance case of the same name in `fencelock-conformance`.
///
/// Expiry is judged by the **store's** clock, never by comparing client wall clocks. Contention
/// is a value (`Ok(None)`), failure is an [`Error`] that classifies itself
/// ([`Error::kind`]).
#[async_trait]
pub trait LeaseStore: Send + Sync + fmt::Debug {
    /// A short name of the backend for errors, logs and metrics (`"memory"`, `"redis"`, …).
    fn backend(&self) -> &'static str;

    /// The TTLs this store accepts.
    fn ttl_limits(&self) -> TtlLimits;

    /// Tries once to take `name` for `ttl`, storing `label` with the grant.
    ///
    /// # Behavior
    /// - `acquire_grants_when_free`: a free name is granted; the lease carries the TTL the server
    ///   granted and a local deadline measured from the moment the request was sent.
    /// - `acquire_is_exclusive`: while a grant holds, every other attempt gets `Ok(None)`.
    /// - `exclusive_until_local_deadline`: every other attempt gets `Ok(None)` until the
    ///   granted lease's [`Lease::deadline`] at least: the store keeps the grant for the full
    ///   TTL the lease reports, counted from no earlier than the request's send, so that no
    ///   rival is granted while the holder's `is_locally_valid()` still says true. After the
    ///   server's expiry a rival is granted.
    /// - `concurrent_acquire_single_winner`: of many simultaneous attempts, exactly one wins.
    /// - `tokens_increase_across_release`, `tokens_increase_across_expiry`: a granted token is
    ///   strictly greater than every token ever granted for that name.
    /// - `ttl_validation`: zero, sub-millisecond and above-maximum TTLs are `InvalidInput`, and
    ///   nothing is sent.
    /// - `hostile_names_round_trip_and_stay_isolated`: any valid [`LockName`] maps to its own lock.
    /// - `label_round_trips`: the label is stored atomically with the grant and comes back in
    ///   [`Lease::label`], [`LeaseStore::inspect`] and [`LeaseStore::list`]; a grant without one
    ///   reports none, and a later grant's label replaces an earlier holder's.
    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error>;

    /// [`LeaseStore::try_acquire_as`] without an owner label. Implement `try_acquire_as`, not
    /// this: wrappers and the [`crate::Locker`] go through `try_acquire_as`.
    async fn try_acquire(&self, name: &LockName, ttl: Duration) -> Result<Option<Lease>, Error> {
        self.try_acquire_as(name, ttl, None).await
    }

    /// Extends `lease` to `ttl` from now, if this exact grant (holder id + token) still holds.
    ///
    /// # Behavior
    /// - `renew_extends`: renewing before expiry keeps the grant past its original TTL.
    /// - `renew_after_expiry_is_lost`: after the grant expired, renew is `LeaseLost` and does not
    ///   bring it back, even if nobody took the name in between.
    /// - `renew_with_forged_holder_is_lost`: a lease whose holder id or token differs from the
    ///   current grant is `LeaseLost`.
    /// - `ttl_validation`: invalid TTLs are `InvalidInput`.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error>;

    /// Renews every lease of `leases` to `ttl`, as [`LeaseStore::renew`] would one by one, and
    /// answers in the same order, one result per lease. Backends that can batch (one pipeline,
    /// one statement, one stream) override it; the default renews them concurrently. The
    /// [`crate::Locker`] funnels its watchdogs' renewals through here.
    ///
    /// # Behavior
    /// - `renew_many_answers_each_lease`: a batch mixing held, expired, released and forged
    ///   leases renews exactly the held ones and answers `LeaseLost` for each other one, in
    ///   order; an empty batch is an empty answer; an invalid TTL is `InvalidInput` for every
    ///   lease and renews none.
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        futures::future::join_all(leases.iter().map(|lease| self.renew(lease, ttl))).await
    }

    /// Frees `lease`, if this exact grant still holds.
    ///
    /// # Behavior
    /// - `stale_release_never_frees_newer_holder`: releasing a grant that expired and was taken
    ///   over is `LeaseLost` and leaves the newer holder in place.
    /// - `double_release_is_reported`: releasing twice is `LeaseLost` the second time.
    async fn release(&self, lease: &Lease) -> Result<(), Error>;

    /// The current holder of `name`, if any.
    ///
    /// # Behavior
    /// - `inspect_reports_holder_and_remaining`: shows the holder's token and the time left by the
    ///   server's clock; `None` once released.
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error>;

    /// The held locks whose names start with the query's prefix, in name order, one page of at
    /// most [`ListQuery::limit`] (continue with [`Listing::next`]). For operators and tools:
    /// a listing is a snapshot, stale as soon as it is read, never a way to decide who may write.
    /// The default is `Unsupported`, for a store that cannot enumerate its locks.
    ///
    /// # Behavior
    /// - `list_sees_exactly_held_locks_under_prefix`: lists every held lock under the prefix with
    ///   its token, time left and label, and nothing else: not released or expired locks, not
    ///   names outside the prefix; pages continue where the last one ended.
    /// - `list_prefix_is_literal`: `*`, `?`, `[`, `%`, `_`, `{` and `\` in a prefix match only
    ///   themselves.
    async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        let _ = query;
        Err(Error::unsupported(
            self.backend(),
            Operation::List,
            "this store cannot list its locks",
        ))
    }

    /// Breaks the current grant of `name`, whoever holds it (an operator's tool). Returns the
    /// token of the grant that was broken.
    ///
    /// # Behavior
    /// - `force_release_frees_and_reports_token`: the broken holder's renew is `LeaseLost`, the next
    ///   grant has a greater token, and breaking a free name returns `None`.
    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error>;

    /// Subscribes to "`name` may be free now" notifications, for waiters.
    ///
    /// `Ok(None)` means the store has no push notifications and waiters poll with jitter.
    /// Subscribe *before* the attempt that failed, so that a release in between is not missed.
    ///
    /// # Behavior
    /// - `waiter_acquires_after_release`: a waiter learns of a release without waiting out the
    ///   holder's TTL.
    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        let _ = name;
        Ok(None)
    }

    /// Subscribes an observer to "the holder of `name` may have changed" notifications, for
    /// [`crate::LeaderWatch`]: woken by every release the store pushes, and by grants where it
    /// pushes those too (the memory store and etcd). An observer never takes a waiter's turn.
    ///
    /// `Ok(None)` means no push: observers poll. The default turns a
    /// [`LeaseStore::watch_released`] subscription into an observer's
    /// ([`ReleaseWatch::into_observer`]).
    async fn watch_holder(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        Ok(self
            .watch_released(name)
            .await?
            .map(ReleaseWatch::into_observer))
    }

    /// Asks the store whether it is configured so that locks stay safe: persistence, eviction,
    /// replication and failover settings, health. A program can call it at start-up;
    /// `fencelock check` renders it.
    ///
    /// # Behavior
    /// - `diagnose_reports_findings`: answers the server it talked to and at least one finding,
    ///   or `Unsupported` for a store that has nothing to say; never a secret in any text.
    async fn diagnose(&self) -> Result<Diagnosis, Error> {
        Err(Error::unsupported(
            self.backend(),
            Operation::Diagnose,
            "this store offers no diagnosis",
        ))
    }

    /// Waits until `name` is granted (with `label`, as [`LeaseStore::try_acquire_as`]) or
    /// `policy.until` passes (`Ok(None)`).
    ///
    /// The default subscribes with [`LeaseStore::watch_released`], tries, and sleeps until a
    /// notification, the holder's remaining TTL, or the poll interval, whichever comes first.
    /// Backends with a native queue (etcd) override it. Dropping the future while it waits
    /// leaves nothing held.
    ///
    /// # Behavior
    /// - `waiter_times_out`: returns `Ok(None)` once the deadline passes.
    /// - `dropped_waiter_leaves_nothing_held`: cancelling a wait leaves no grant behind.
    async fn acquire_waiting(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        acquire_with_polling(self, name, ttl, label, policy).await
    }

    /// Grants one permit of the semaphore `name` (with `label`) if fewer than `limit` permits
    /// hold now, by the server's clock; `Ok(None)` when all are taken.
    ///
    /// A permit is a [`Lease`] whose [`Lease::permit_limit`] is set: [`LeaseStore::renew`],
    /// [`LeaseStore::renew_many`] and [`LeaseStore::release`] accept it and touch only that
    /// permit. Semaphores and locks are separate: the semaphore `x` and the lock `x` never
    /// exclude each other. The default is `Unsupported`, for a store without semaphores.
    ///
    /// # Behavior
    /// - `permit_limit_is_enforced`: at most `limit` permits hold at once; each grant has its
    ///   own holder id and a token above every earlier grant of the name; a release frees a
    ///   place for the next one.
    /// - `permit_limit_mismatch_is_invalid_input`: asking with another limit than the holders'
    ///   is `InvalidInput` naming both limits, and grants nothing; once every permit is gone,
    ///   the new limit holds.
    /// - `permit_expiry_frees_a_place`: a permit not renewed expires by the server's clock;
    ///   its place goes to the next asker with a greater token, and its renew and release are
    ///   `LeaseLost`.
    /// - `permit_renew_and_release_touch_only_that_permit`: renewing or releasing one permit
    ///   leaves the others and the lock of the same name as they were; a second release and a
    ///   forged holder are `LeaseLost`.
    async fn try_acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        let _ = (name, limit, ttl, label);
        Err(Error::unsupported(
            self.backend(),
            Operation::Acquire,
            "this store has no semaphores",
        ))
    }

    /// [`LeaseStore::try_acquire_permit`], answering also, when every permit is taken, how long
    /// until the soonest of them runs out by the server's clock: what a waiter needs to know
    /// to sleep until it may try again (or until a release wakes it, or its poll interval).
    ///
    /// The default asks [`LeaseStore::inspect_permits`] after a refusal, which reads every live
    /// permit; a store whose grant step already knows the soonest expiry answers from that one
    /// request (Redis, PostgreSQL and the memory store do).
    ///
    /// # Behavior
    /// - `permit_full_answers_the_next_expiry`: with every permit taken the answer is `Full`,
    ///   with the time left of the permit that runs out first (not of a later one), and
    ///   nothing is granted; with a place free it grants as `try_acquire_permit` does.
    async fn try_acquire_permit_or_next_expiry(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        match self.try_acquire_permit(name, limit, ttl, label).await? {
            Some(lease) => Ok(PermitAttempt::Granted(lease)),
            None => Ok(PermitAttempt::Full {
                next_expiry: self.inspect_permits(name).await?.next_expiry(),
            }),
        }
    }

    /// The permits of the semaphore `name` that hold now, by the server's clock, in token
    /// order, with the limit they were granted under. The default is `Unsupported`.
    ///
    /// # Behavior
    /// - `inspect_permits_shows_each_holder`: shows each live permit's token, holder, time
    ///   left and label, and the limit; nothing and no limit once they are all gone.
    async fn inspect_permits(&self, name: &LockName) -> Result<Permits, Error> {
        let _ = name;
        Err(Error::unsupported(
            self.backend(),
            Operation::Inspect,
            "this store has no semaphores",
        ))
    }

    /// Subscribes to "a permit of `name` may be free now" notifications, as
    /// [`LeaseStore::watch_released`] does for locks. `Ok(None)`: waiters poll.
    async fn watch_permits(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        let _ = name;
        Ok(None)
    }

    /// Waits until a permit of `name` is granted or `policy.until` passes (`Ok(None)`). The
    /// default is [`crate::backend::acquire_permit_with_polling`]. Dropping the future while
    /// it waits leaves nothing held.
    ///
    /// # Behavior
    /// - `permit_waiter_acquires_after_release`: a waiter learns of a released permit without
    ///   waiting out a holder's TTL or its poll interval.
    /// - `permit_waiter_acquires_after_expiry`: a holder that stops renewing frees its place
    ///   when its TTL runs out, and a waiter with a long poll interval takes it then, not at
    ///   its next poll.
    async fn acquire_permit_waiting(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
        policy: WaitPolicy,
    ) -> Result<Option<Lease>, Error> {
        acquire_permit_with_polling(self, name, limit, ttl, label, policy).await
    }
}
