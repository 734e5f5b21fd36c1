//! Cost per cycle: what one acquire + release costs the client process and the server, at
//! 64 tasks on 64 names, for ours (through `Locker` and through the store alone), the raw floor
//! and (on Redis) the rslock peer; on PostgreSQL also the store on named prepared statements,
//! on etcd the store's two txns by hand, each to split the server's cost per cycle in two.
//!
//! Each mode runs alone — no other mode's tasks in flight — for a few seconds, and the modes
//! are repeated in alternation (A B C D A B C D …) so that drift in the machine's load shows
//! as differences between rounds. Per run:
//!
//! - client CPU: this process's user + system time (`getrusage(RUSAGE_SELF)`) over the run, or
//!   the rslock child's own, which it reports the same way;
//! - server CPU: the time on CPU of the server's processes and every descendant (every thread
//!   of each: `/proc/PID/task/TID/schedstat`, nanoseconds), read before the tasks start and
//!   after they all finished. PostgreSQL counts the postmaster and its backends; etcd every
//!   member. A server the harness did not start (an URL from the environment) has no process
//!   here: its column reads "–".

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use fencelock_conformance::harness;

use crate::backends::etcd::EtcdBench;
use crate::backends::postgres::PgBench;
use crate::backends::redis::RedisBench;
use crate::cycle::{Cycle, Role};
use crate::error::{BenchError, Result};
use crate::hold::cpu_secs;
use crate::params::CostArgs;
use crate::peers;
use crate::report::num as per_sec;

/// Redis targets (issue 20): server CPU per uncontended `Locker` cycle, in µs.
pub const REDIS_SERVER_US: f64 = 11.0;
/// Client CPU per `Locker` cycle, in µs.
pub const REDIS_CLIENT_US: f64 = 10.0;
/// 64-task throughput of ours as a share of rslock's.
pub const REDIS_VS_RSLOCK: f64 = 0.75;

/// One run of one mode.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Run {
    /// Completed cycles.
    pub cycles: u64,
    /// Wall time of the run, in seconds.
    pub secs: f64,
    /// Client CPU (user + system) over the run, in seconds.
    pub client_cpu_secs: f64,
    /// Server CPU over the run, in seconds (`None`: the server is not a process of ours).
    pub server_cpu_secs: Option<f64>,
}

impl Run {
    /// Cycles per second.
    pub fn per_sec(&self) -> f64 {
        self.cycles as f64 / self.secs.max(f64::MIN_POSITIVE)
    }

    /// Client CPU per cycle, in µs.
    pub fn client_us(&self) -> f64 {
        per_cycle(self.client_cpu_secs, self.cycles)
    }

    /// Server CPU per cycle, in µs.
    pub fn server_us(&self) -> Option<f64> {
        self.server_cpu_secs.map(|s| per_cycle(s, self.cycles))
    }
}

fn per_cycle(secs: f64, cycles: u64) -> f64 {
    if cycles == 0 {
        f64::NAN
    } else {
        secs * 1e6 / cycles as f64
    }
}

/// Every run of one mode, in the order they ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mode {
    /// Row label.
    pub label: String,
    /// What it is (`Ours`, `OursStore`, `Raw`, `Peer`).
    pub role: Role,
    /// One per round.
    pub runs: Vec<Run>,
}

impl Mode {
    /// The median over the rounds of `metric` (NaN when nothing was measured).
    pub fn median(&self, metric: impl Fn(&Run) -> Option<f64>) -> f64 {
        let mut values: Vec<f64> = self.runs.iter().filter_map(metric).collect();
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return f64::NAN;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        if values.len() % 2 == 1 {
            values[mid]
        } else {
            f64::midpoint(values[mid - 1], values[mid])
        }
    }

    /// Median cycles per second.
    pub fn per_sec(&self) -> f64 {
        self.median(|r| Some(r.per_sec()))
    }

    /// Median client CPU per cycle, µs.
    pub fn client_us(&self) -> f64 {
        self.median(|r| Some(r.client_us()))
    }

    /// Median server CPU per cycle, µs.
    pub fn server_us(&self) -> f64 {
        self.median(Run::server_us)
    }
}

