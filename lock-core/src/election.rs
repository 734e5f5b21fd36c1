//! Leader election over any store: the leader is the holder of the election's lock, and its
//! term is that grant's fencing token.
//!
//! Nothing here needs a backend of its own: a campaign is an acquire, a leadership is a
//! [`LockGuard`], "who leads" is [`LeaseStore::inspect`] and observing is inspect woken by the
//! store's push channel ([`LeaseStore::watch_holder`]) with a poll as the bound.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use crate::wake::ReleaseWatch;
use crate::{
    AcquireOptions, Error, FencingToken, HolderId, IntoLockName, LeaseInfo, LeaseStore, LockGuard,
    LockName, Locker, LossReason, OwnerLabel,
};

/// A leader election: at most one leader at a time among the processes that campaign under
/// one name, each leadership carrying a **term** that rises strictly from one leader to the
/// next.
///
/// The term is the fencing token of the grant behind the leadership. Pass it with every write
/// the leader makes; storage that keeps the highest term it has seen (a [`crate::Fence`], or a
/// conditional write on a term column) rejects a deposed leader's late writes, which is what a
/// lease alone cannot do when a leader pauses past its TTL.
///
/// An election is the lock of the same name seen from another side: campaigning takes the
/// lock (with the options' owner label as the candidate's name), [`Election::leader`] reads it,
/// and a process holding the lock by [`Locker::acquire`] leads the election of that name. On
/// etcd the layout is that of etcd's own `concurrency.Election`, so `etcdctl elect` sees
/// fencelock's leaders and takes part in the same elections.
///
/// ```
/// # async fn demo() -> Result<(), fencelock_core::Error> {
/// use fencelock_core::{AcquireOptions, Locker, MemoryLeaseStore, OwnerLabel};
///
/// let locker = Locker::new(MemoryLeaseStore::new());
/// let election = locker.election("scheduler")?;
/// let leadership = election
///     .campaign(AcquireOptions::new().with_label(OwnerLabel::new("web-3")?))
///     .await?;
/// let term = leadership.term(); // pass it with every write made as leader
/// let leader = election.leader().await?.expect("someone leads");
/// assert_eq!((leader.term, leader.label.as_ref().map(|l| l.as_str())), (term, Some("web-3")));
/// leadership.resign().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Election {
    locker: Locker,
    name: LockName,
    observe_interval: Duration,
}

impl Locker {
    /// The election called `name`, run through this locker (its store, watchdogs and token
    /// regression checks).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name.
    pub fn election(&self, name: impl IntoLockName) -> Result<Election, Error> {
        Ok(Election {
            locker: self.clone(),
            name: name.into_lock_name()?,
            observe_interval: Election::DEFAULT_OBSERVE_INTERVAL,
        })
    }
}

impl Election {
    /// How often an observer reads the leader when no push arrives (1 s): the bound on how
    /// late it learns of a new leader on a store that pushes releases but not grants (Redis,
    /// Redlock, PostgreSQL), and a safety net behind the push everywhere.
    pub const DEFAULT_OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

    /// The election's name (the lock's name).
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// Sets how often observers made after this call read the leader when no push arrives
    /// (see [`Election::DEFAULT_OBSERVE_INTERVAL`]); checked by [`Election::observe`].
    #[must_use]
    pub fn with_observe_interval(mut self, every: Duration) -> Self {
        self.observe_interval = every;
        self
    }

    /// Campaigns until elected, waiting as `options` say (its label names the candidate; see
    /// [`AcquireOptions::with_label`]), and starts the leadership's watchdog.
    ///
    /// Cancel-safe while waiting: dropping the future leaves no candidacy or leadership behind.
    ///
    /// # Errors
    /// As [`Locker::acquire`]: [`Error::Timeout`] when the wait ran out.
    pub async fn campaign(&self, options: AcquireOptions) -> Result<Leadership, Error> {
        let guard = self.locker.acquire(self.name.clone(), options).await?;
        Ok(Leadership::elected(guard))
    }

    /// Becomes leader if nobody leads right now; never waits. `Ok(None)` when someone leads.
    ///
    /// # Errors
    /// As [`Locker::try_acquire`].
    pub async fn try_campaign(&self, options: AcquireOptions) -> Result<Option<Leadership>, Error> {
        let guard = self.locker.try_acquire(self.name.clone(), options).await?;
        Ok(guard.map(Leadership::elected))
    }

