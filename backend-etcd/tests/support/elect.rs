//! Elections in the tests: candidates with long leases, and an observer that can tell a push
//! from a poll.

use std::future::Future;
use std::time::Duration;

use fencelock_core::backend::ForwardingStore;
use fencelock_core::{
    AcquireOptions, Election, Error, Leader, Leadership, LeaseInfo, LeaseStore, LockName, Locker,
    OwnerLabel, async_trait,
};
use fencelock_etcd::EtcdLeaseStore;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};

use super::PROMPTLY;

/// Leaders' leases: long, so that no observer re-reads for a lease running out.
pub const LEADER_TTL: Duration = Duration::from_secs(60);

/// The observers' poll interval: far longer than [`PROMPTLY`], so a change reported within
/// that was pushed.
pub const RARELY: Duration = Duration::from_secs(60);

pub fn label(text: &str) -> OwnerLabel {
    OwnerLabel::new(text).unwrap()
}

pub fn candidate(name: &str) -> AcquireOptions {
    AcquireOptions::new()
        .with_ttl(LEADER_TTL)
        .with_timeout(Duration::from_secs(60))
        .with_label(label(name))
}

pub fn election(store: &EtcdLeaseStore, name: &LockName) -> Election {
    Locker::new(store.clone())
        .election(name.clone())
        .unwrap()
        .with_observe_interval(RARELY)
}

/// The etcd lease id of a leader, in hex as Go prints it (the last segment of its key).
pub fn lease_hex(leader: &Leader) -> Option<String> {
    leader.holder.map(|h| format!("{:x}", h.as_u128()))
}

pub fn label_of(leader: Option<&Leader>) -> Option<&str> {
    leader
        .and_then(|l| l.label.as_ref())
        .map(OwnerLabel::as_str)
}

/// A store that tells when it was read successfully: the observer's store in these tests.
#[derive(Debug)]
pub struct CountingReads {
    inner: EtcdLeaseStore,
    reads: watch::Sender<u64>,
}

#[async_trait]
impl ForwardingStore for CountingReads {
    fn inner(&self) -> &dyn LeaseStore {
        &self.inner
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        let read = self.inner.inspect(name).await;
        if read.is_ok() {
            self.reads.send_modify(|n| *n += 1);
        }
        read
    }
}

/// An election observer in a task of its own, polling once a minute, whose store counts its
/// reads: once it has read the store after its last answer, only a push (or that minute)
/// makes it read again.
pub struct Observer {
    answers: mpsc::UnboundedReceiver<(Result<Option<Leader>, Error>, u64)>,
    reads: watch::Receiver<u64>,
    /// The successful reads done when the last answer was given.
    answered_at: u64,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Observes `name` over a connection of its own to `endpoints`: nothing in this process
    /// tells it anything.
    pub async fn start(endpoints: &[String], name: &LockName) -> Self {
        let (reads, read_count) = watch::channel(0);
        let store = CountingReads {
            inner: EtcdLeaseStore::connect(endpoints).await.unwrap(),
            reads,
        };
        let mut leader_watch = Locker::new(store)
            .election(name.clone())
            .unwrap()
            .with_observe_interval(RARELY)
            .observe()
            .unwrap();
        let (tx, answers) = mpsc::unbounded_channel();
        let counted = read_count.clone();
        let task = tokio::spawn(async move {
            loop {
                let answer = leader_watch.changed().await;
                if tx.send((answer, *counted.borrow())).is_err() {
                    return;
                }
            }
        });
        Self {
            answers,
            reads: read_count,
            answered_at: 0,
            task,
        }
    }

    /// The next answer, which must come within [`PROMPTLY`].
    pub async fn next(&mut self, what: &str) -> Option<Leader> {
        self.next_within(PROMPTLY, what)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// The next answer, an error included, which must come within `within`.
    pub async fn next_within(
        &mut self,
        within: Duration,
        what: &str,
    ) -> Result<Option<Leader>, Error> {
        let (answer, reads) = timeout(within, self.answers.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: not reported within {within:?} (poll: {RARELY:?})"))
            .expect("the observer task runs");
        self.answered_at = reads;
        answer
    }

    /// Waits until the observer read the store after its last answer and found nothing new:
    /// from then on it sleeps until pushed (or a minute passes).
    pub async fn napping(&mut self) {
        let after = self.answered_at;
        timeout(PROMPTLY, self.reads.wait_for(|n| *n > after))
            .await
            .expect("the observer reads again after answering")
            .unwrap();
        assert!(self.answers.is_empty(), "an answer nobody expected");
    }

    /// Like [`Observer::napping`] after the store failed: the errors the observer answers
    /// meanwhile are taken (and shown), until it read the store successfully and found nothing
    /// new. Any other answer fails the test.
    pub async fn napping_after_errors(&mut self, within: Duration) {
        let started = Instant::now();
        loop {
            let after = self.answered_at;
            let left = within.saturating_sub(started.elapsed());
            timeout(left, self.reads.wait_for(|n| *n > after))
                .await
                .expect("the observer reads the store successfully again")
                .unwrap();
            match self.answers.try_recv() {
                Err(mpsc::error::TryRecvError::Empty) => return,
                Ok((Err(e), reads)) => {
                    eprintln!("answered while the store failed: {e}");
                    self.answered_at = reads;
                }
                Ok((Ok(answer), _)) => panic!("an answer nobody expected: {answer:?}"),
                Err(mpsc::error::TryRecvError::Disconnected) => panic!("the observer task ended"),
            }
        }
    }

    /// The next answer after a change made by `change`, once the observer was napping: so it
    /// was pushed.
    pub async fn pushed<T>(
        &mut self,
        what: &str,
        change: impl Future<Output = T>,
    ) -> (T, Option<Leader>) {
        self.napping().await;
        let started = Instant::now();
        let made = change.await;
        let seen = self.next(what).await;
        eprintln!(
            "{what}: reported {:?} after the change began",
            started.elapsed()
        );
        (made, seen)
    }
}

impl Observer {
    /// Campaigns in `election` as `who` once the observer naps, and checks that the observer
    /// was pushed that leader: its term and label.
    pub async fn elects(&mut self, election: &Election, who: &str) -> Leadership {
        let what = format!("{who} elected");
        let (leadership, seen) = self.pushed(&what, election.campaign(candidate(who))).await;
        let leadership = leadership.unwrap_or_else(|e| panic!("{who}'s campaign: {e}"));
        let seen = seen.unwrap_or_else(|| panic!("{what}: the observer reported a vacancy"));
        assert_eq!(
            (seen.term, label_of(Some(&seen))),
            (leadership.term(), Some(who)),
            "{what}"
        );
        leadership
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
