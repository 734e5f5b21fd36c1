//! Which runs make up the short (CI) and long (by hand) modes, and the mutation check.

use std::path::Path;

use crate::mutations::Mutation;
use crate::runner::{self, Oracle, RunOutcome, RunSpec};
use crate::scenario::{Backend, Scenario};

/// How much to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A couple of faults per scenario: the CI suite.
    Short,
    /// More faults per scenario and every holder fault on the PostgreSQL oracle too.
    Long,
}

impl Mode {
    /// Faults per run.
    pub fn rounds(self) -> u32 {
        match self {
            Self::Short => 2,
            Self::Long => 8,
        }
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Short => "short",
            Self::Long => "long",
        }
    }
}

/// Worker processes per run.
pub const WORKERS: u32 = 3;

fn spec(scenario: Scenario, backend: Backend, oracle: Oracle, seed: u64, rounds: u32) -> RunSpec {
    RunSpec {
        scenario,
        backend,
        oracle,
        fenced: true,
        mutation: None,
        seed,
        rounds,
        workers: WORKERS,
    }
}

/// Whether the short mode runs `scenario` on `backend`: every scenario on every backend it
/// applies to, except leader election (scenario 9), of which it runs every fault on Redis and
/// the paused leader on etcd (about 20 s), and semaphores (scenario 10), of which it runs the
/// paused permit holder on PostgreSQL (about 10 s); the long mode runs them all.
fn in_short_mode(scenario: Scenario, backend: Backend) -> bool {
    if scenario.semaphore() {
        return (scenario, backend) == (Scenario::SemaphorePause, Backend::Postgres);
    }
    !scenario.election()
        || backend == Backend::Redis
        || (scenario, backend) == (Scenario::ElectionPause, Backend::Etcd)
}

/// The fenced runs: every scenario against every backend it applies to on the in-memory
/// gate (the short mode runs every election fault on Redis and the paused leader on etcd
/// only, and of the semaphore scenarios the paused permit holder on PostgreSQL), and holder
/// faults on the PostgreSQL table too (long mode: all three; short: pause).
pub fn fenced_runs(mode: Mode, seed: u64) -> Vec<RunSpec> {
    let mut runs = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        seed.wrapping_add(n)
    };
    // Election runs, then semaphore runs, come last, so that adding them kept the other runs'
    // seeds.
    let (semaphores, others): (Vec<Scenario>, Vec<Scenario>) =
        Scenario::ALL.into_iter().partition(|s| s.semaphore());
    let (elections, locks): (Vec<Scenario>, Vec<Scenario>) =
        others.into_iter().partition(|s| s.election());
    for scenario in locks {
        for &backend in scenario.backends() {
            let rounds = if scenario.once() { 1 } else { mode.rounds() };
            runs.push(spec(scenario, backend, Oracle::Gate, next(), rounds));
        }
    }
    let pg_scenarios: &[Scenario] = match mode {
        Mode::Short => &[Scenario::HolderPause],
        Mode::Long => &[
            Scenario::HolderPause,
            Scenario::HolderStarve,
            Scenario::HolderKill,
        ],
    };
    for &scenario in pg_scenarios {
        for &backend in scenario.backends() {
            runs.push(spec(
                scenario,
                backend,
                Oracle::Postgres,
                next(),
                mode.rounds(),
            ));
        }
    }
    // Server and network faults of the PostgreSQL lock with the PostgreSQL table as the
    // fenced resource (a server of its own, untouched by the faults).
    if mode == Mode::Long {
        for scenario in [
            Scenario::ServerRestart,
            Scenario::NetStall,
            Scenario::PgFailover,
        ] {
            let rounds = if scenario.once() { 1 } else { mode.rounds() };
            runs.push(spec(
                scenario,
                Backend::Postgres,
                Oracle::Postgres,
                next(),
                rounds,
            ));
        }
    }
    for scenario in elections.into_iter().chain(semaphores) {
        for &backend in scenario.backends() {
            if mode == Mode::Long || in_short_mode(scenario, backend) {
                runs.push(spec(scenario, backend, Oracle::Gate, next(), mode.rounds()));
            }
        }
    }
    runs
}