    /// The current leader, by the store's clock, or `None` when nobody leads. A snapshot, stale
    /// as soon as it is read: to act as leader, campaign; to write as leader, fence with the
    /// term.
    ///
    /// # Errors
    /// The store's errors ([`LeaseStore::inspect`]).
    ///
    /// # Behavior
    /// - `leader_reports_label_and_term`: answers the leader's term and label while it leads
    ///   (the holder of the lock of the same name leads too), nobody else is elected meanwhile,
    ///   and nobody leads once it resigned.
    pub async fn leader(&self) -> Result<Option<Leader>, Error> {
        Ok(self
            .locker
            .store()
            .inspect(&self.name)
            .await?
            .map(Leader::from))
    }

    /// Follows the election: a [`LeaderWatch`] whose [`LeaderWatch::changed`] answers the
    /// current leader first, then each change.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an observe interval under 1 ms or over a day.
    ///
    /// # Behavior
    /// - `observe_reports_leader_changes_in_order`: reports the vacancy, then every leader
    ///   that holds longer than the observe interval, with its label, in the order they led
    ///   (a waiting candidate elected at a hand-over included), and the vacancies between;
    ///   each term above the last.
    pub fn observe(&self) -> Result<LeaderWatch, Error> {
        if !(MIN_OBSERVE_INTERVAL..=MAX_OBSERVE_INTERVAL).contains(&self.observe_interval) {
            return Err(Error::invalid(
                "observe interval",
                format!(
                    "{:?} is outside {MIN_OBSERVE_INTERVAL:?}..={MAX_OBSERVE_INTERVAL:?}",
                    self.observe_interval
                ),
            ));
        }
        Ok(LeaderWatch {
            store: Arc::clone(self.locker.store()),
            name: self.name.clone(),
            interval: self.observe_interval,
            push: Push::NotYet,
            reported: None,
            highest: None,
        })
    }
}

const MIN_OBSERVE_INTERVAL: Duration = Duration::from_millis(1);
/// The shortest wait for a leader's lease to run out before reading again.
const EXPIRY_RECHECK: Duration = Duration::from_millis(10);
const MAX_OBSERVE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Who leads an election: the holder of its lock, as the store answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The leader's term: its grant's fencing token.
    pub term: FencingToken,
    /// The leader's owner label (its candidate name), if it set one.
    pub label: Option<OwnerLabel>,
    /// The leader's holder id, where the store keeps it.
    pub holder: Option<HolderId>,
    /// Time left on the leader's lease by the store's clock when it answered (a leader that is
    /// alive renews it).
    pub remaining: Duration,
}

impl From<LeaseInfo> for Leader {
    fn from(info: LeaseInfo) -> Self {
        Self {
            term: info.token,
            label: info.label,
            holder: info.holder,
            remaining: info.remaining,
        }
    }
}

/// Being the leader: a [`LockGuard`] on the election's lock, seen as a term.
///
/// Everything the guard does, it does: the watchdog renews, [`Leadership::lost`] resolves and
/// the cancellation token fires when leadership is lost, [`Leadership::run`] cancels the work
/// then. [`Leadership::resign`] steps down; dropping it steps down in the background.
#[derive(Debug)]
pub struct Leadership {
    guard: LockGuard,
}

impl Leadership {
    fn elected(guard: LockGuard) -> Self {
        tracing::info!(election = %guard.name(), term = %guard.token(), "elected");
        Self { guard }
    }

    /// The term: this leadership's fencing token, above every earlier leader's. Pass it with
    /// every write made as leader.
    pub fn term(&self) -> FencingToken {
        self.guard.token()
    }

    /// The label this leader campaigned with.
    pub fn label(&self) -> Option<OwnerLabel> {
        self.guard.lease().label().cloned()
    }

    /// The election's name.
    pub fn name(&self) -> LockName {
        self.guard.name()
    }

    /// Whether this process still leads as far as it can tell (see [`LockGuard::is_valid`]).
    pub fn is_valid(&self) -> bool {
        self.guard.is_valid()
    }

    /// The term if still leader, else the [`Error::LeaseLost`] to return.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] once leadership is lost.
    pub fn check(&self) -> Result<FencingToken, Error> {
        self.guard.check()
    }

