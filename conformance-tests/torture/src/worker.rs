//! The worker process: acquire → fenced read → random work → check the guard → fenced write
//! of value + 1 → release, every step appended to its history file. An election candidate
//! runs the same cycle with campaign → … → resign, writing with its term; an election
//! observer only records each change of leader. A permit holder (semaphore runs) takes a
//! permit, claims a place (a fenced counter of its own, free of live permits) and runs the
//! cycle there with the permit's token.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use fencelock::{AcquireOptions, LeaseStore, LockGuard, Locker, OwnerLabel};
use fencelock_conformance::history::{Event, Op, Record};
use fencelock_core::{Election, Leadership, PermitGuard, Semaphore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UnixStream;

use crate::config::{OracleKind, Role, WorkerConfig};
use crate::pg_oracle::{Outcome, PgOracle};
use crate::protocol::{Channel, Reply, Request};

/// A worker's failure that ends it (the coordinator sees it exit).
pub type WorkerError = Box<dyn std::error::Error + Send + Sync>;

/// How long the worker keeps retrying its first connection to the lock store.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

struct Worker {
    cfg: WorkerConfig,
    history: File,
    ctl: Channel,
    pg: Option<PgOracle>,
}

/// Runs the worker until the coordinator says stop.
///
/// # Errors
/// Setup failures (history file, coordinator socket, store) and a lost coordinator.
pub async fn run(cfg: WorkerConfig) -> Result<(), WorkerError> {
    let history = File::options()
        .create(true)
        .append(true)
        .open(&cfg.history)?;
    let ctl = Channel::new(UnixStream::connect(&cfg.socket).await?);
    let pg = match &cfg.oracle {
        OracleKind::Gate => None,
        OracleKind::Postgres { url } => Some(PgOracle::connect(url).await?),
    };
    let mut worker = Worker {
        cfg,
        history,
        ctl,
        pg,
    };
    worker.log(Event::Started {
        pid: std::process::id(),
    })?;
    let store = connect(
        &worker.cfg.store_url,
        worker.cfg.op_timeout_ms,
        worker.cfg.listen_url.as_deref(),
    )
    .await?;
    let store = crate::mutations::wrap_store(store, &worker.cfg)?;
    let locker = Locker::from_arc(store);
    match worker.cfg.role {
        Role::Lock | Role::Candidate | Role::Permit => worker.cycles(locker).await,
        Role::Observer => worker.observe(locker).await,
    }
}

/// Where a worker's grants come from: the lock, the election of the lock's name, or the
/// semaphore of that name.
enum Source {
    Lock(Locker, String),
    Election(Election),
    Semaphore(Semaphore),
}

/// What a worker writes under: a lock guard, a leadership in the election of the lock's name
/// (whose term is its fencing token), or a permit of the semaphore of that name.
enum Held {
    Lock(LockGuard),
    Leader(Leadership),
    Permit(PermitGuard),
}

impl Held {
    /// Campaigns in the election until elected (labelled `worker-ID`), takes a permit, or
    /// takes the lock, as `source` says.
    async fn take(
        source: &Source,
        options: AcquireOptions,
        id: u32,
    ) -> Result<Self, fencelock::Error> {
        match source {
            Source::Election(election) => {
                let label = OwnerLabel::new(format!("worker-{id}"))?;
                let leadership = election.campaign(options.with_label(label)).await?;
                Ok(Self::Leader(leadership))
            }
            Source::Semaphore(semaphore) => semaphore.acquire(options).await.map(Self::Permit),
            Source::Lock(locker, name) => {
                locker.acquire(name.as_str(), options).await.map(Self::Lock)
            }
        }
    }

    /// The token, or the leader's term.
    fn token(&self) -> u64 {
        match self {
            Self::Lock(guard) => guard.token().get(),
            Self::Leader(leadership) => leadership.term().get(),
            Self::Permit(permit) => permit.token().get(),
        }
    }

    fn is_valid(&self) -> bool {
        match self {
            Self::Lock(guard) => guard.is_valid(),
            Self::Leader(leadership) => leadership.is_valid(),
            Self::Permit(permit) => permit.is_valid(),
        }
    }

    /// A permit's local deadline, as a [`now_ns`](fencelock_conformance::history::now_ns)
    /// time; `None` for a lock or a leadership.
    fn permit_deadline(&self) -> Option<u64> {
        match self {
            Self::Permit(permit) => Some(monotonic_ns(permit.deadline())),
            Self::Lock(_) | Self::Leader(_) => None,
        }
    }

    /// The random work between read and write. A leader does it through
    /// [`Leadership::run`], which cancels it when leadership is lost; the check after it
    /// records whether it was.
    async fn work(&self, time: Duration) {
        match self {
            Self::Lock(_) | Self::Permit(_) => tokio::time::sleep(time).await,
            Self::Leader(leadership) => {
                let _ = leadership.run(tokio::time::sleep(time)).await;
            }
        }
    }

    /// Releases, or resigns; whether that returned `Ok`.
    async fn release(self) -> bool {
        match self {
            Self::Lock(guard) => guard.release().await.is_ok(),
            Self::Leader(leadership) => leadership.resign().await.is_ok(),
            Self::Permit(permit) => permit.release().await.is_ok(),
        }
    }
}

/// `at` (a tokio instant: `CLOCK_MONOTONIC` on Linux) as a
/// [`now_ns`](fencelock_conformance::history::now_ns) time.
fn monotonic_ns(at: tokio::time::Instant) -> u64 {
    let (now, now_ns) = (
        tokio::time::Instant::now(),
        fencelock_conformance::history::now_ns(),
    );
    if at >= now {
        now_ns.saturating_add(u64::try_from((at - now).as_nanos()).unwrap_or(u64::MAX))
    } else {
        now_ns.saturating_sub(u64::try_from((now - at).as_nanos()).unwrap_or(u64::MAX))
    }
}

async fn connect(
    url: &str,
    op_timeout_ms: Option<u64>,
    listen_url: Option<&str>,
) -> Result<Arc<dyn LeaseStore>, WorkerError> {
    let until = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        match connect_once(url, op_timeout_ms, listen_url).await {
            Ok(store) => return Ok(store),
            Err(e) if tokio::time::Instant::now() < until => {
                eprintln!("worker: connecting to the store failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `fencelock::connect`, except that an etcd store gets `op_timeout_ms` when given, and a
/// PostgreSQL store its `listen_url` (the URL form has no place for either).
async fn connect_once(
    url: &str,
    op_timeout_ms: Option<u64>,
    listen_url: Option<&str>,
) -> Result<Arc<dyn LeaseStore>, fencelock::Error> {
    if let Some(listen) = listen_url {
        let store = fencelock::postgres::PgLeaseStore::builder()
            .with_listen_url(listen)
            .with_url(url)
            .connect()
            .await?;
        return Ok(Arc::new(store));
    }
    match (op_timeout_ms, url.strip_prefix("etcd://")) {
        (Some(ms), Some(hosts)) => {
            let endpoints = hosts.split(',').map(|h| format!("http://{h}"));
            // A short connect timeout too: `connect` retries within CONNECT_PATIENCE.
            let mut config = fencelock::etcd::EtcdConfig::new(endpoints);
            config.op_timeout_ms = Some(ms);
            config.connect_timeout_ms = Some(ms);
            let store = fencelock::etcd::EtcdLeaseStore::from_config(config).await?;
            Ok(Arc::new(store))
        }
        _ => fencelock::connect(url).await,
    }
}

impl Worker {
    fn log(&mut self, event: Event) -> std::io::Result<()> {
        Record::now(self.cfg.id, event).append_to(&mut self.history)
    }

    async fn cycles(&mut self, locker: Locker) -> Result<(), WorkerError> {
        let ttl = Duration::from_millis(self.cfg.ttl_ms);
        let options = AcquireOptions::new()
            .with_ttl(ttl)
            .with_renew_interval(Duration::from_millis(self.cfg.renew_ms))
            .with_poll_interval(Duration::from_millis(self.cfg.poll_ms))
            .with_timeout(ttl * 20);
        let mut rng = StdRng::seed_from_u64(self.cfg.seed);
        let id = self.cfg.id;
        let source = match self.cfg.role {
            Role::Candidate => Source::Election(locker.election(self.cfg.lock.as_str())?),
            Role::Permit => {
                let limit = self
                    .cfg
                    .permit_limit
                    .ok_or("a permit holder needs permit_limit")?;
                if self.pg.is_some() {
                    return Err("permit holders write to the in-memory gate's places only".into());
                }
                Source::Semaphore(locker.semaphore(self.cfg.lock.as_str(), limit)?)
            }
            Role::Lock | Role::Observer => Source::Lock(locker, self.cfg.lock.clone()),
        };
        loop {
            if self.ctl.call(&Request::Cycle { worker: id }).await? == Reply::Stop {
                return Ok(());
            }
            let sent = fencelock_conformance::history::now_ns();
            let taken = Held::take(&source, options.clone(), id).await;
            let guard = match taken {
                Ok(guard) => guard,
                Err(e) => {
                    self.log(Event::AcquireFailed {
                        kind: format!("{:?}", e.kind()),
                        error: e.to_string(),
                    })?;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let token = guard.token();
            self.log(Event::Acquired { token, sent })?;
            self.log(Event::Clock { wall_ms: wall_ms() })?;
            let writes = rng.random_range(1..=2);
            // A permit holder writes at the place it claims, starting from the value the
            // claim read; it gives up the grant when no place is free to it.
            let (mut claimed, mut place) = (None, None);
            if let Source::Semaphore(semaphore) = &source {
                match self.claim(semaphore, token).await? {
                    Some((slot, value)) => (place, claimed) = (Some(slot), Some(value)),
                    None => {
                        self.release(guard).await?;
                        continue;
                    }
                }
            }
            for _ in 0..writes {
                let read = match claimed.take() {
                    Some(value) => Some(value),
                    None => self.read(token, place).await?,
                };
                let Some(value) = read else {
                    break;
                };
                let work = rng.random_range(0..=self.cfg.work_max_ms);
                guard.work(Duration::from_millis(work)).await;
                if !self.check(&guard)? {
                    break;
                }
                let reply = self.checkpoint(&guard).await?;
                if let Reply::Starve { ms } = reply {
                    // Blocking work on the only runtime thread: the watchdog cannot run.
                    std::thread::sleep(Duration::from_millis(ms));
                }
                if !self.write(token, value + 1, place).await? {
                    // After a rejected or failed write: does the guard know it lost? (Stalled
                    // renewals must have made it invalid; I6 catches one that still says yes.)
                    self.check(&guard)?;
                    break;
                }
            }
            self.release(guard).await?;
        }
    }

    /// Releases `guard` and logs it; for a permit, first how long its holder took it as valid
    /// (until now, or its deadline if that passed: the end of its window for I7).
    async fn release(&mut self, guard: Held) -> Result<(), WorkerError> {
        let token = guard.token();
        if let Some(deadline) = guard.permit_deadline() {
            let until = deadline.min(fencelock_conformance::history::now_ns());
            self.log(Event::ValidUntil { token, until })?;
        }
        let ok = guard.release().await;
        self.log(Event::Released { token, ok })?;
        Ok(())
    }

    /// Claims a place for the permit `token` (the other permits that hold now, from
    /// `Semaphore::holders`, keep theirs); the place and its value, or `None` when none was
    /// free, the claim was rejected, or the holders could not be read (logged).
    async fn claim(
        &mut self,
        semaphore: &Semaphore,
        token: u64,
    ) -> Result<Option<(u32, u64)>, WorkerError> {
        let live: Vec<u64> = match semaphore.holders().await {
            Ok(permits) => permits
                .holders
                .iter()
                .map(|h| h.token.get())
                .filter(|&t| t != token)
                .collect(),
            Err(e) => {
                let error = format!("reading the semaphore's holders: {e}");
                self.log_read(token, Err(error))?;
                return Ok(None);
            }
        };
        let request = Request::Claim {
            worker: self.cfg.id,
            token,
            live,
            fenced: self.cfg.fenced,
        };
        let (slot, outcome) = match self.ctl.call(&request).await? {
            Reply::Place { slot, value } => (Some(slot), Ok(Outcome::Admitted(value))),
            Reply::NoPlace => (None, Err("no place free".to_owned())),
            Reply::Rejected { high_water } => (None, Ok(Outcome::Rejected(high_water))),
            other => return Err(format!("unexpected reply to a claim: {other:?}").into()),
        };
        Ok(slot.zip(self.log_read(token, outcome)?))
    }

    /// The observer: follows the election of the lock's name (reading the leader at least
    /// every poll interval) and records each change of leader, until the coordinator says
    /// stop (asked every poll interval).
    async fn observe(&mut self, locker: Locker) -> Result<(), WorkerError> {
        let every = Duration::from_millis(self.cfg.poll_ms.max(1));
        let mut watch = locker
            .election(self.cfg.lock.as_str())?
            .with_observe_interval(every)
            .observe()?;
        let Self {
            cfg, history, ctl, ..
        } = self;
        let id = cfg.id;
        let follow = async {
            loop {
                match watch.changed().await {
                    Ok(leader) => {
                        let term = leader.map(|l| l.term.get());
                        let record = Record::now(id, Event::LeaderObserved { term });
                        if let Err(e) = record.append_to(history) {
                            return Err::<(), WorkerError>(e.into());
                        }
                    }
                    Err(e) => {
                        // Answered once; the next call reads again.
                        eprintln!("worker {id}: observing failed: {e}");
                        tokio::time::sleep(every).await;
                    }
                }
            }
        };
        let stopped = async {
            loop {
                tokio::time::sleep(every).await;
                if ctl.call(&Request::Cycle { worker: id }).await? == Reply::Stop {
                    return Ok::<(), WorkerError>(());
                }
            }
        };
        tokio::select! {
            r = follow => r,
            r = stopped => r,
        }
    }

    /// Reaches the checkpoint and waits for the coordinator's go. While a fault holds the
    /// holder here (its connections stalled), its guard is probed every TTL/20 and each answer
    /// logged as a `Probe`: the holder stays frozen at its decision to write, but a guard that
    /// still says valid after another holder was granted breaks I6 (a store that ends grants
    /// before the deadline its leases report).
    async fn checkpoint(&mut self, guard: &Held) -> Result<Reply, WorkerError> {
        let Self {
            cfg, history, ctl, ..
        } = self;
        let token = guard.token();
        let request = Request::Checkpoint {
            worker: cfg.id,
            token,
        };
        let every = Duration::from_millis((cfg.ttl_ms / 20).max(1));
        let mut probes = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let call = ctl.call(&request);
        tokio::pin!(call);
        loop {
            tokio::select! {
                reply = &mut call => return Ok(reply?),
                _ = probes.tick() => {
                    let t = fencelock_conformance::history::now_ns();
                    let valid = guard.is_valid();
                    let event = Event::Probe { token, valid };
                    Record { w: cfg.id, t, event }.append_to(history)?;
                }
            }
        }
    }

    /// Asks the guard whether the lease holds and logs the answer, stamped *before* asking
    /// (so a validity window drawn from these records is never too long). A permit holder
    /// told valid also logs its deadline ([`Event::ValidUntil`]): it takes the permit as
    /// valid until then.
    fn check(&mut self, guard: &Held) -> std::io::Result<bool> {
        let at = fencelock_conformance::history::now_ns();
        let token = guard.token();
        let deadline = guard.permit_deadline();
        let valid = guard.is_valid();
        let record = Record {
            w: self.cfg.id,
            t: at,
            event: Event::Check { token, valid },
        };
        record.append_to(&mut self.history)?;
        if let Some(until) = deadline.filter(|_| valid) {
            self.log(Event::ValidUntil { token, until })?;
        }
        Ok(valid)
    }

    /// The counter's value (at `place` in a semaphore run), or `None` when the read was
    /// rejected or failed (logged).
    async fn read(&mut self, token: u64, place: Option<u32>) -> Result<Option<u64>, WorkerError> {
        let id = self.cfg.id;
        let outcome = match &self.pg {
            Some(pg) => pg.read(id, token).await.map_err(|e| e.to_string()),
            None => {
                let request = Request::Read {
                    worker: id,
                    token,
                    fenced: self.cfg.fenced,
                    slot: place,
                };
                Ok(gate_outcome(self.ctl.call(&request).await?)?)
            }
        };
        self.log_read(token, outcome)
    }

    /// Logs what a read (or a claim) got; the value read, if any.
    fn log_read(
        &mut self,
        token: u64,
        outcome: Result<Outcome, String>,
    ) -> Result<Option<u64>, WorkerError> {
        match outcome {
            Ok(Outcome::Admitted(value)) => {
                self.log(Event::Read { token, value })?;
                Ok(Some(value))
            }
            Ok(Outcome::Rejected(high_water)) => {
                self.log(Event::Rejected {
                    op: Op::Read,
                    token,
                    high_water,
                })?;
                Ok(None)
            }
            Err(error) => {
                self.log(Event::OpFailed {
                    op: Op::Read,
                    token,
                    error,
                })?;
                Ok(None)
            }
        }
    }

    /// Writes `value` (at `place` in a semaphore run); `false` when the write was rejected or
    /// failed (logged).
    async fn write(
        &mut self,
        token: u64,
        value: u64,
        place: Option<u32>,
    ) -> Result<bool, WorkerError> {
        let id = self.cfg.id;
        let outcome = match &self.pg {
            Some(pg) => pg.write(id, token, value).await.map_err(|e| e.to_string()),
            None => {
                let request = Request::Write {
                    worker: id,
                    token,
                    value,
                    fenced: self.cfg.fenced,
                    slot: place,
                };
                Ok(gate_outcome(self.ctl.call(&request).await?)?)
            }
        };
        match outcome {
            Ok(Outcome::Admitted(_)) => {
                self.log(Event::WriteAccepted { token, value })?;
                Ok(true)
            }
            Ok(Outcome::Rejected(high_water)) => {
                self.log(Event::Rejected {
                    op: Op::Write,
                    token,
                    high_water,
                })?;
                Ok(false)
            }
            Err(error) => {
                self.log(Event::OpFailed {
                    op: Op::Write,
                    token,
                    error,
                })?;
                Ok(false)
            }
        }
    }
}

fn gate_outcome(reply: Reply) -> Result<Outcome, WorkerError> {
    match reply {
        Reply::Value { value } => Ok(Outcome::Admitted(value)),
        Reply::Rejected { high_water } => Ok(Outcome::Rejected(high_water)),
        other => Err(format!("unexpected reply from the oracle: {other:?}").into()),
    }
}

/// The wall clock in ms since the Unix epoch (negative before it: libfaketime can go there).
pub fn wall_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}
