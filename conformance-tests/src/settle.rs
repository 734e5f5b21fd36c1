//! Store calls settled for tests: a definite answer, whatever a fault or a loaded machine made
//! of the first attempts.
//!
//! Against real servers any call can end in `Unavailable` (not applied) or `OutcomeUnknown`
//! (perhaps applied): a server is paused, killed or restarting, a proxy stalls, or a 2-core
//! machine does not schedule a server within a tight timeout. That is a result a test must
//! account for, never an `unwrap`. Where a test's point lies elsewhere, these helpers ask
//! again, for at most [`PATIENCE`], until the store answers definitely, and resolve what an
//! attempt with an unknown outcome may have left behind:
//!
//! - a release that was applied: the next attempt meets `LeaseLost` ([`release`]);
//! - a break that was applied: the next attempt finds the name free, the broken token is not
//!   reported ([`force_release`], [`ForceReleased::AnswerLost`]);
//! - a grant whose reply was lost (or whose rollback did not reach every server): an orphan no
//!   one can use holds the name until its TTL; when the name is the test's alone, its token is
//!   above every token the test knows, and it is broken before asking again ([`acquire`],
//!   [`try_acquire`]).
//!
//! A transient error that outlasts [`PATIENCE`], and every other error, fails the test with the
//! last error. Whatever a helper met on the way is printed, so a test that needed it says so.
//! Tests whose point *is* the transient error (a paused server must time out) match on it
//! themselves, and tests where an unknown outcome is one of the results under test count it.

use std::future::Future;
use std::time::Duration;

use fencelock_core::{
    Error, ErrorKind, FencingToken, Lease, LeaseInfo, LeaseStore, LockGuard, LockName,
};
use tokio::time::Instant;

/// How long a settling helper keeps asking while the answers are transient errors.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The pause before asking again.
const AGAIN: Duration = Duration::from_millis(20);

/// Transient errors met on the way to a definite answer.
struct Met {
    what: String,
    since: Instant,
    count: u32,
    /// Whether one was `OutcomeUnknown`: an earlier attempt may have been applied.
    maybe_applied: bool,
    last: Option<Error>,
}

impl Met {
    fn new(what: &str) -> Self {
        Self {
            what: what.to_owned(),
            since: Instant::now(),
            count: 0,
            maybe_applied: false,
            last: None,
        }
    }

    /// Records a transient `error` and waits before the next attempt; fails the test once the
    /// answers have been transient for longer than [`PATIENCE`].
    async fn transient(&mut self, error: Error) {
        self.count += 1;
        assert!(
            self.since.elapsed() < PATIENCE,
            "{}: still no definite answer after {PATIENCE:?} and {} attempts; last: {error}",
            self.what,
            self.count
        );
        self.maybe_applied |= error.kind() == ErrorKind::OutcomeUnknown;
        self.last = Some(error);
        tokio::time::sleep(AGAIN).await;
    }

    /// Whether any attempt failed transiently.
    fn any(&self) -> bool {
        self.count > 0
    }

    /// Says on stderr what was met, if anything.
    fn report(&self, outcome: &str) {
        if let Some(last) = &self.last {
            eprintln!(
                "{}: {outcome} after {} transient errors (last: {last})",
                self.what, self.count
            );
        }
    }
}

/// Runs `op` until it answers anything but a transient error, and returns that answer.
///
/// For calls whose retry is harmless: inspect, renew (of the same lease), reads, and calls whose
/// expected answer is an error (a stale release stays `LeaseLost`).
pub async fn settle<T, F, Fut>(what: &str, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut met = Met::new(what);
    loop {
        match op().await {
            Err(e) if e.is_transient() => met.transient(e).await,
            answer => {
                met.report("answered");
                return answer;
            }
        }
    }
}

/// [`settle`] for a call that must succeed: fails the test with the error otherwise.
pub async fn definite<T, F, Fut>(what: &str, op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    settle(what, op)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `store.inspect(name)`, settled.
pub async fn inspect<S: LeaseStore + ?Sized>(store: &S, name: &LockName) -> Option<LeaseInfo> {
    definite(&format!("inspect `{name}`"), || store.inspect(name)).await
}

/// `store.renew_many(leases, ttl)`, asked again while any answer is a transient error (renewing
/// a lease again is harmless); every answer is definite.
pub async fn renew_many<S: LeaseStore + ?Sized>(
    store: &S,
    leases: &[Lease],
    ttl: Duration,
) -> Vec<Result<Lease, Error>> {
    let mut met = Met::new(&format!("renew_many of {} leases", leases.len()));
    loop {
        let mut answers = store.renew_many(leases, ttl).await;
        match answers
            .iter()
            .position(|a| a.as_ref().is_err_and(Error::is_transient))
        {
            Some(i) => met.transient(answers.swap_remove(i).unwrap_err()).await,
            None => {
                met.report("answered");
                return answers;
            }
        }
    }
}

/// Releases `lease`, which must still hold.
///
/// After an attempt with an unknown outcome, `LeaseLost` means that attempt may have been
/// applied; it is accepted only if the name is no longer held with this lease's token.
pub async fn release<S: LeaseStore + ?Sized>(store: &S, lease: &Lease) {
    release_after(
        store,
        lease,
        Met::new(&format!("release `{}`", lease.name())),
    )
    .await;
}

/// Releases `guard`, whose lease must still hold, as [`release`] does: a transient error from
/// the guard's own release is followed by releases of its lease through `store`.
pub async fn release_guard<S: LeaseStore + ?Sized>(store: &S, guard: LockGuard) {
    let lease = guard.lease();
    let mut met = Met::new(&format!("release the guard of `{}`", lease.name()));
    match guard.release().await {
        Ok(()) => {}
        Err(e) if e.is_transient() => {
            met.transient(e).await;
            release_after(store, &lease, met).await;
        }
        Err(e) => panic!("{}: {e}", met.what),
    }
}

async fn release_after<S: LeaseStore + ?Sized>(store: &S, lease: &Lease, mut met: Met) {
    loop {
        match store.release(lease).await {
            Ok(()) => return met.report("released"),
            Err(e) if e.is_transient() => met.transient(e).await,
            Err(e) if e.kind() == ErrorKind::LeaseLost && met.maybe_applied => {
                let holder = inspect(store, lease.name()).await;
                assert!(
                    holder.as_ref().is_none_or(|h| h.token != lease.token()),
                    "{}: {e}, yet token {} still holds the name",
                    met.what,
                    lease.token()
                );
                return met.report(&format!(
                    "released by an attempt whose outcome was unknown (the next one met: {e})"
                ));
            }
            Err(e) => panic!("{}: {e}", met.what),
        }
    }
}

/// A force-release's definite answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceReleased {
    /// The store's answer: the token it broke, `None` if nothing held the name.
    Answered(Option<FencingToken>),
    /// An attempt with an unknown outcome came first and the next one found the name free: that
    /// attempt broke whatever held the name, and its answer is lost.
    AnswerLost,
}