/// The cost section of one backend.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Concurrent tasks (each on its own name).
    pub tasks: usize,
    /// Length of each run, in seconds.
    pub secs: f64,
    /// Which processes the server CPU covers.
    pub server_processes: String,
    /// Each mode, with its runs.
    pub modes: Vec<Mode>,
}

impl Cost {
    /// The first mode with `role`.
    pub fn mode(&self, role: Role) -> Option<&Mode> {
        self.modes.iter().find(|m| m.role == role)
    }
}

/// What a mode runs.
pub enum Subject {
    /// Cycles in this process.
    InProcess(Cycle),
    /// The rslock peer's `throughput` command, in a child process.
    Rslock {
        /// The peer's binary.
        program: PathBuf,
        /// The Redis URL.
        url: String,
    },
}

/// A mode to measure.
pub struct Candidate {
    /// Row label.
    pub label: String,
    /// What it is.
    pub role: Role,
    /// What it runs.
    pub subject: Subject,
}

impl Candidate {
    /// A mode that runs `cycle` in this process.
    pub fn in_process(label: impl Into<String>, role: Role, cycle: Cycle) -> Self {
        Self {
            label: label.into(),
            role,
            subject: Subject::InProcess(cycle),
        }
    }
}

/// The server's processes, whose CPU time is read from `/proc`.
#[derive(Clone, Debug, Default)]
pub struct ServerCpu {
    roots: Vec<u32>,
}

impl ServerCpu {
    /// The processes `roots` and their descendants (empty: the server is not measured).
    pub fn new(roots: impl IntoIterator<Item = u32>) -> Self {
        Self {
            roots: roots.into_iter().collect(),
        }
    }

    /// What is measured, for the report.
    pub fn describe(&self, what: &str) -> String {
        if self.roots.is_empty() {
            "not measured (the server is not a process of this run)".to_owned()
        } else {
            what.to_owned()
        }
    }

    /// CPU seconds the processes and their descendants used so far (`None`: not measured).
    pub fn secs(&self) -> Result<Option<f64>> {
        if self.roots.is_empty() {
            return Ok(None);
        }
        let tree = descendants(&self.roots)?;
        let mut nanos = 0u64;
        for pid in tree {
            nanos += process_nanos(pid);
        }
        Ok(Some(nanos as f64 / 1e9))
    }
}

/// `roots` and every process below them.
fn descendants(roots: &[u32]) -> Result<Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut tree = roots.to_vec();
    let mut i = 0;
    while i < tree.len() {
        if let Some(kids) = children.get(&tree[i]) {
            tree.extend(kids);
        }
        i += 1;
    }
    Ok(tree)
}

/// Nanoseconds on CPU of every thread of `pid` (0 for a process that is gone).
fn process_nanos(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path().join("schedstat");
            std::fs::read_to_string(path)
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Measures every candidate alone, `rounds` times in alternation (A B C A B C …), `secs`
/// each, after one short warm-up run of each.
pub async fn measure(
    candidates: &[Candidate],
    server: &ServerCpu,
    what: &str,
    tasks: usize,
    secs: f64,
    rounds: usize,
) -> Result<Cost> {
    let window = Duration::from_secs_f64(secs.max(0.01));
    for c in candidates {
        if let Subject::InProcess(cycle) = &c.subject {
            run_in_process(cycle, tasks, window.min(Duration::from_millis(200)), server).await?;
        }
    }
    let mut modes: Vec<Mode> = candidates
        .iter()
        .map(|c| Mode {
            label: c.label.clone(),
            role: c.role,
            runs: Vec::with_capacity(rounds),
        })
        .collect();
    for _ in 0..rounds.max(1) {
        for (c, mode) in candidates.iter().zip(modes.iter_mut()) {
            let run = match &c.subject {
                Subject::InProcess(cycle) => run_in_process(cycle, tasks, window, server).await?,
                Subject::Rslock { program, url } => {
                    run_rslock(program, url, tasks, window, server).await?
                }
            };
            mode.runs.push(run);
        }
    }
    Ok(Cost {
        tasks,
        secs,
        server_processes: server.describe(what),
        modes,
    })
}

/// `tasks` loops of `cycle` (each with its task's index, so each keeps one name) for `window`.
async fn run_in_process(
    cycle: &Cycle,
    tasks: usize,
    window: Duration,
    server: &ServerCpu,
) -> Result<Run> {
    let server_before = server.secs()?;
    let client_before = cpu_secs()?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (cycle, stop) = (Arc::clone(cycle), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut cycles = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    cycle(task as u64).await?;
                    cycles += 1;
                }
                Ok::<_, BenchError>(cycles)
            })
        })
        .collect();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let mut cycles = 0;
    for handle in handles {
        cycles += handle.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let client_cpu_secs = cpu_secs()? - client_before;
    let server_after = server.secs()?;
    Ok(Run {
        cycles,
        secs,
        client_cpu_secs,
        server_cpu_secs: server_before.zip(server_after).map(|(b, a)| a - b),
    })
}