    /// Resolves when leadership is lost, with the reason (see [`LockGuard::lost`]).
    pub async fn lost(&self) -> LossReason {
        self.guard.lost().await
    }

    /// A token cancelled when leadership ends: lost, resigned or dropped.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.guard.cancellation_token()
    }

    /// Runs `work` as leader and cancels it if leadership is lost first (see [`LockGuard::run`]).
    ///
    /// # Errors
    /// [`Error::LostDuringWork`] with the term when leadership was lost before `work` finished.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, Error> {
        self.guard.run(work).await
    }

    /// Calls `hook` if leadership is lost (not when resigned), from a background task.
    pub fn on_lost(&self, hook: impl FnOnce(LossReason) + Send + 'static) {
        self.guard.on_lost(hook);
    }

    /// The guard underneath (its deadline, lease and loss reason).
    pub fn guard(&self) -> &LockGuard {
        &self.guard
    }

    /// The guard underneath, to hold the lock without the election's view of it.
    pub fn into_guard(self) -> LockGuard {
        self.guard
    }

    /// Steps down: the next candidate is elected with a greater term. This term is never
    /// used again.
    ///
    /// # Errors
    /// As [`LockGuard::release`]: [`Error::LeaseLost`] when leadership had been lost before.
    ///
    /// # Behavior
    /// - `resigned_term_is_never_reused`: the next leadership, the same candidate's included,
    ///   has a greater term, and nobody leads right after a resignation.
    pub async fn resign(self) -> Result<(), Error> {
        tracing::info!(election = %self.guard.name(), term = %self.guard.token(), "resigning");
        self.guard.release().await
    }
}

/// Whether the observer has a push subscription.
#[derive(Debug)]
enum Push {
    /// Not asked yet, or asked again after the channel closed.
    NotYet,
    /// Woken by the store.
    Live(ReleaseWatch),
    /// The store pushes nothing (or subscribing failed): poll.
    Off,
}

/// Follows an election: the current leader first, then each change, in order.
///
/// Made by [`Election::observe`]. Each [`LeaderWatch::changed`] answers the next state that
/// differs from the last one answered: `Some(leader)` for a new leader, `None` for a vacancy.
/// Terms answered rise strictly; a leader who held for less than the observe interval may be
/// missed where the store does not push grants (Redis, Redlock, PostgreSQL), never reported
/// out of order. The observer reads the store when the store pushes a release (or a grant),
/// when the leader's lease would run out, and at least once per observe interval.
///
/// An error is answered once; the next call tries again. Cancel-safe: dropping a pending
/// `changed()` loses nothing.
#[derive(Debug)]
pub struct LeaderWatch {
    store: Arc<dyn LeaseStore>,
    name: LockName,
    interval: Duration,
    push: Push,
    /// What was answered last: `None` before the first answer.
    reported: Option<Option<Leader>>,
    /// The highest term answered.
    highest: Option<FencingToken>,
}

impl LeaderWatch {
    /// The election's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The last state answered, if any: `Some(None)` after a vacancy was answered.
    pub fn last(&self) -> Option<Option<&Leader>> {
        self.reported.as_ref().map(Option::as_ref)
    }

    /// Waits for the next change of leader and answers it (the current leader on the first
    /// call).
    ///
    /// # Errors
    /// The store's errors while reading the leader.
    pub async fn changed(&mut self) -> Result<Option<Leader>, Error> {
        loop {
            self.subscribe().await;
            let now = self.store.inspect(&self.name).await?.map(Leader::from);
            if let Some(news) = self.news(now.as_ref()) {
                return Ok(news);
            }
            // Expiry is not pushed: look again when the leader's lease would run out (not
            // sooner than EXPIRY_RECHECK, so a store that rounds the time left down to zero
            // does not make the observer spin).
            let nap = now.as_ref().map_or(self.interval, |l| {
                self.interval
                    .min((l.remaining + Duration::from_millis(1)).max(EXPIRY_RECHECK))
            });
            let wake_at = Instant::now() + nap;
            if let Push::Live(watch) = &mut self.push {
                tokio::select! {
                    alive = watch.notified() => if !alive {
                        // The push channel broke: subscribe again after this nap.
                        self.push = Push::NotYet;
                        tokio::time::sleep_until(wake_at).await;
                    },
                    () = tokio::time::sleep_until(wake_at) => {}
                }
            } else {
                sleep(nap).await;
            }
        }
    }