impl ForceReleased {
    /// Whether this break ended the grant with `token`, as far as the answers tell: the store
    /// reported `token`, or the report was lost (the caller knows `token` held the name).
    pub fn broke(self, token: FencingToken) -> bool {
        matches!(self, Self::Answered(Some(t)) if t == token) || self == Self::AnswerLost
    }
}

/// `store.force_release(name)`, settled.
pub async fn force_release<S: LeaseStore + ?Sized>(store: &S, name: &LockName) -> ForceReleased {
    let mut met = Met::new(&format!("force-release `{name}`"));
    loop {
        match store.force_release(name).await {
            Ok(None) if met.maybe_applied => {
                met.report("found the name free");
                return ForceReleased::AnswerLost;
            }
            Ok(broken) => {
                met.report("answered");
                return ForceReleased::Answered(broken);
            }
            Err(e) if e.is_transient() => met.transient(e).await,
            Err(e) => panic!("{}: {e}", met.what),
        }
    }
}

/// Runs `attempt` (one acquire of `name`, through the store or a locker, waiting or not) until
/// it answers definitely, and returns that answer: the grant, or `None` when a grant the test
/// knows of held the name (for as long as `attempt` waits).
///
/// `name` must be the calling test's alone, and `floor` the highest token the test has seen
/// for it (`None`: none yet). After an attempt that failed transiently, a holder with a token
/// above `floor` can only be that attempt's own grant, whose reply was lost or whose rollback
/// did not reach every server: no one can use or release it, so it is broken before `attempt`
/// runs again.
pub async fn acquire<S, T, F, Fut>(
    store: &S,
    name: &LockName,
    floor: Option<FencingToken>,
    mut attempt: F,
) -> Option<T>
where
    S: LeaseStore + ?Sized,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Error>>,
{
    let mut met = Met::new(&format!("acquire `{name}`"));
    loop {
        match attempt().await {
            Ok(Some(granted)) => {
                met.report("granted");
                return Some(granted);
            }
            Ok(None) if !met.any() => return None,
            Ok(None) => {
                if break_orphan(store, name, floor, &met).await == Holder::Known {
                    met.report("held by a grant the test knows");
                    return None;
                }
            }
            Err(e) if e.is_transient() => {
                met.transient(e).await;
                break_orphan(store, name, floor, &met).await;
            }
            Err(e) => panic!("{}: {e}", met.what),
        }
    }
}

/// Who holds a name, as [`break_orphan`] found it.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    Nobody,
    /// A grant with a token at or below the floor: one the test knows.
    Known,
    /// A grant above the floor, which was broken.
    Orphan,
}

/// Breaks the holder of `name` if its token is above `floor`: after an attempt with an unknown
/// outcome, that is the attempt's own grant (see [`acquire`]).
async fn break_orphan<S: LeaseStore + ?Sized>(
    store: &S,
    name: &LockName,
    floor: Option<FencingToken>,
    met: &Met,
) -> Holder {
    match inspect(store, name).await {
        None => Holder::Nobody,
        Some(holder) if floor.is_some_and(|f| holder.token <= f) => Holder::Known,
        Some(holder) => {
            let broken = force_release(store, name).await;
            eprintln!(
                "{}: broke token {} (above {floor:?}, the highest the test knows), granted to an attempt that failed; {broken:?}",
                met.what, holder.token
            );
            Holder::Orphan
        }
    }
}

/// `store.try_acquire(name, ttl)` through [`acquire`]: `name` must be the test's alone and
/// `floor` the highest token it has seen for it.
pub async fn try_acquire<S: LeaseStore + ?Sized>(
    store: &S,
    name: &LockName,
    ttl: Duration,
    floor: Option<FencingToken>,
) -> Option<Lease> {
    acquire(store, name, floor, || store.try_acquire(name, ttl)).await
}

/// [`try_acquire`] of a name that must be free: fails the test if it is held.
pub async fn grant<S: LeaseStore + ?Sized>(
    store: &S,
    name: &LockName,
    ttl: Duration,
    floor: Option<FencingToken>,
) -> Lease {
    match try_acquire(store, name, ttl, floor).await {
        Some(lease) => lease,
        None => panic!(
            "`{name}` must be granted, but it is held: {:?}",
            inspect(store, name).await
        ),
    }
}