/// What the rslock peer's `throughput` command prints last.
#[derive(Deserialize)]
struct PeerRun {
    cycles: u64,
    elapsed_secs: f64,
    cpu_secs: f64,
}

/// The rslock peer's `throughput` command: the server is read when the peer says it is warmed
/// up and again once it reported.
async fn run_rslock(
    program: &Path,
    url: &str,
    tasks: usize,
    window: Duration,
    server: &ServerCpu,
) -> Result<Run> {
    let mut child = tokio::process::Command::new(program)
        .args(["throughput", "--url", url, "--tasks", &tasks.to_string()])
        .args(["--secs", &window.as_secs_f64().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BenchError::from(e).context("starting the rslock peer"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::new("the rslock peer has no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut server_before = None;
    let mut report = None;
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "ready" {
            server_before = server.secs()?;
        } else if !line.trim().is_empty() {
            report = Some(line);
            break;
        }
    }
    let server_after = server.secs()?;
    let status = child.wait().await?;
    let report = match report {
        Some(report) if status.success() => report,
        _ => {
            return Err(BenchError::new(format!(
                "the rslock peer's throughput run failed ({status})"
            )));
        }
    };
    let run: PeerRun = serde_json::from_str(&report)
        .map_err(|e| BenchError::from(e).context("reading the rslock peer's JSON"))?;
    Ok(Run {
        cycles: run.cycles,
        secs: run.elapsed_secs,
        client_cpu_secs: run.cpu_secs,
        server_cpu_secs: server_before.zip(server_after).map(|(b, a)| a - b),
    })
}

/// The modes measured on Redis: `Locker`, the store alone, the raw floor, and rslock when its
/// peer is built.
pub fn redis_candidates(bench: &RedisBench, url: &str, rslock: Option<&Path>) -> Vec<Candidate> {
    let mut out = vec![
        Candidate::in_process("fencelock `Locker`", Role::Ours, bench.ours("cost")),
        Candidate::in_process(
            "fencelock store (`try_acquire` + `release`)",
            Role::OursStore,
            bench.ours_store("cost"),
        ),
        Candidate::in_process("raw `SET NX PX` + `DEL`", Role::Raw, bench.raw("cost")),
    ];
    if let Some(program) = rslock {
        out.push(Candidate {
            label: "rslock 0.10 `lock` + `unlock`".into(),
            role: Role::Peer,
            subject: Subject::Rslock {
                program: program.to_path_buf(),
                url: url.to_owned(),
            },
        });
    }
    out
}

/// `Locker`, the store alone and the raw floor of a backend bench.
fn ours_store_raw(ours: Cycle, store: Cycle, raw: (&str, Cycle)) -> Vec<Candidate> {
    vec![
        Candidate::in_process("fencelock `Locker`", Role::Ours, ours),
        Candidate::in_process(
            "fencelock store (`try_acquire` + `release`)",
            Role::OursStore,
            store,
        ),
        Candidate::in_process(raw.0, Role::Raw, raw.1),
    ]
}

/// Label of the PostgreSQL row of the store on named prepared statements.
pub const PG_PREPARED: &str = "fencelock store, named prepared statements";

/// The modes measured on PostgreSQL (the pooled store), and the store on named prepared
/// statements when the bench has it (a direct connection): the difference from the store's
/// row is what parsing and planning the inline statements costs the server.
pub fn postgres_candidates(bench: &PgBench) -> Vec<Candidate> {
    let mut out = ours_store_raw(
        bench.ours("cost"),
        bench.ours_store("cost"),
        ("raw: the store's SQL by hand", bench.raw("cost")),
    );
    if let Some(prepared) = bench.ours_prepared("cost-prepared") {
        out.push(Candidate::in_process(
            PG_PREPARED,
            Role::Reference,
            prepared,
        ));
    }
    out
}

/// Label of the etcd row of the store's two txns by hand.
pub const ETCD_TXNS: &str = "the store's two txns by hand (pre-granted lease)";

/// The modes measured on etcd, and the store's own two txns issued by hand on the raw floor's
/// lease: between the raw floor and it is what the shape of the store's txns costs the
/// server, between it and the store what the store does around them (its leases).
pub fn etcd_candidates(bench: &EtcdBench) -> Vec<Candidate> {
    let mut out = ours_store_raw(
        bench.ours("cost"),
        bench.ours_store("cost"),
        (
            "raw: put-if-absent txn + delete (pre-granted lease)",
            bench.raw("cost"),
        ),
    );
    out.push(Candidate::in_process(
        ETCD_TXNS,
        Role::Reference,
        bench.store_txns("cost"),
    ));
    out
}

/// What the server CPU covers, per backend.
pub const REDIS_PROCESSES: &str = "the redis-server process (all its threads)";
/// See [`REDIS_PROCESSES`].
pub const POSTGRES_PROCESSES: &str = "the postmaster and every backend and helper process below it";
/// See [`REDIS_PROCESSES`].
pub const ETCD_PROCESSES: &str = "every etcd member process";

/// The `cost` subcommand: starts each backend's server, measures, and returns the section.
pub async fn only(args: &CostArgs) -> Result<String> {
    let runs = |b: &str| args.backends.iter().any(|x| x.trim() == b);
    let (tasks, secs, rounds) = (args.tasks, args.secs, args.rounds);
    let mut results = Vec::new();
    if runs("redis") {
        let rslock = if args.no_peers {
            None
        } else {
            Some(peers::build_rslock(args.peer_target_dir.as_deref()).await?)
        };
        let target = harness::redis_url_or_start().await?;
        let bench = RedisBench::connect(target.url()).await?;
        let server = ServerCpu::new(target.server().and_then(|s| s.pid()));
        let candidates = redis_candidates(&bench, target.url(), rslock.as_deref());
        let cost = measure(&candidates, &server, REDIS_PROCESSES, tasks, secs, rounds).await?;
        results.push(("redis", bench.version().await?, cost));
    }
    if runs("postgres") {
        let target = harness::postgres_url_or_start().await?;
        let bench = PgBench::connect(target.url(), crate::run::PG_POOL).await?;
        let server = ServerCpu::new(target.server().and_then(|s| s.pid()));
        let candidates = postgres_candidates(&bench);
        let cost = measure(
            &candidates,
            &server,
            POSTGRES_PROCESSES,
            tasks,
            secs,
            rounds,
        )
        .await?;
        results.push(("postgres", bench.version().await?, cost));
    }
    if runs("etcd") {
        let target = harness::etcd_endpoints_or_start().await?;
        let bench = EtcdBench::connect(target.endpoints()).await?;
        let server = ServerCpu::new(
            target
                .server()
                .into_iter()
                .flat_map(|c| c.members().iter().filter_map(|m| m.pid())),
        );
        let candidates = etcd_candidates(&bench);
        let cost = measure(&candidates, &server, ETCD_PROCESSES, tasks, secs, rounds).await?;
        results.push(("etcd", bench.version().await?, cost));
        bench.close().await?;
    }
    if let Some(path) = &args.json {
        let json: Vec<_> = results.iter().map(|(k, s, c)| (k, s, c)).collect();
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Cost per cycle
"
    );
    let targets: Vec<CostTarget> = results
        .iter()
        .filter(|(key, _, _)| *key == "redis")
        .flat_map(|(_, _, cost)| redis_targets(cost))
        .collect();
    if !targets.is_empty() {
        let _ = writeln!(md, "| target | goal | measured | |\n|---|---|---|---|");
        for (what, goal, measured, met) in &targets {
            let mark = match met {
                Some(true) => "**met**",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let _ = writeln!(md, "| {what} | {goal} | {measured} | {mark} |");
        }
        let _ = writeln!(md);
    }
    for (key, server, cost) in &results {
        render(&mut md, crate::report::title(key), server, cost);
    }
    Ok(md)
}

fn us(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1} µs")
    } else {
        "–".to_owned()
    }
}

fn range(mode: &Mode, metric: impl Fn(&Run) -> Option<f64>, unit: fn(f64) -> String) -> String {
    let values: Vec<f64> = mode
        .runs
        .iter()
        .filter_map(&metric)
        .filter(|v| v.is_finite())
        .collect();
    let (Some(lo), Some(hi)) = (
        values.iter().copied().reduce(f64::min),
        values.iter().copied().reduce(f64::max),
    ) else {
        return "–".to_owned();
    };
    format!("{} ({}–{})", unit(mode.median(metric)), unit(lo), unit(hi))
}

fn us_bare(v: f64) -> String {
    format!("{v:.1}")
}

/// A target of this section: (what, goal, measured, met).
pub type CostTarget = (String, String, String, Option<bool>);

/// The Redis targets, evaluated on `cost` (ours through `Locker` vs rslock).
pub fn redis_targets(cost: &Cost) -> Vec<CostTarget> {
    let Some(ours) = cost.mode(Role::Ours) else {
        return Vec::new();
    };
    let server = ours.server_us();
    let client = ours.client_us();
    let mut out = vec![
        (
            "Redis server CPU per `Locker` cycle (64 tasks)".to_owned(),
            format!("≤ {REDIS_SERVER_US:.0} µs"),
            us(server),
            server.is_finite().then_some(server <= REDIS_SERVER_US),
        ),
        (
            "client CPU per `Locker` cycle on Redis (64 tasks)".to_owned(),
            format!("≤ {REDIS_CLIENT_US:.0} µs"),
            us(client),
            client.is_finite().then_some(client <= REDIS_CLIENT_US),
        ),
    ];
    let vs = cost.mode(Role::Peer).map(|rslock| {
        let r = ours.per_sec() / rslock.per_sec();
        (
            format!(
                "{:.2}× ({} vs {} cycles/s)",
                r,
                per_sec(ours.per_sec()),
                per_sec(rslock.per_sec())
            ),
            Some(r >= REDIS_VS_RSLOCK),
        )
    });
    let (measured, met) = vs.unwrap_or_else(|| ("rslock skipped in this run".to_owned(), None));
    out.push((
        "Redis 64-task throughput, `Locker` vs rslock".to_owned(),
        format!("≥ {REDIS_VS_RSLOCK:.2}×"),
        measured,
        met,
    ));
    out
}

/// What costs the server most on the backend titled `title`, named from this run's figures
/// (PostgreSQL and etcd; Redis has its targets' notes).
fn biggest_cost(title: &str, cost: &Cost) -> Option<String> {
    match title {
        "PostgreSQL" => crate::notes::cost_postgres(cost),
        "etcd" => crate::notes::cost_etcd(cost),
        _ => None,
    }
}

/// The section of one backend: the medians with their ranges, what costs most (PostgreSQL,
/// etcd), then every run in the order it ran.
pub fn render(md: &mut String, title: &str, server: &str, cost: &Cost) {
    let _ = writeln!(md, "### {title} ({server})\n");
    let _ = writeln!(
        md,
        "{} tasks on {} names, each mode alone for {} s per round, rounds alternating. Server \
         CPU: {}. Median (lowest–highest) over the rounds:\n",
        cost.tasks, cost.tasks, cost.secs, cost.server_processes
    );
    let _ = writeln!(
        md,
        "| cycle (acquire + release) | cycles/s | client CPU per cycle | server CPU per cycle |\n|---|---:|---:|---:|"
    );
    for mode in &cost.modes {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            mode.label,
            range(mode, |r| Some(r.per_sec()), per_sec),
            range(mode, |r| Some(r.client_us()), us_bare),
            range(mode, Run::server_us, us_bare),
        );
    }
    let _ = writeln!(md, "\n(CPU per cycle in µs.)");
    if let Some(note) = biggest_cost(title, cost) {
        let _ = writeln!(md, "\n{note}");
    }
    let _ = writeln!(md, "\nEvery run, in the order they ran:\n");
    let _ = writeln!(
        md,
        "| round | mode | cycles/s | client µs | server µs |\n|---:|---|---:|---:|---:|"
    );
    let rounds = cost.modes.iter().map(|m| m.runs.len()).max().unwrap_or(0);
    for round in 0..rounds {
        for mode in &cost.modes {
            if let Some(run) = mode.runs.get(round) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    round + 1,
                    mode.label,
                    per_sec(run.per_sec()),
                    us_bare(run.client_us()),
                    run.server_us().map_or_else(|| "–".to_owned(), us_bare),
                );
            }
        }
    }
    let _ = writeln!(md);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cycles: u64, client: f64, server: Option<f64>) -> Run {
        Run {
            cycles,
            secs: 1.0,
            client_cpu_secs: client,
            server_cpu_secs: server,
        }
    }

    #[test]
    fn per_cycle_figures_are_medians_over_rounds_and_a_missing_server_reads_as_a_dash() {
        let mode = Mode {
            label: "m".into(),
            role: Role::Ours,
            runs: vec![
                run(1_000, 0.010, Some(0.020)),
                run(2_000, 0.010, None),
                run(4_000, 0.020, Some(0.016)),
            ],
        };
        assert_eq!(mode.per_sec(), 2_000.0);
        assert!((mode.client_us() - 5.0).abs() < 1e-9);
        // Two server readings: 20 µs and 4 µs per cycle.
        assert!((mode.server_us() - 12.0).abs() < 1e-9);
        let mut md = String::new();
        render(
            &mut md,
            "T",
            "S",
            &Cost {
                tasks: 64,
                secs: 1.0,
                server_processes: "p".into(),
                modes: vec![mode],
            },
        );
        assert!(md.contains("| 2 | m | 2,000 | 5.0 | – |"), "{md}");
    }

    #[test]
    fn postgres_and_etcd_name_their_biggest_cost_from_the_run_and_only_with_its_row() {
        let mode = |label: &str, role, server: f64| Mode {
            label: label.into(),
            role,
            runs: vec![run(1_000, 0.05, Some(server))],
        };
        let cost = |extra: Option<Mode>| Cost {
            tasks: 64,
            secs: 1.0,
            server_processes: "p".into(),
            modes: [
                Some(mode("ours", Role::Ours, 0.30)),
                Some(mode("store", Role::OursStore, 0.28)),
                Some(mode("raw", Role::Raw, 0.14)),
                extra,
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        let pg = cost(Some(mode(PG_PREPARED, Role::Reference, 0.07)));
        let note = biggest_cost("PostgreSQL", &pg).unwrap_or_default();
        // 280 µs inline, 70 µs prepared: three quarters is parsing and planning.
        assert!(
            note.contains("70 µs per cycle instead of 280 µs: 75 %"),
            "{note}"
        );
        let etcd = cost(Some(mode(ETCD_TXNS, Role::Reference, 0.25)));
        let note = biggest_cost("etcd", &etcd).unwrap_or_default();
        assert!(
            note.contains("by hand on the same pre-granted lease 250 µs"),
            "{note}"
        );
        let mut md = String::new();
        render(&mut md, "etcd", "S", &etcd);
        assert!(md.contains("**Biggest cost"), "{md}");
        for title in ["PostgreSQL", "etcd", "Redis"] {
            assert_eq!(biggest_cost(title, &cost(None)), None, "{title}");
        }
    }

    #[test]
    fn this_process_and_its_threads_are_measured() -> Result<()> {
        let cpu = ServerCpu::new([std::process::id()]);
        let before = cpu.secs()?.unwrap_or(f64::NAN);
        // Burn 50 ms of CPU (however long that takes on a busy machine): schedstat must see
        // most of it.
        let rusage_before = cpu_secs()?;
        let mut x = 0u64;
        while cpu_secs()? - rusage_before < 0.05 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let after = cpu.secs()?.unwrap_or(f64::NAN);
        assert!(x > 0);
        assert!(after - before >= 0.04, "{before} → {after}");
        assert_eq!(ServerCpu::default().secs()?, None);
        Ok(())
    }
}
