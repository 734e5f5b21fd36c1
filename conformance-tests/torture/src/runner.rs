//! One run: servers, coordinator, worker processes, faults, then the checkers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fencelock_conformance::harness::{PostgresServer, PostgresServerOptions, TcpProxy};
use fencelock_conformance::history::{self, Bounds, Event, OracleLog, Report};
use tokio::process::{Child, Command};

use crate::config::{OracleKind, Role, WorkerConfig};
use crate::coordinator::{Coordinator, FenceMode, HolderFault};
use crate::faketime::{self, FakeClock};
use crate::mutations::{self, Mutation};
use crate::pg_oracle::PgOracle;
use crate::scenario::{Backend, PERMIT_LIMIT, Scenario};
use crate::servers::Servers;
use crate::timeline::Timeline;

/// How long a run may go without a holder reaching its write before it is called stuck.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// Set to keep every run's directory (histories, worker stderr), not only unexpected failures.
pub const KEEP_VAR: &str = "FENCELOCK_TORTURE_KEEP";
/// Checkpoints (holders about to write) to see before the first fault and after each one.
const CHECKPOINTS_BETWEEN_FAULTS: u64 = 3;

/// Which fenced resource the workers write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Oracle {
    /// The in-memory `FenceGate` in the coordinator.
    Gate,
    /// A PostgreSQL table through `FencedTable`.
    Postgres,
}

impl Oracle {
    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gate => "gate",
            Self::Postgres => "pg-table",
        }
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// The fault.
    pub scenario: Scenario,
    /// The lock backend.
    pub backend: Backend,
    /// The fenced resource.
    pub oracle: Oracle,
    /// Whether reads and writes are fenced (false: the control run).
    pub fenced: bool,
    /// A planted bug.
    pub mutation: Option<Mutation>,
    /// The seed of every random choice (worker work times, writes per cycle).
    pub seed: u64,
    /// Faults to inject.
    pub rounds: u32,
    /// Worker processes.
    pub workers: u32,
}

impl RunSpec {
    /// The one-line command that re-runs this spec.
    pub fn rerun_command(&self) -> String {
        let (env, features) = match self.mutation {
            Some(m) => (
                format!("{}={} ", mutations::MUTATION_VAR, m.name()),
                " --features mutations",
            ),
            None => (String::new(), ""),
        };
        // `cargo run` alone would not rebuild the worker binary.
        let mut cmd = format!(
            "cargo build -p fencelock-torture --bins{features} && {env}cargo run -p fencelock-torture{features}"
        );
        cmd.push_str(&format!(
            " -- --only {}/{} --oracle {} --seed {} --rounds {} --workers {}",
            self.scenario.name(),
            self.backend.name(),
            self.oracle.name(),
            self.seed,
            self.rounds,
            self.workers
        ));
        if !self.fenced {
            cmd.push_str(" --control");
        }
        cmd
    }

