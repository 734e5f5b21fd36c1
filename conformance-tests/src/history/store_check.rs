//! [`check_store`]: the fault-injection check for a store the caller supplies, in this process.
//!
//! The torture suite (`fencelock-torture`) runs worker *processes* against the backends it
//! knows how to start. This runs the same loop as tasks against any [`LeaseStore`], with the
//! fault that needs no process of its own: a holder whose store calls stall at the worst
//! moment (after it checked its guard, before it writes) for three TTLs, so its renewals
//! cannot get through while it still means to write. The history is judged by the same
//! checkers, I1–I6.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock_core::backend::lock_unpoisoned as lock;
use fencelock_core::{
    AcquireOptions, Error, FenceGate, FencingToken, LeaseStore, LockGuard, LockName, Locker,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::options::CheckOptions;
use super::stall::Stallable;
use super::{
    Bounds, COORDINATOR, Event, Invariant, Op, OracleLog, Record, Report, Violation, check, now_ns,
};

/// The fenced resource's name in the oracle.
const RESOURCE: &str = "counter";
/// The fault's name in the history.
const STALL: &str = "holder's store calls stalled";
/// The caller's fault's name in the history.
const SERVER_FAULT: &str = "server fault (caller's)";
/// Checkpoints (holders about to write) to see before the first fault and after each one.
const CHECKPOINTS_BETWEEN_FAULTS: u64 = 3;
/// The least time to wait for holders to make progress before calling the run stuck.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs contending workers against `store`, stalls holders (and injects the caller's server
/// fault, if any), and checks the history for I1–I6 (see [`crate::history`]).
///
/// Each worker loops: acquire (waiting, with the [`Locker`]'s watchdog renewing) → fenced
/// read of a shared counter → random work (up to TTL/10) → check the guard → checkpoint →
/// fenced write of value + 1 (once or twice per grant) → release. The resource is an
/// in-memory [`FenceGate`]. At a checkpoint, a holder may be hit by a **stall**: every call
/// of its store (its watchdog's renewals too) waits for three TTLs, while the harness asks
/// its guard every TTL/20 whether the lease holds (a `Probe`: two guards valid at once break
/// I6). Then the holder writes as it had decided to, and a newer holder's write must make
/// the fence reject it.
///
/// A clean report (`report.is_clean()`) with `stale_attempted > 0` (the late writes were
/// made, and rejected) is a pass. A run that makes no progress (no holder reaches its write
/// within 30 s, or 40 TTLs) or a worker that hangs past the end is reported as I5.
///
/// Needs a tokio runtime (any flavour); the workers are tasks on it.
///
/// ```
/// use std::sync::Arc;
/// use fencelock_conformance::history::{CheckOptions, check_store};
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
/// let store = Arc::new(fencelock_core::MemoryLeaseStore::new());
/// let report = check_store(store, CheckOptions::new().with_stalls(1)).await;
/// assert!(report.is_clean(), "{:#?}", report.violations);
/// assert!(report.stale_attempted > 0, "the stalled holder's late write was made");
/// # }
/// ```
pub async fn check_store(store: Arc<dyn LeaseStore>, options: CheckOptions) -> Report {
    let run = Arc::new(Run::new(options.ttl));
    let name = options.name.clone().unwrap_or_else(|| {
        // Random hex after a fixed prefix: always a valid name.
        LockName::new(format!("fl-check/{:016x}", rand::random::<u64>()))
            .expect("a generated lock name is valid")
    });
    let workers: Vec<_> = (1..=options.workers)
        .map(|w| {
            let door = Arc::new(Stallable::new(Arc::clone(&store)));
            let locker = Locker::from_arc(Arc::clone(&door) as Arc<dyn LeaseStore>);
            let worker = Worker {
                run: Arc::clone(&run),
                w,
                locker,
                door,
                name: name.clone(),
                ttl: options.ttl,
                rng: StdRng::seed_from_u64(options.seed.wrapping_add(u64::from(w))),
            };
            (w, tokio::spawn(worker.cycles()))
        })
        .collect();
    drive(&run, &options).await;
    run.stop.store(true, Ordering::SeqCst);
    // A worker waits at most 20 TTLs for the lock before it looks at the stop switch again.
    let finish_within = options.ttl * 20 + PATIENCE;
    for (w, worker) in workers {
        let abort = worker.abort_handle();
        match tokio::time::timeout(finish_within, worker).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => run.problem(format!("worker {w} failed: {e}")),
            Err(_) => {
                abort.abort();
                run.problem(format!(
                    "worker {w} did not finish its cycle within {finish_within:?} of the end: a \
                     store call hangs"
                ));
            }
        }
    }
    let mut history = std::mem::take(&mut *lock(&run.history));
    history.sort_by_key(|r| r.t);
    let oracle = OracleLog::from_history(&history, lock(&run.oracle).value);
    let bounds = Bounds {
        ttl: options.ttl,
        renew_every: options.ttl / 3,
        slack: options.slack,
        exclusive: options.keeps_state,
        permit_limit: None,
    };
    let mut report = check(&history, &oracle, bounds);
    report
        .violations
        .extend(std::mem::take(&mut *lock(&run.problems)));
    report
}

