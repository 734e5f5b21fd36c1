//! The coordinator's side of the control socket: the in-memory fenced counter (a
//! `FenceGate`; in semaphore runs one counter per place, each fenced on its own), the go/stop
//! switch, and holder faults injected at a worker's checkpoint.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fencelock::{Error, FenceGate, FencingToken};
use fencelock_conformance::harness::TcpProxy;
use fencelock_conformance::history::{COORDINATOR, Event, Op, Record};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::protocol::{Channel, Reply, Request};

/// The resource name inside the gate.
const RESOURCE: &str = "counter";

/// How the in-memory oracle checks tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceMode {
    /// `FenceGate`: admit iff token ≥ mark.
    Correct,
    /// Planted bug: admit iff token > mark (the rule of `mutations::planted_fence::admits`).
    #[cfg(feature = "mutations")]
    Strict,
    /// Planted bug: admit everything (likewise).
    #[cfg(feature = "mutations")]
    Skip,
}

/// A fault that hits whichever worker next reaches its checkpoint (it holds the lock and has
/// just checked its guard).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolderFault {
    /// SIGSTOP for this long, then SIGCONT.
    Pause(Duration),
    /// Block the worker's only runtime thread for this long.
    Starve(Duration),
    /// SIGKILL.
    Kill,
    /// Stall the holder's proxy (both directions) for this long, then forward again.
    Stall(Duration),
    /// Delay every other worker's proxy by `each_way` in each direction for `span`.
    DelayWaiters {
        /// Added latency per direction.
        each_way: Duration,
        /// How long the delay stays on.
        span: Duration,
    },
    /// Cut (TCP reset) the holder's proxied connections.
    Cut,
    /// SIGSTOP until [`Coordinator::release_held`] (at most a minute), then SIGCONT.
    /// Records nothing: the caller records the server fault the hold is part of.
    Hold,
}

/// The longest a [`HolderFault::Hold`] lasts if nobody releases it.
const HOLD_AT_MOST: Duration = Duration::from_secs(60);

impl HolderFault {
    fn name(self) -> &'static str {
        match self {
            Self::Pause(_) => "holder paused (SIGSTOP)",
            Self::Starve(_) => "holder runtime starved",
            Self::Kill => "holder killed (SIGKILL)",
            Self::Stall(_) => "holder's connection stalled",
            Self::DelayWaiters { .. } => "waiters' connections delayed",
            Self::Cut => "holder's connection cut",
            Self::Hold => "holder held (SIGSTOP)",
        }
    }
}

/// One fenced value: the counter, or a place of a semaphore run.
#[derive(Debug, Default)]
struct Cell {
    /// The mark under a planted fence bug (the gate keeps the real one).
    #[cfg_attr(not(feature = "mutations"), allow(dead_code))]
    mark: Option<u64>,
    value: u64,
    /// The highest token admitted here (a place's holder, for claims).
    occupant: Option<u64>,
}

/// One read or write as a worker asked for it.
struct Access {
    op: Op,
    worker: u32,
    token: u64,
    /// Whether the fence checks the token.
    fenced: bool,
    /// The value to write; `None` for a read.
    write: Option<u64>,
    /// The place (semaphore runs); `None`: the counter.
    slot: Option<u32>,
}

struct Counter {
    gate: FenceGate,
    main: Cell,
    /// The places of a semaphore run (one per permit), named `place-N` in the gate.
    places: Vec<Cell>,
}

struct Shared {
    fence: FenceMode,
    counter: Mutex<Counter>,
    history: Mutex<File>,
    stop: AtomicBool,
    checkpoints: AtomicU64,
    progress: Notify,
    armed: Mutex<Option<HolderFault>>,
    faults_done: AtomicU64,
    fault_done: Notify,
    /// Holders stopped by [`HolderFault::Hold`] so far, and its wake-up.
    holds: AtomicU64,
    held: Notify,
    /// Tells a held holder to go on.
    release: Notify,
    pids: Mutex<HashMap<u32, u32>>,
    proxies: Mutex<HashMap<u32, Arc<TcpProxy>>>,
}

