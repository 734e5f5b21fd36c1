//! Renewal batching: every watchdog in one runtime's timer queue of a [`crate::Locker`] hands
//! its renewal to one batcher task, which sends whatever is due together through
//! [`LeaseStore::renew_many`] (one pipeline, one statement or one stream, where the backend
//! allows) and answers each watchdog alone.
//!
//! Nothing here can end a renewal silently: a batch that panics, a batcher that is gone and a
//! backend that answers the wrong number of results all come back to the watchdog as a
//! [`Renewed::Failed`], which it reports as loss.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use crate::lock;
use crate::{Error, Lease, LeaseStore};

/// The longest a renewal waits for others to join its batch.
pub(crate) const MAX_LINGER: Duration = Duration::from_millis(2);
/// A renewal waits at most this fraction of the time its lease has left (1/50).
const LINGER_SHARE: u32 = 50;
/// The most leases in one `renew_many` call.
pub(crate) const MAX_BATCH: usize = 1024;
/// The most batches in flight at once; further renewals queue and join the next batch.
const MAX_IN_FLIGHT: usize = 4;

/// How a renewal ended.
#[derive(Debug)]
pub(crate) enum Renewed {
    /// The store's answer for this lease.
    Answer(Result<Lease, Error>),
    /// No answer: the batch panicked or the batcher is gone. The watchdog reports loss.
    Failed(String),
}

/// Renews leases for the watchdogs of one timer queue (one runtime's guards of one `Locker`).
#[derive(Debug)]
pub(crate) struct Renewer {
    store: Arc<dyn LeaseStore>,
    batching: bool,
    /// The batcher's queue; replaced when its task is gone (e.g. its runtime shut down).
    queue: Mutex<Option<mpsc::UnboundedSender<Job>>>,
}

#[derive(Debug)]
struct Job {
    lease: Lease,
    ttl: Duration,
    /// The latest moment this renewal should leave the process.
    send_by: Instant,
    reply: oneshot::Sender<Renewed>,
}

impl Renewer {
    pub(crate) fn new(store: Arc<dyn LeaseStore>, batching: bool) -> Self {
        Self {
            store,
            batching,
            queue: Mutex::new(None),
        }
    }

    /// Renews `lease` to `ttl`: alone, or in the next batch.
    pub(crate) async fn renew(&self, lease: &Lease, ttl: Duration) -> Renewed {
        if !self.batching {
            return renew_alone(self.store.as_ref(), lease, ttl).await;
        }
        let now = Instant::now();
        let left = lease.deadline().saturating_duration_since(now);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            lease: lease.clone(),
            ttl,
            send_by: now + MAX_LINGER.min(left / LINGER_SHARE),
            reply,
        };
        if self.sender().send(job).is_err() {
            // The batcher just ended (its runtime is shutting down): renew alone.
            return renew_alone(self.store.as_ref(), lease, ttl).await;
        }
        answer.await.unwrap_or_else(|_| {
            Renewed::Failed("the renewal batch ended without answering".to_owned())
        })
    }

    /// The batcher's queue, starting the batcher on the current runtime if it is not running.
    fn sender(&self) -> mpsc::UnboundedSender<Job> {
        let mut queue = lock(&self.queue);
        if let Some(tx) = queue.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(batcher(Arc::clone(&self.store), rx));
        *queue = Some(tx.clone());
        tx
    }
}

/// Collects renewals into batches and runs up to [`MAX_IN_FLIGHT`] of them at once. Ends when
/// every sender (the `Locker` and its watchdogs) is gone.
async fn batcher(store: Arc<dyn LeaseStore>, mut queue: mpsc::UnboundedReceiver<Job>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let mut close_at = first.send_by;
        let mut jobs = vec![first];
        // Linger briefly so that renewals due together go together; never past any job's
        // `send_by`, never beyond MAX_BATCH.
        while jobs.len() < MAX_BATCH {
            let next = tokio::select! {
                biased;
                job = queue.recv() => job,
                () = sleep_until(close_at) => None,
            };
            let Some(job) = next else { break };
            close_at = close_at.min(job.send_by);
            jobs.push(job);
        }
        // While every slot is busy, further renewals pile up in the queue for the next batch.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            run_batch(store.as_ref(), jobs).await;
            drop(slot);
        });
    }
}

/// Renews `jobs` with one `renew_many` per TTL and answers every job.
async fn run_batch(store: &dyn LeaseStore, jobs: Vec<Job>) {
    let mut by_ttl: HashMap<Duration, Vec<Job>> = HashMap::new();
    for job in jobs {
        by_ttl.entry(job.ttl).or_default().push(job);
    }
    let groups = by_ttl.into_iter().map(|(ttl, jobs)| async move {
        let leases: Vec<Lease> = jobs.iter().map(|job| job.lease.clone()).collect();
        crate::metrics::renew_batch(store.backend(), leases.len());
        let outcome = AssertUnwindSafe(store.renew_many(&leases, ttl))
            .catch_unwind()
            .await;
        let answers = match outcome {
            Ok(answers) if answers.len() == jobs.len() => answers.into_iter().map(Renewed::Answer),
            Ok(answers) => {
                let message = format!(
                    "renew_many answered {} results for {} leases",
                    answers.len(),
                    jobs.len()
                );
                return answer_all(jobs, &message);
            }
            Err(panic) => return answer_all(jobs, &panic_message(panic.as_ref())),
        };
        for (job, answer) in jobs.into_iter().zip(answers) {
            // A watchdog that stopped meanwhile no longer listens; nothing to tell it.
            let _ = job.reply.send(answer);
        }
    });
    futures::future::join_all(groups).await;
}

/// One `renew`, a panic in it caught.
async fn renew_alone(store: &dyn LeaseStore, lease: &Lease, ttl: Duration) -> Renewed {
    match AssertUnwindSafe(store.renew(lease, ttl))
        .catch_unwind()
        .await
    {
        Ok(answer) => Renewed::Answer(answer),
        Err(panic) => Renewed::Failed(panic_message(panic.as_ref())),
    }
}

fn answer_all(jobs: Vec<Job>, message: &str) {
    for job in jobs {
        let _ = job.reply.send(Renewed::Failed(message.to_owned()));
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("the renewal task panicked: {text}")
}