/// The control runs: the same faults with the plain lock alone (reads and writes unfenced),
/// a paused election leader writing with its old term unfenced, and a paused permit holder
/// writing at its old place with its old token unfenced; the long mode adds the Redis Cluster
/// and Sentinel failovers and a partitioned election leader on etcd.
pub fn control_runs(mode: Mode, seed: u64) -> Vec<RunSpec> {
    let mut faults = vec![
        (Scenario::HolderPause, Backend::Redis),
        (Scenario::HolderPause, Backend::Postgres),
        (Scenario::HolderStarve, Backend::Etcd),
    ];
    if mode == Mode::Long {
        faults.push((Scenario::ClusterPrimaryKill, Backend::RedisCluster));
        faults.push((Scenario::SentinelFailover, Backend::RedisSentinel));
    }
    faults.push((Scenario::ElectionPause, Backend::Redis));
    if mode == Mode::Long {
        faults.push((Scenario::ElectionPartition, Backend::Etcd));
    }
    faults.push((Scenario::SemaphorePause, Backend::Postgres));
    faults
        .into_iter()
        .enumerate()
        .map(|(i, (scenario, backend))| RunSpec {
            fenced: false,
            ..spec(
                scenario,
                backend,
                Oracle::Gate,
                seed.wrapping_add(1000 + i as u64),
                if scenario.once() { 1 } else { mode.rounds() },
            )
        })
        .collect()
}

/// The mutation check: each planted bug against the scenarios expected to expose it.
pub fn mutation_runs(seed: u64) -> Vec<RunSpec> {
    let targets: [(Mutation, &[(Scenario, Backend)]); 5] = [
        (
            Mutation::FenceStrict,
            &[(Scenario::HolderPause, Backend::Redis)],
        ),
        (
            Mutation::FenceSkip,
            &[
                (Scenario::HolderPause, Backend::Redis),
                (Scenario::HolderStarve, Backend::Etcd),
            ],
        ),
        (
            Mutation::TokenReset,
            &[
                (Scenario::ServerRestart, Backend::Redis),
                (Scenario::ServerRestart, Backend::Postgres),
            ],
        ),
        (
            Mutation::RenewSkip,
            &[
                (Scenario::NetStall, Backend::Redis),
                (Scenario::NetStall, Backend::Etcd),
            ],
        ),
        // Not etcd: its leader looks for expired leases every 500 ms, so a grant ends up to
        // that late, which may be past even the stretched deadline.
        (
            Mutation::EarlyExpiry,
            &[
                (Scenario::NetStall, Backend::Redis),
                (Scenario::NetStall, Backend::Postgres),
                // A paused permit holder's permit outlives its grant (I7).
                (Scenario::SemaphorePause, Backend::Postgres),
            ],
        ),
    ];
    let mut runs = Vec::new();
    for (i, (mutation, list)) in targets.into_iter().enumerate() {
        for (j, &(scenario, backend)) in list.iter().enumerate() {
            runs.push(RunSpec {
                mutation: Some(mutation),
                ..spec(
                    scenario,
                    backend,
                    Oracle::Gate,
                    seed.wrapping_add(2000 + 10 * i as u64 + j as u64),
                    Mode::Short.rounds(),
                )
            });
        }
    }
    runs
}