    /// Turns the watch into a stream of changes (see [`LeaderWatch::changed`]).
    pub fn into_stream(self) -> impl Stream<Item = Result<Option<Leader>, Error>> + Send {
        futures::stream::unfold(self, |mut watch| async move {
            let next = watch.changed().await;
            Some((next, watch))
        })
    }

    async fn subscribe(&mut self) {
        if !matches!(self.push, Push::NotYet) {
            return;
        }
        self.push = match self.store.watch_holder(&self.name).await {
            Ok(Some(watch)) => Push::Live(watch),
            Ok(None) => Push::Off,
            Err(error) => {
                tracing::warn!(election = %self.name, %error, "push unavailable; observing by polling");
                Push::Off
            }
        };
    }

    /// What to answer for the leader just read, if it is news: a leader with a higher term
    /// than any answered, or a vacancy after a leader. A lower term (a stale read) is no news.
    fn news(&mut self, now: Option<&Leader>) -> Option<Option<Leader>> {
        let news = match now {
            Some(leader) if self.highest.is_none_or(|h| leader.term > h) => {
                self.highest = Some(leader.term);
                Some(leader.clone())
            }
            Some(_) => return None,
            None if matches!(self.reported, Some(None)) => return None,
            None => None,
        };
        self.reported = Some(news.clone());
        Some(news)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, MemoryLeaseStore};

    fn election(every: Duration) -> Election {
        Locker::new(MemoryLeaseStore::new())
            .election("e")
            .expect("a valid name")
            .with_observe_interval(every)
    }

    fn options(label: &str, ttl: Duration) -> AcquireOptions {
        AcquireOptions::new()
            .with_ttl(ttl)
            .with_label(OwnerLabel::new(label).expect("a valid label"))
    }

    #[test]
    fn bad_observe_intervals_are_invalid_input() {
        for every in [Duration::ZERO, Duration::from_secs(2 * 24 * 60 * 60)] {
            let error = election(every).observe().expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{every:?}: {error}");
        }
    }

    #[tokio::test]
    async fn a_grant_is_pushed_and_no_poll_is_needed() {
        let election = election(MAX_OBSERVE_INTERVAL);
        let mut watch = election.observe().expect("valid");
        assert_eq!(watch.changed().await.expect("read"), None);
        let next = tokio::spawn(async move { watch.changed().await });
        let leadership = election
            .campaign(options("a", Duration::from_secs(60)))
            .await
            .expect("elected");
        let seen = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("pushed, not polled a day later")
            .expect("the task ran")
            .expect("read")
            .expect("a leader");
        assert_eq!(seen.term, leadership.term());
        assert_eq!(seen.label.as_ref().map(OwnerLabel::as_str), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expiry_is_reported_without_a_push() {
        let election = election(MAX_OBSERVE_INTERVAL);
        let leadership = election
            .campaign(options("a", Duration::from_secs(1)).without_renewal())
            .await
            .expect("elected");
        let mut watch = election.observe().expect("valid");
        let first = watch.changed().await.expect("read").expect("a leader");
        assert_eq!(first.term, leadership.term());
        let started = Instant::now();
        assert_eq!(watch.changed().await.expect("read"), None, "the vacancy");
        assert!(
            started.elapsed() <= Duration::from_secs(2),
            "woken when the lease ran out, not by the day-long poll: {:?}",
            started.elapsed()
        );
        assert!(matches!(watch.last(), Some(None)));
    }

    #[test]
    fn lower_terms_are_no_news_and_vacancies_are_told_once() {
        let mut watch = election(Duration::from_secs(1)).observe().expect("valid");
        let leader = |term| Leader {
            term: FencingToken::new(term),
            label: None,
            holder: None,
            remaining: Duration::from_secs(1),
        };
        assert_eq!(watch.news(Some(&leader(5))), Some(Some(leader(5))));
        assert_eq!(watch.news(Some(&leader(5))), None, "the same leader");
        assert_eq!(watch.news(Some(&leader(4))), None, "a stale read");
        assert_eq!(watch.news(None), Some(None));
        assert_eq!(watch.news(None), None, "still vacant");
        assert_eq!(watch.news(Some(&leader(5))), None, "an old leader again");
        assert_eq!(watch.news(Some(&leader(7))), Some(Some(leader(7))));
    }
}