/// The coordinator: serves workers on a Unix socket until dropped.
pub struct Coordinator {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Coordinator {
    /// Listens on `socket`, writing its records (faults, oracle operations) to `history`;
    /// with `places` counters of their own for semaphore runs (0 for the others).
    ///
    /// # Errors
    /// Binding the socket or creating the history file.
    pub fn start(
        socket: &Path,
        history: &Path,
        fence: FenceMode,
        places: u32,
    ) -> std::io::Result<Self> {
        let listener = UnixListener::bind(socket)?;
        let shared = Arc::new(Shared {
            fence,
            counter: Mutex::new(Counter {
                gate: FenceGate::new(),
                main: Cell::default(),
                places: (0..places).map(|_| Cell::default()).collect(),
            }),
            history: Mutex::new(File::create(history)?),
            stop: AtomicBool::new(false),
            checkpoints: AtomicU64::new(0),
            progress: Notify::new(),
            armed: Mutex::new(None),
            faults_done: AtomicU64::new(0),
            fault_done: Notify::new(),
            holds: AtomicU64::new(0),
            held: Notify::new(),
            release: Notify::new(),
            pids: Mutex::default(),
            proxies: Mutex::default(),
        });
        let serving = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Arc::clone(&serving).serve(stream));
            }
        });
        Ok(Self { shared, task })
    }

    /// Records an event of the coordinator (a fault injected or healed).
    pub fn record(&self, event: Event) {
        self.shared.record(event);
    }

    /// Tells the coordinator which process runs `worker`.
    pub fn register(&self, worker: u32, pid: u32) {
        lock(&self.shared.pids).insert(worker, pid);
    }

    /// Tells the coordinator which proxy carries `worker`'s store connections.
    pub fn register_proxy(&self, worker: u32, proxy: Arc<TcpProxy>) {
        lock(&self.shared.proxies).insert(worker, proxy);
    }

    /// Answers `Stop` to every further cycle request.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }

    /// The counter's value (with the places': their sum).
    pub fn value(&self) -> u64 {
        let counter = lock(&self.shared.counter);
        counter.main.value + counter.places.iter().map(|p| p.value).sum::<u64>()
    }

    /// Checkpoints reached so far (each is a holder about to write).
    pub fn checkpoints(&self) -> u64 {
        self.shared.checkpoints.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` checkpoints were reached; `false` on timeout.
    pub async fn wait_checkpoints(&self, n: u64, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.progress.notified();
            if self.checkpoints() >= n {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.checkpoints() >= n;
            }
        }
    }

    /// Arms `fault` for the next holder to reach its checkpoint, and waits until it was
    /// injected and healed; `false` on timeout.
    pub async fn hit_holder(&self, fault: HolderFault, timeout: Duration) -> bool {
        let shared = &self.shared;
        self.arm_and_wait(fault, &shared.faults_done, &shared.fault_done, timeout)
            .await
    }

    /// Arms `fault`, then waits until `count` grows (woken by `grew`); disarms on timeout.
    async fn arm_and_wait(
        &self,
        fault: HolderFault,
        count: &AtomicU64,
        grew: &Notify,
        timeout: Duration,
    ) -> bool {
        let before = count.load(Ordering::SeqCst);
        *lock(&self.shared.armed) = Some(fault);
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let notified = grew.notified();
            if count.load(Ordering::SeqCst) > before {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                lock(&self.shared.armed).take();
                return count.load(Ordering::SeqCst) > before;
            }
        }
    }

    /// Arms [`HolderFault::Hold`] for the next holder to reach its checkpoint, and waits until
    /// it is stopped; `false` on timeout. It stays stopped until [`Self::release_held`].
    pub async fn hold_holder(&self, timeout: Duration) -> bool {
        let shared = &self.shared;
        self.arm_and_wait(HolderFault::Hold, &shared.holds, &shared.held, timeout)
            .await
    }

    /// Lets the holder stopped by [`Self::hold_holder`] go on to its write.
    pub fn release_held(&self) {
        // A stored permit: it also reaches a hold that has not started waiting yet.
        self.shared.release.notify_one();
    }
}

impl Shared {
    fn record(&self, event: Event) {
        let mut file = lock(&self.history);
        if let Err(e) = Record::now(COORDINATOR, event).append_to(&mut *file) {
            eprintln!("coordinator: cannot write its history: {e}");
        }
    }

    fn fault_finished(&self) {
        self.faults_done.fetch_add(1, Ordering::SeqCst);
        self.fault_done.notify_waiters();
    }

    async fn serve(self: Arc<Self>, stream: UnixStream) {
        let mut channel = Channel::new(stream);
        while let Ok(Some(request)) = channel.recv::<Request>().await {
            let reply = match request {
                Request::Cycle { .. } if self.stop.load(Ordering::SeqCst) => Reply::Stop,
                Request::Cycle { .. } => Reply::Go,
                Request::Read {
                    worker,
                    token,
                    fenced,
                    slot,
                } => self.serve_op(Access {
                    op: Op::Read,
                    worker,
                    token,
                    fenced,
                    write: None,
                    slot,
                }),
                Request::Write {
                    worker,
                    token,
                    value,
                    fenced,
                    slot,
                } => self.serve_op(Access {
                    op: Op::Write,
                    worker,
                    token,
                    fenced,
                    write: Some(value),
                    slot,
                }),
                Request::Claim {
                    worker,
                    token,
                    live,
                    fenced,
                } => self.claim(worker, token, &live, fenced),
                Request::Checkpoint { worker, .. } => {
                    self.checkpoints.fetch_add(1, Ordering::SeqCst);
                    self.progress.notify_waiters();
                    let armed = lock(&self.armed).take();
                    match armed {
                        None => Reply::Go,
                        Some(fault) => match Arc::clone(&self).inject(fault, worker).await {
                            Some(reply) => reply,
                            None => return,
                        },
                    }
                }
            };
            if channel.send(&reply).await.is_err() {
                return;
            }
        }
    }

    /// Hits `worker`; `None` when it was killed (no reply).
    async fn inject(self: Arc<Self>, fault: HolderFault, worker: u32) -> Option<Reply> {
        let pid = lock(&self.pids).get(&worker).copied();
        let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw) else {
            eprintln!("coordinator: no pid for worker {worker}; fault not injected");
            return Some(Reply::Go);
        };
        let injected = Event::FaultInjected {
            fault: fault.name().to_owned(),
            holder: true,
        };
        let healed = Event::FaultHealed {
            fault: fault.name().to_owned(),
        };
        match fault {
            HolderFault::Pause(pause) => {
                let _ = kill(pid, Signal::SIGSTOP);
                self.record(injected);
                tokio::time::sleep(pause).await;
                let _ = kill(pid, Signal::SIGCONT);
                self.record(healed);
                self.fault_finished();
                Some(Reply::Go)
            }
            HolderFault::Starve(starve) => {
                self.record(injected);
                let shared = Arc::clone(&self);
                tokio::spawn(async move {
                    tokio::time::sleep(starve).await;
                    shared.record(healed);
                    shared.fault_finished();
                });
                Some(Reply::Starve {
                    ms: u64::try_from(starve.as_millis()).unwrap_or(u64::MAX),
                })
            }
            HolderFault::Kill => {
                self.record(injected);
                let _ = kill(pid, Signal::SIGKILL);
                self.record(healed);
                self.fault_finished();
                None
            }
            HolderFault::Stall(stall) => {
                let proxy = lock(&self.proxies).get(&worker).cloned();
                let Some(proxy) = proxy else {
                    eprintln!("coordinator: no proxy for worker {worker}; fault not injected");
                    return Some(Reply::Go);
                };
                proxy.stall();
                self.record(injected);
                tokio::time::sleep(stall).await;
                proxy.unstall();
                self.record(healed);
                self.fault_finished();
                Some(Reply::Go)
            }
            HolderFault::DelayWaiters { each_way, span } => {
                let waiters: Vec<Arc<TcpProxy>> = lock(&self.proxies)
                    .iter()
                    .filter(|(w, _)| **w != worker)
                    .map(|(_, p)| Arc::clone(p))
                    .collect();
                for proxy in &waiters {
                    proxy.set_delay(each_way);
                }
                self.record(injected);
                let shared = Arc::clone(&self);
                tokio::spawn(async move {
                    tokio::time::sleep(span).await;
                    for proxy in &waiters {
                        proxy.set_delay(Duration::ZERO);
                    }
                    shared.record(healed);
                    shared.fault_finished();
                });
                Some(Reply::Go)
            }
            HolderFault::Hold => {
                let _ = kill(pid, Signal::SIGSTOP);
                self.holds.fetch_add(1, Ordering::SeqCst);
                self.held.notify_waiters();
                let _ = tokio::time::timeout(HOLD_AT_MOST, self.release.notified()).await;
                let _ = kill(pid, Signal::SIGCONT);
                self.fault_finished();
                Some(Reply::Go)
            }
            HolderFault::Cut => {
                let proxy = lock(&self.proxies).get(&worker).cloned();
                if let Some(proxy) = proxy {
                    proxy.cut();
                    self.record(injected);
                    self.record(healed);
                } else {
                    eprintln!("coordinator: no proxy for worker {worker}; fault not injected");
                }
                self.fault_finished();
                Some(Reply::Go)
            }
        }
    }

    fn serve_op(&self, access: Access) -> Reply {
        let mut counter = lock(&self.counter);
        self.serve_locked(&mut counter, access)
    }

    /// A permit holder takes a place ([`Request::Claim`]): chosen and read under one lock, so
    /// two claims never pick the same place.
    fn claim(&self, worker: u32, token: u64, live: &[u64], fenced: bool) -> Reply {
        let mut counter = lock(&self.counter);
        let free = counter
            .places
            .iter()
            .enumerate()
            .filter(|(_, p)| p.occupant.is_none_or(|o| o < token && !live.contains(&o)))
            .min_by_key(|(_, p)| p.occupant)
            .and_then(|(i, _)| u32::try_from(i).ok());
        let Some(slot) = free else {
            return Reply::NoPlace;
        };
        let read = Access {
            op: Op::Read,
            worker,
            token,
            fenced,
            write: None,
            slot: Some(slot),
        };
        match self.serve_locked(&mut counter, read) {
            Reply::Value { value } => Reply::Place { slot, value },
            other => other,
        }
    }

    fn serve_locked(&self, counter: &mut Counter, access: Access) -> Reply {
        let Access {
            op,
            worker,
            token,
            fenced,
            write,
            slot,
        } = access;
        let Counter { gate, main, places } = counter;
        let (resource, cell) = match slot {
            None => (RESOURCE.to_owned(), main),
            Some(s) => match places.get_mut(s as usize) {
                Some(cell) => (format!("place-{s}"), cell),
                None => return Reply::NoPlace,
            },
        };
        let admitted = if fenced {
            self.admit(gate, &resource, cell, token)
        } else {
            Ok(())
        };
        if admitted.is_ok() {
            cell.occupant = Some(cell.occupant.map_or(token, |o| o.max(token)));
            if let Some(value) = write {
                cell.value = value;
            }
        }
        self.record(Event::Oracle {
            op,
            worker,
            token,
            accepted: admitted.is_ok(),
            high_water: admitted.err(),
            value: cell.value,
            slot,
        });
        match admitted {
            Ok(()) => Reply::Value { value: cell.value },
            Err(high_water) => Reply::Rejected { high_water },
        }
    }

    /// `Err(mark)` when the fence rejects `token` at `resource` (`cell` keeps the mark of a
    /// planted fence bug).
    #[cfg_attr(not(feature = "mutations"), allow(clippy::unused_self))]
    fn admit(
        &self,
        gate: &FenceGate,
        resource: &str,
        #[cfg_attr(not(feature = "mutations"), allow(unused_variables))] cell: &mut Cell,
        token: u64,
    ) -> Result<(), u64> {
        match self.fence {
            FenceMode::Correct => match gate.admit(resource, FencingToken::new(token)) {
                Ok(()) => Ok(()),
                Err(Error::StaleToken { high_water, .. }) => Err(high_water.get()),
                Err(_) => Err(u64::MAX),
            },
            #[cfg(feature = "mutations")]
            FenceMode::Strict | FenceMode::Skip => {
                let bug = match self.fence {
                    FenceMode::Strict => crate::Mutation::FenceStrict,
                    _ => crate::Mutation::FenceSkip,
                };
                if crate::mutations::planted_fence::admits(Some(bug), cell.mark, token) {
                    cell.mark = Some(cell.mark.map_or(token, |mark| mark.max(token)));
                    Ok(())
                } else {
                    Err(cell.mark.unwrap_or_default())
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