/// Runs `specs` one after the other, printing one line per run (and, for a run that was not
/// clean, its violations, kept directory and re-run command).
///
/// # Errors
/// The first setup failure.
pub async fn run_all(specs: &[RunSpec], worker_exe: &Path) -> Result<Vec<RunOutcome>, String> {
    let mut outcomes = Vec::new();
    for spec in specs {
        let outcome = runner::run(spec, worker_exe)
            .await
            .map_err(|e| format!("{}: {e}\n  re-run: {}", spec.label(), spec.rerun_command()))?;
        print_outcome(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// One line per run, and the details of an unclean one.
pub fn print_outcome(outcome: &RunOutcome) {
    let r = &outcome.report;
    println!(
        "{:<45} {:>5.1}s writes {:>4} stale {:>3}/{} tokens {:>4} regressions {} lost {} invalid {} faults {} {}",
        outcome.spec.label(),
        outcome.elapsed.as_secs_f64(),
        r.writes_attempted,
        r.stale_accepted,
        r.stale_attempted,
        r.tokens_issued,
        r.token_regressions,
        r.lost_writes,
        r.invalid_checks,
        r.faults_injected,
        if outcome.is_clean() { "ok" } else { "VIOLATED" }
    );
    if outcome.spec.scenario.election() {
        println!("    leaders observed {}", r.leaders_observed);
    }
    if outcome.spec.scenario.semaphore() {
        println!(
            "    permits valid at once: at most {} (limit {}; {})",
            r.most_valid_permits,
            crate::scenario::PERMIT_LIMIT,
            if outcome.exclusive {
                "judged"
            } else {
                "not judged: the server lost its state"
            }
        );
    }
    if !outcome.is_clean() {
        for v in r.violations.iter().take(5) {
            println!("    {v}");
        }
        for p in &outcome.problems {
            println!("    problem: {p}");
        }
        println!(
            "    seed {}; re-run: {}",
            outcome.spec.seed,
            outcome.spec.rerun_command()
        );
        if let Some(dir) = &outcome.kept_dir {
            println!("    histories kept in {}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elections(runs: &[RunSpec]) -> Vec<(Scenario, Backend, u64)> {
        runs.iter()
            .filter(|r| r.scenario.election())
            .map(|r| (r.scenario, r.backend, r.seed))
            .collect()
    }

    #[test]
    fn the_short_mode_runs_some_election_faults_and_the_long_mode_all() {
        use Backend::{Etcd, Postgres, Redis};
        use Scenario::{ElectionKill, ElectionPartition, ElectionPause};
        let short = fenced_runs(Mode::Short, 1);
        let long = fenced_runs(Mode::Long, 1);
        let names = |runs: &[RunSpec]| -> Vec<(Scenario, Backend)> {
            elections(runs)
                .into_iter()
                .map(|(s, b, _)| (s, b))
                .collect()
        };
        assert_eq!(
            names(&short),
            [
                (ElectionPause, Redis),
                (ElectionPause, Etcd),
                (ElectionKill, Redis),
                (ElectionPartition, Redis),
            ]
        );
        assert_eq!(names(&long).len(), 9);
        // They come last, after every lock run (only the semaphore runs follow), with seeds
        // of their own.
        let first = long.iter().position(|r| r.scenario.election()).unwrap();
        assert!(
            long[first..]
                .iter()
                .all(|r| r.scenario.election() || r.scenario.semaphore())
        );
        assert_eq!(elections(&long)[0], (ElectionPause, Redis, 50));
        assert!(
            long.iter()
                .any(|r| (r.scenario, r.backend) == (ElectionPartition, Postgres))
        );
        // A paused election leader (and a paused permit holder) unfenced is a control run in
        // both modes.
        for mode in [Mode::Short, Mode::Long] {
            let control = control_runs(mode, 1);
            assert!(
                control
                    .iter()
                    .any(|r| (r.scenario, r.backend, r.fenced) == (ElectionPause, Redis, false))
            );
            assert!(control.iter().any(|r| (r.scenario, r.backend, r.fenced)
                == (Scenario::SemaphorePause, Postgres, false)));
        }
    }

    #[test]
    fn semaphore_runs_come_last_and_keep_the_other_seeds() {
        use Scenario::{SemaphorePause, SemaphoreRestart};
        let short = fenced_runs(Mode::Short, 1);
        let long = fenced_runs(Mode::Long, 1);
        let semaphores = |runs: &[RunSpec]| -> Vec<(Scenario, Backend)> {
            runs.iter()
                .filter(|r| r.scenario.semaphore())
                .map(|r| (r.scenario, r.backend))
                .collect()
        };
        assert_eq!(semaphores(&short), [(SemaphorePause, Backend::Postgres)]);
        let every: Vec<(Scenario, Backend)> = [SemaphorePause, SemaphoreRestart]
            .into_iter()
            .flat_map(|s| s.backends().iter().map(move |&b| (s, b)))
            .collect();
        assert_eq!(semaphores(&long), every);
        for runs in [&short, &long] {
            let first = runs.iter().position(|r| r.scenario.semaphore()).unwrap();
            assert!(runs[first..].iter().all(|r| r.scenario.semaphore()));
        }
        // The election runs kept their seeds (from 50 in the long mode).
        assert_eq!(
            elections(&long)[0],
            (Scenario::ElectionPause, Backend::Redis, 50)
        );
        // Every run of main before semaphores (57), then the semaphore runs.
        assert_eq!(long.len(), 57 + every.len());
    }
}
