//! The worker process: acquire → fenced read → random work → check the guard → fenced write
//! of value + 1 → release, every step appended to its history file.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use fencelock::{AcquireOptions, LeaseStore, Locker};
use fencelock_conformance::history::{Event, Op, Record};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UnixStream;

use crate::config::{OracleKind, WorkerConfig};
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
    worker.cycles(Locker::from_arc(store)).await
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
        loop {
            if self.ctl.call(&Request::Cycle { worker: id }).await? == Reply::Stop {
                return Ok(());
            }
            let sent = fencelock_conformance::history::now_ns();
            let guard = match locker
                .acquire(self.cfg.lock.as_str(), options.clone())
                .await
            {
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
            let token = guard.token().get();
            self.log(Event::Acquired { token, sent })?;
            self.log(Event::Clock { wall_ms: wall_ms() })?;
            let writes = rng.random_range(1..=2);
            for _ in 0..writes {
                let Some(value) = self.read(token).await? else {
                    break;
                };
                let work = rng.random_range(0..=self.cfg.work_max_ms);
                tokio::time::sleep(Duration::from_millis(work)).await;
                if !self.check(&guard)? {
                    break;
                }
                let reply = self.checkpoint(&guard).await?;
                if let Reply::Starve { ms } = reply {
                    // Blocking work on the only runtime thread: the watchdog cannot run.
                    std::thread::sleep(Duration::from_millis(ms));
                }
                if !self.write(token, value + 1).await? {
                    // After a rejected or failed write: does the guard know it lost? (Stalled
                    // renewals must have made it invalid; I6 catches one that still says yes.)
                    self.check(&guard)?;
                    break;
                }
            }
            let ok = guard.release().await.is_ok();
            self.log(Event::Released { token, ok })?;
        }
    }

    /// Reaches the checkpoint and waits for the coordinator's go. While a fault holds the
    /// holder here (its connections stalled), its guard is probed every TTL/20 and each answer
    /// logged as a `Probe`: the holder stays frozen at its decision to write, but a guard that
    /// still says valid after another holder was granted breaks I6 (a store that ends grants
    /// before the deadline its leases report).
    async fn checkpoint(&mut self, guard: &fencelock::LockGuard) -> Result<Reply, WorkerError> {
        let Self {
            cfg, history, ctl, ..
        } = self;
        let token = guard.token().get();
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
    /// (so a validity window drawn from these records is never too long).
    fn check(&mut self, guard: &fencelock::LockGuard) -> std::io::Result<bool> {
        let at = fencelock_conformance::history::now_ns();
        let token = guard.token().get();
        let valid = guard.is_valid();
        let record = Record {
            w: self.cfg.id,
            t: at,
            event: Event::Check { token, valid },
        };
        record.append_to(&mut self.history)?;
        Ok(valid)
    }

    /// The counter's value, or `None` when the read was rejected or failed (logged).
    async fn read(&mut self, token: u64) -> Result<Option<u64>, WorkerError> {
        let id = self.cfg.id;
        let outcome = match &self.pg {
            Some(pg) => pg.read(id, token).await.map_err(|e| e.to_string()),
            None => {
                let request = Request::Read {
                    worker: id,
                    token,
                    fenced: self.cfg.fenced,
                };
                Ok(gate_outcome(self.ctl.call(&request).await?)?)
            }
        };
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

    /// Writes `value`; `false` when the write was rejected or failed (logged).
    async fn write(&mut self, token: u64, value: u64) -> Result<bool, WorkerError> {
        let id = self.cfg.id;
        let outcome = match &self.pg {
            Some(pg) => pg.write(id, token, value).await.map_err(|e| e.to_string()),
            None => {
                let request = Request::Write {
                    worker: id,
                    token,
                    value,
                    fenced: self.cfg.fenced,
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