    /// `scenario/backend/oracle[/control][/mutation]`.
    pub fn label(&self) -> String {
        let mut label = format!(
            "{}/{}/{}",
            self.scenario.name(),
            self.backend.name(),
            self.oracle.name()
        );
        if !self.fenced {
            label.push_str("/control");
        }
        if let Some(m) = self.mutation {
            label.push('/');
            label.push_str(m.name());
        }
        label
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct RunOutcome {
    /// What ran.
    pub spec: RunSpec,
    /// The checkers' figures and violations.
    pub report: Report,
    /// Harness trouble (no progress, a worker that failed to start, …).
    pub problems: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// The run directory, kept when the run was not clean.
    pub kept_dir: Option<PathBuf>,
    /// Whether I6 (no two guards valid at once) was checked: where the scenario keeps the
    /// server's state, and for a paused etcd leader only on an etcd without issue #15247.
    pub exclusive: bool,
    /// The merged history as a picture's data ([`crate::timeline`]).
    pub timeline: Timeline,
}

impl RunOutcome {
    /// No violation and no harness trouble.
    pub fn is_clean(&self) -> bool {
        self.report.is_clean() && self.problems.is_empty()
    }
}

struct Workers {
    exe: PathBuf,
    base: WorkerConfig,
    children: Vec<Child>,
    next_id: u32,
    /// For network faults: the server address each worker reaches through its own proxy.
    proxy_upstream: Option<SocketAddr>,
    /// For clock jumps: the fake wall clock every worker runs under.
    fake_clock: Option<FakeClock>,
}

impl Workers {
    fn spawn(&mut self, coordinator: &Coordinator, store_url: &str) -> Result<(), String> {
        self.spawn_as(self.base.role, coordinator, store_url)
    }

    fn spawn_as(
        &mut self,
        role: Role,
        coordinator: &Coordinator,
        store_url: &str,
    ) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut cfg = self.base.clone();
        cfg.id = id;
        cfg.role = role;
        cfg.store_url = store_url.to_owned();
        if let Some(upstream) = self.proxy_upstream {
            let proxy = TcpProxy::start(upstream).map_err(|e| e.to_string())?;
            let (from, to) = (upstream.to_string(), proxy.addr().to_string());
            if !store_url.contains(&from) {
                return Err(format!("store URL {store_url} does not name {from}"));
            }
            cfg.store_url = store_url.replacen(&from, &to, 1);
            coordinator.register_proxy(id, Arc::new(proxy));
        }
        cfg.history = cfg.run_dir.join(format!("worker-{id}.jsonl"));
        cfg.seed = self.base.seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let json = serde_json::to_string(&cfg).map_err(|e| e.to_string())?;
        let stderr = std::fs::File::create(cfg.run_dir.join(format!("worker-{id}.stderr")))
            .map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.exe);
        if let Some(clock) = &self.fake_clock {
            clock.apply(&mut command);
        }
        let child = command
            .arg(json)
            .env_remove(mutations::MUTATION_VAR)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        if let Some(pid) = child.id() {
            coordinator.register(id, pid);
        }
        self.children.push(child);
        Ok(())
    }

    fn kill_all(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }

    /// Waits for every worker to exit (they were told to stop); kills stragglers.
    async fn finish(&mut self, patience: Duration) {
        let until = tokio::time::Instant::now() + patience;
        for child in &mut self.children {
            if tokio::time::timeout_at(until, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

/// Runs `spec` with the worker binary `worker_exe`.
///
/// # Errors
/// Setup failures: servers that do not start, a socket that cannot be bound, a mutation in
/// a build without planted bugs.
pub async fn run(spec: &RunSpec, worker_exe: &Path) -> Result<RunOutcome, String> {
    mutations::allowed(spec.mutation)?;
    if spec.scenario.semaphore() && spec.oracle != Oracle::Gate {
        return Err(format!(
            "{}: the semaphore scenarios write to the in-memory gate's places only",
            spec.label()
        ));
    }
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("fencelock-torture-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let servers = Servers::start(spec.backend, spec.scenario).await?;
    let (pg_server, pg_oracle) = match spec.oracle {
        Oracle::Gate => (None, None),
        Oracle::Postgres => {
            let server = PostgresServer::start(PostgresServerOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let oracle = PgOracle::connect(&server.url())
                .await
                .map_err(|e| e.to_string())?;
            oracle.create().await.map_err(|e| e.to_string())?;
            (Some(server), Some(oracle))
        }
    };
    let fence = match spec.mutation {
        #[cfg(feature = "mutations")]
        Some(Mutation::FenceStrict) => FenceMode::Strict,
        #[cfg(feature = "mutations")]
        Some(Mutation::FenceSkip) => FenceMode::Skip,
        _ => FenceMode::Correct,
    };
    let permit_limit = spec.scenario.semaphore().then_some(PERMIT_LIMIT);
    let coordinator = Coordinator::start(
        &dir.path().join("ctl.sock"),
        &dir.path().join("coordinator.jsonl"),
        fence,
        permit_limit.unwrap_or(0),
    )
    .map_err(|e| e.to_string())?;
    let ttl = spec.backend.ttl();
    let mut workers = Workers {
        exe: worker_exe.to_owned(),
        base: WorkerConfig {
            id: 0,
            store_url: String::new(),
            lock: lock_name(spec),
            role: if spec.scenario.election() {
                Role::Candidate
            } else if spec.scenario.semaphore() {
                Role::Permit
            } else {
                Role::Lock
            },
            permit_limit,
            ttl_ms: millis(ttl),
            renew_ms: millis(spec.backend.renew_every()),
            op_timeout_ms: spec.backend.op_timeout().map(millis),
            listen_url: servers.listen_url(),
            poll_ms: millis(ttl / 10),
            work_max_ms: millis(ttl / 10),
            socket: dir.path().join("ctl.sock"),
            history: PathBuf::new(),
            seed: spec.seed,
            oracle: match &pg_server {
                Some(server) => OracleKind::Postgres { url: server.url() },
                None => OracleKind::Gate,
            },
            fenced: spec.fenced,
            mutation: spec.mutation.map(|m| m.name().to_owned()),
            run_dir: dir.path().to_owned(),
        },
        children: Vec::new(),
        next_id: 1,
        proxy_upstream: spec.scenario.proxied().then(|| servers.addr()),
        fake_clock: if spec.scenario == Scenario::ClockJump {
            Some(FakeClock::new(dir.path())?)
        } else {
            None
        },
    };
    // (from when, wall-clock offset in ms) of every fake-clock setting.
    let mut clock_plan = vec![(history::now_ns(), faketime::START.1)];
    let mut problems = Vec::new();
    let store_url = servers.store_url();
    for _ in 0..spec.workers {
        workers.spawn(&coordinator, &store_url)?;
    }
    if spec.scenario.election() {
        // One more process follows the election and records each leader it sees.
        workers.spawn_as(Role::Observer, &coordinator, &store_url)?;
    }
    let mut target = CHECKPOINTS_BETWEEN_FAULTS;
    if !coordinator.wait_checkpoints(target, PROGRESS_TIMEOUT).await {
        problems.push(format!(
            "no progress before the first fault ({} checkpoints)",
            coordinator.checkpoints()
        ));
    }
    for round in 0..spec.rounds {
        if let Err(e) = inject(
            spec,
            round,
            &servers,
            &coordinator,
            &mut workers,
            dir.path(),
            &mut clock_plan,
        )
        .await
        {
            problems.push(format!("round {round}: {e}"));
            break;
        }
        target = coordinator.checkpoints() + CHECKPOINTS_BETWEEN_FAULTS;
        if !coordinator.wait_checkpoints(target, PROGRESS_TIMEOUT).await {
            problems.push(format!("no progress after fault {round}"));
            break;
        }
    }
    coordinator.stop();
    workers.finish(ttl * 6 + Duration::from_secs(5)).await;
    let files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    let merged = history::read_histories(&files).map_err(|e| e.to_string())?;
    if let Some(clock) = &workers.fake_clock {
        problems.extend(clock.verify(&merged, &clock_plan));
    }
    let log = match &pg_oracle {
        Some(oracle) => {
            let mut log = oracle.log().await.map_err(|e| e.to_string())?;
            log.ops.extend(rejections(&merged));
            log
        }
        None => OracleLog::from_history(&merged, coordinator.value()),
    };
    let bounds = Bounds {
        ttl,
        renew_every: spec.backend.renew_every(),
        slack: spec.backend.slack(),
        exclusive: checks_exclusive(spec)?,
        permit_limit,
    };
    let report = history::check(&merged, &log, bounds);
    drop(servers);
    drop(pg_server);
    // Keep the histories of an unexpected failure; control and mutation runs fail on purpose.
    let unexpected =
        spec.fenced && spec.mutation.is_none() && !(report.is_clean() && problems.is_empty());
    let keep = unexpected || std::env::var_os(KEEP_VAR).is_some();
    let kept_dir = keep.then(|| dir.keep());
    Ok(RunOutcome {
        spec: spec.clone(),
        report,
        problems,
        elapsed: started.elapsed(),
        exclusive: bounds.exclusive,
        kept_dir,
        timeline: Timeline::from_history(&merged, ttl),
    })
}

/// Rejections as the workers saw them (the PostgreSQL oracle logs only admissions).
fn rejections(merged: &[history::Record]) -> Vec<history::OracleOp> {
    merged
        .iter()
        .filter_map(|r| match r.event {
            Event::Rejected {
                op,
                token,
                high_water,
            } => Some(history::OracleOp {
                op,
                worker: r.w,
                token,
                accepted: false,
                high_water: Some(high_water),
                slot: None,
            }),
            _ => None,
        })
        .collect()
}

async fn inject(
    spec: &RunSpec,
    round: u32,
    servers: &Servers,
    coordinator: &Coordinator,
    workers: &mut Workers,
    dir: &Path,
    clock_plan: &mut Vec<(u64, i64)>,
) -> Result<(), String> {
    let ttl = spec.backend.ttl();
    let patience = PROGRESS_TIMEOUT + ttl * 4;
    let hit = |fault| async move {
        if coordinator.hit_holder(fault, patience).await {
            Ok(())
        } else {
            Err(format!("no holder reached its write to take {fault:?}"))
        }
    };
    let server_fault = |name: &str| Event::FaultInjected {
        fault: name.to_owned(),
        holder: false,
    };
    let healed = |name: &str| Event::FaultHealed {
        fault: name.to_owned(),
    };
    let e = |e: fencelock_conformance::harness::HarnessError| e.to_string();
    match spec.scenario {
        // An election's leader is hit as a lock's holder is: at its write.
        Scenario::HolderPause | Scenario::ElectionPause | Scenario::SemaphorePause => {
            hit(HolderFault::Pause(ttl * 3)).await
        }
        Scenario::HolderStarve => hit(HolderFault::Starve(ttl * 2)).await,
        Scenario::HolderKill | Scenario::ElectionKill => {
            hit(HolderFault::Kill).await?;
            workers.spawn(coordinator, &servers.store_url())
        }
        Scenario::NetStall | Scenario::ElectionPartition => hit(HolderFault::Stall(ttl * 3)).await,
        Scenario::NetDelay => {
            hit(HolderFault::DelayWaiters {
                each_way: ttl / 5,
                span: ttl * 2,
            })
            .await
        }
        Scenario::NetCut => hit(HolderFault::Cut).await,
        Scenario::ClockJump => {
            let Some(clock) = &workers.fake_clock else {
                return Err("clock jumps need the fake clock".into());
            };
            let (jump, offset) = faketime::JUMPS[round as usize % faketime::JUMPS.len()];
            let name = format!("workers' wall clocks jumped to real time {jump}");
            coordinator.record(server_fault(&name));
            let at = history::now_ns();
            clock.set(jump)?;
            clock_plan.push((at, offset));
            coordinator.record(healed(&name));
            Ok(())
        }
        Scenario::ServerRestart | Scenario::SemaphoreRestart => {
            let name = "server killed (SIGKILL) and restarted";
            coordinator.record(server_fault(name));
            servers.kill()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if spec.mutation == Some(Mutation::TokenReset) {
                // The planted counter lives "in the server": it is lost with it.
                let _ = std::fs::remove_file(mutations::lossy_counter_file(dir));
            }
            servers.restart().await?;
            coordinator.record(healed(name));
            Ok(())
        }
        Scenario::LeaderKill | Scenario::LeaderPause => {
            let Servers::Etcd(cluster) = servers else {
                return Err("leader faults need etcd".into());
            };
            let leader = cluster
                .wait_for_leader(Duration::from_secs(10))
                .await
                .map_err(e)?;
            let member = cluster.member(leader).map_err(e)?;
            if spec.scenario == Scenario::LeaderKill {
                let name = "etcd leader killed (SIGKILL)";
                coordinator.record(server_fault(name));
                member.kill().map_err(e)?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                cluster
                    .wait_for_leader(Duration::from_secs(10))
                    .await
                    .map_err(e)?;
                coordinator.record(healed(name));
                member.restart().await.map_err(e)
            } else {
                let name = "etcd leader paused (SIGSTOP) for 3×TTL";
                coordinator.record(server_fault(name));
                member.pause().map_err(e)?;
                tokio::time::sleep(ttl * 3).await;
                member.resume().map_err(e)?;
                coordinator.record(healed(name));
                Ok(())
            }
        }
        Scenario::RedisFailover => {
            let Servers::Redis {
                primary,
                replica: Some(replica),
            } = servers
            else {
                return Err("failover needs a replica".into());
            };
            if round > 0 {
                return Ok(());
            }
            // Let the replica fall behind: it misses the grants of the next TTL.
            replica.pause().map_err(e)?;
            tokio::time::sleep(ttl * 2).await;
            let name = "redis primary paused; lagging replica promoted";
            coordinator.record(server_fault(name));
            primary.pause().map_err(e)?;
            replica.resume().map_err(e)?;
            let reply = replica
                .command(&["REPLICAOF", "NO", "ONE"])
                .await
                .map_err(e)?;
            if !reply.starts_with("+OK") {
                return Err(format!("REPLICAOF NO ONE answered {reply:?}"));
            }
            // Clients of the frozen primary are gone with it; new ones use the replica.
            workers.kill_all();
            for _ in 0..spec.workers {
                workers.spawn(coordinator, &replica.url())?;
            }
            coordinator.record(healed(name));
            Ok(())
        }
        Scenario::ClusterPrimaryKill | Scenario::SentinelFailover => {
            if round > 0 {
                return Ok(());
            }
            kill_primary_under_a_held_holder(spec, servers, coordinator, patience).await
        }
        Scenario::PgFailover => {
            let Servers::Postgres {
                server: primary,
                standby: Some(standby),
                ..
            } = servers
            else {
                return Err("failover needs a standby".into());
            };
            if round > 0 {
                return Ok(());
            }
            // The standby misses everything committed from now on: the proxy holds the WAL
            // back, and drops it once the primary is dead.
            standby.replication.stall();
            tokio::time::sleep(ttl * 2).await;
            let name = "postgres primary killed (SIGKILL); lagging standby promoted";
            coordinator.record(server_fault(name));
            primary.kill().map_err(e)?;
            standby.replication.cut();
            standby.server.promote().await.map_err(e)?;
            // The workers' route: their own connections die with the primary; new workers
            // connect to the promoted standby (as a re-pointed router would send them).
            workers.kill_all();
            for _ in 0..spec.workers {
                workers.spawn(coordinator, &standby.server.url())?;
            }
            coordinator.record(healed(name));
            Ok(())
        }
    }
}

/// How long a Redis Cluster or the sentinels may take to promote a replica after its primary
/// died (node timeout and `down-after-milliseconds` are 1 s; the election and promotion take a
/// second or two more on a loaded machine).
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The lock's name in a run of `spec` (every worker takes the same).
fn lock_name(spec: &RunSpec) -> String {
    format!("torture/{}-{}", spec.scenario.name(), spec.seed)
}

/// A Redis Cluster's or Sentinel's own failover, with a stale write ready: the next holder to
/// reach its write is stopped (SIGSTOP) there, the primary serving the lock is killed
/// (SIGKILL), and once a replica is promoted and another worker, granted by it, has reached
/// its write (its fenced read raised the resource's mark), the stopped holder goes on to
/// write with its old token, which the fence must reject. The workers keep their
/// connections: their stores find the promoted replica by themselves (the cluster driver
/// refreshes its slot map; the Sentinel connection asks the sentinels again).
///
/// The fault is recorded as one server fault, from the kill to the promotion, so I5 measures
/// the next grant from the promotion.
async fn kill_primary_under_a_held_holder(
    spec: &RunSpec,
    servers: &Servers,
    coordinator: &Coordinator,
    patience: Duration,
) -> Result<(), String> {
    let lock = fencelock::LockName::new(lock_name(spec)).map_err(|e| e.to_string())?;
    let key = fencelock::redis::KeyLayout::default().lock_key(&lock);
    if !coordinator.hold_holder(patience).await {
        return Err("no holder reached its write to be held".into());
    }
    let name = match spec.scenario {
        Scenario::ClusterPrimaryKill => {
            "holder held at its write; primary of the lock's slot killed (SIGKILL); replica promoted by the cluster"
        }
        _ => {
            "holder held at its write; primary killed (SIGKILL); replica promoted by the sentinels"
        }
    };
    coordinator.record(Event::FaultInjected {
        fault: name.to_owned(),
        holder: false,
    });
    let promoted = servers.kill_primary(&key, PROMOTION_TIMEOUT).await;
    coordinator.record(Event::FaultHealed {
        fault: name.to_owned(),
    });
    // Another holder, granted after the failover, reaches its write before the held one does.
    let progressed = coordinator
        .wait_checkpoints(coordinator.checkpoints() + 1, PROGRESS_TIMEOUT)
        .await;
    coordinator.release_held();
    promoted?;
    if progressed {
        Ok(())
    } else {
        Err("no other holder reached its write after the failover".into())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a run must keep every guard exclusive (I6): the scenario keeps the server's state
/// ([`Scenario::keeps_state`]), and a paused etcd leader is not one that revokes leases early
/// once it resumes (etcd issue #15247, [`fencelock::etcd::revokes_leases_early`]: Debian 12's
/// etcd 3.4.23 does). There the server itself ends a lease before its holder's deadline, so
/// only the fence (I1) can protect the resource, and it must.
fn checks_exclusive(spec: &RunSpec) -> Result<bool, String> {
    if !spec.scenario.keeps_state(spec.backend) {
        return Ok(false);
    }
    if spec.scenario != Scenario::LeaderPause {
        return Ok(true);
    }
    let version =
        fencelock_conformance::harness::EtcdCluster::binary_version().map_err(|e| e.to_string())?;
    Ok(!fencelock::etcd::revokes_leases_early(&version))
}