/// Injects the faults: after every few checkpoints a stall, and the caller's fault after it.
async fn drive(run: &Run, options: &CheckOptions) {
    let patience = PATIENCE.max(options.ttl * 40);
    let stall = options.ttl * 3;
    for round in 1..=options.stalls {
        if !run
            .progress(patience, &format!("before stall {round}"))
            .await
        {
            return;
        }
        if !run.stall_next_holder(stall, patience + stall).await {
            run.problem(format!(
                "stall {round} was armed but no holder reached its write within {:?}",
                patience + stall
            ));
            return;
        }
        if let Some(fault) = &options.server_fault {
            if !run
                .progress(patience, &format!("before server fault {round}"))
                .await
            {
                return;
            }
            run.record(
                COORDINATOR,
                Event::FaultInjected {
                    fault: SERVER_FAULT.to_owned(),
                    holder: false,
                },
            );
            fault().await;
            run.record(
                COORDINATOR,
                Event::FaultHealed {
                    fault: SERVER_FAULT.to_owned(),
                },
            );
        }
    }
    // Holders write again after the last fault, so I5 sees the next grant.
    run.progress(patience, "after the last fault").await;
}

/// What the workers and the fault driver share.
struct Run {
    history: Mutex<Vec<Record>>,
    oracle: Mutex<Oracle>,
    problems: Mutex<Vec<Violation>>,
    last_failure: Mutex<Option<String>>,
    stop: AtomicBool,
    checkpoints: AtomicU64,
    progress: Notify,
    armed: Mutex<Option<Duration>>,
    stalls_done: AtomicU64,
    stall_done: Notify,
    probe_every: Duration,
}

#[derive(Default)]
struct Oracle {
    gate: FenceGate,
    value: u64,
}

impl Run {
    fn new(ttl: Duration) -> Self {
        Self {
            history: Mutex::default(),
            oracle: Mutex::default(),
            problems: Mutex::default(),
            last_failure: Mutex::default(),
            stop: AtomicBool::new(false),
            checkpoints: AtomicU64::new(0),
            progress: Notify::new(),
            armed: Mutex::default(),
            stalls_done: AtomicU64::new(0),
            stall_done: Notify::new(),
            probe_every: (ttl / 20).max(Duration::from_millis(1)),
        }
    }

    fn record(&self, w: u32, event: Event) {
        lock(&self.history).push(Record::now(w, event));
    }

    /// A liveness problem of the run, reported as I5 (the lock was not granted again).
    fn problem(&self, detail: String) {
        let last = lock(&self.last_failure).clone();
        let detail = match last {
            Some(failure) => format!("{detail} (last acquire failure: {failure})"),
            None => detail,
        };
        lock(&self.problems).push(Violation {
            invariant: Invariant::I5,
            detail,
        });
    }

    /// Waits for [`CHECKPOINTS_BETWEEN_FAULTS`] more checkpoints; reports a problem if they
    /// do not come within `patience`.
    async fn progress(&self, patience: Duration, when: &str) -> bool {
        let want = self.checkpoints.load(Ordering::SeqCst) + CHECKPOINTS_BETWEEN_FAULTS;
        let until = Instant::now() + patience;
        loop {
            let notified = self.progress.notified();
            if self.checkpoints.load(Ordering::SeqCst) >= want {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err()
                && self.checkpoints.load(Ordering::SeqCst) < want
            {
                self.problem(format!(
                    "no holder reached its write for {patience:?} {when}"
                ));
                return false;
            }
        }
    }

    /// Arms a stall of `stall` for the next holder at its checkpoint and waits until it
    /// healed; `false` on timeout.
    async fn stall_next_holder(&self, stall: Duration, timeout: Duration) -> bool {
        let before = self.stalls_done.load(Ordering::SeqCst);
        *lock(&self.armed) = Some(stall);
        let until = Instant::now() + timeout;
        loop {
            let notified = self.stall_done.notified();
            if self.stalls_done.load(Ordering::SeqCst) > before {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                lock(&self.armed).take();
                return self.stalls_done.load(Ordering::SeqCst) > before;
            }
        }
    }

    /// The fenced resource serves one operation and records it in serving order; `Err` holds
    /// the mark of a rejection.
    fn serve(&self, op: Op, w: u32, token: u64, write: Option<u64>) -> Result<u64, u64> {
        let mut oracle = lock(&self.oracle);
        let high_water = match oracle.gate.admit(RESOURCE, FencingToken::new(token)) {
            Ok(()) => None,
            Err(Error::StaleToken { high_water, .. }) => Some(high_water.get()),
            Err(_) => Some(u64::MAX),
        };
        if let (None, Some(value)) = (high_water, write) {
            oracle.value = value;
        }
        // Stamped under the oracle's lock, so the history keeps the serving order.
        self.record(
            COORDINATOR,
            Event::Oracle {
                op,
                worker: w,
                token,
                accepted: high_water.is_none(),
                high_water,
                value: oracle.value,
                slot: None,
            },
        );
        high_water.map_or(Ok(oracle.value), Err)
    }

    /// The holder asks its guard; stamped *before* the call (a validity window is never
    /// drawn too long).
    fn check(&self, w: u32, guard: &LockGuard) -> bool {
        let t = now_ns();
        let valid = guard.is_valid();
        let token = guard.token().get();
        lock(&self.history).push(Record {
            w,
            t,
            event: Event::Check { token, valid },
        });
        valid
    }

    /// A holder about to write: counts it, and stalls its store calls if a stall is armed,
    /// probing its guard meanwhile.
    async fn checkpoint(&self, w: u32, guard: &LockGuard, door: &Stallable) {
        self.checkpoints.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_waiters();
        let Some(stall) = lock(&self.armed).take() else {
            return;
        };
        door.stall();
        self.record(
            COORDINATOR,
            Event::FaultInjected {
                fault: STALL.to_owned(),
                holder: true,
            },
        );
        let until = Instant::now() + stall;
        let token = guard.token().get();
        loop {
            let t = now_ns();
            let valid = guard.is_valid();
            lock(&self.history).push(Record {
                w,
                t,
                event: Event::Probe { token, valid },
            });
            let now = Instant::now();
            if now >= until {
                break;
            }
            tokio::time::sleep(self.probe_every.min(until - now)).await;
        }
        door.unstall();
        self.record(
            COORDINATOR,
            Event::FaultHealed {
                fault: STALL.to_owned(),
            },
        );
        self.stalls_done.fetch_add(1, Ordering::SeqCst);
        self.stall_done.notify_waiters();
    }
}

/// One contending worker.
struct Worker {
    run: Arc<Run>,
    w: u32,
    locker: Locker,
    door: Arc<Stallable>,
    name: LockName,
    ttl: Duration,
    rng: StdRng,
}

impl Worker {
    async fn cycles(mut self) {
        let options = AcquireOptions::new()
            .with_ttl(self.ttl)
            .with_renew_interval(self.ttl / 3)
            .with_poll_interval(self.ttl / 10)
            .with_timeout(self.ttl * 20);
        let work_max = self.ttl / 10;
        let (run, w) = (Arc::clone(&self.run), self.w);
        while !run.stop.load(Ordering::SeqCst) {
            let sent = now_ns();
            let guard = match self.locker.acquire(&self.name, options.clone()).await {
                Ok(guard) => guard,
                Err(e) => {
                    *lock(&run.last_failure) = Some(format!("{:?}: {e}", e.kind()));
                    run.record(
                        w,
                        Event::AcquireFailed {
                            kind: format!("{:?}", e.kind()),
                            error: e.to_string(),
                        },
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let token = guard.token().get();
            run.record(w, Event::Acquired { token, sent });
            let writes = self.rng.random_range(1..=2);
            for _ in 0..writes {
                let value = match run.serve(Op::Read, w, token, None) {
                    Ok(value) => {
                        run.record(w, Event::Read { token, value });
                        value
                    }
                    Err(high_water) => {
                        run.record(
                            w,
                            Event::Rejected {
                                op: Op::Read,
                                token,
                                high_water,
                            },
                        );
                        break;
                    }
                };
                let work = self.rng.random_range(Duration::ZERO..=work_max);
                tokio::time::sleep(work).await;
                if !run.check(w, &guard) {
                    break;
                }
                run.checkpoint(w, &guard, &self.door).await;
                // Written as decided before the checkpoint, like a holder that was paused.
                match run.serve(Op::Write, w, token, Some(value + 1)) {
                    Ok(value) => run.record(w, Event::WriteAccepted { token, value }),
                    Err(high_water) => {
                        run.record(
                            w,
                            Event::Rejected {
                                op: Op::Write,
                                token,
                                high_water,
                            },
                        );
                        // Does the guard know it lost? (I6 catches one that says yes.)
                        run.check(w, &guard);
                        break;
                    }
                }
            }
            let ok = guard.release().await.is_ok();
            run.record(w, Event::Released { token, ok });
        }
    }
}
