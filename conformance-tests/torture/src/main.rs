//! `fencelock-torture`: run the fault-injection scenarios and write `docs/RELIABILITY.md`.
//!
//! ```text
//! fencelock-torture [--mode short|long] [--seed N] [--write-doc PATH] [--mutations]
//! fencelock-torture --only SCENARIO/BACKEND [--oracle gate|pg-table] [--control] [--seed N] [--rounds N] [--workers N] [--timeline FILE.svg]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use fencelock_torture::mutations::{self, Mutation};
use fencelock_torture::report::{Results, render};
use fencelock_torture::suite::{self, Mode};
use fencelock_torture::timeline;
use fencelock_torture::{Backend, Oracle, RunSpec, Scenario, servers};

struct Args {
    mode: Mode,
    seed: u64,
    write_doc: Option<PathBuf>,
    mutations: bool,
    only: Option<(Scenario, Backend)>,
    oracle: Oracle,
    control: bool,
    rounds: Option<u32>,
    workers: u32,
    timeline: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        mode: Mode::Short,
        seed: 1,
        write_doc: None,
        mutations: false,
        only: None,
        oracle: Oracle::Gate,
        control: false,
        rounds: None,
        workers: suite::WORKERS,
        timeline: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--mode" => {
                args.mode = match value()?.as_str() {
                    "short" => Mode::Short,
                    "long" => Mode::Long,
                    other => return Err(format!("unknown mode `{other}` (short or long)")),
                }
            }
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--rounds" => {
                args.rounds = Some(value()?.parse().map_err(|e| format!("--rounds: {e}"))?)
            }
            "--workers" => {
                args.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?
            }
            "--write-doc" => args.write_doc = Some(value()?.into()),
            "--timeline" => args.timeline = Some(value()?.into()),
            "--mutations" => args.mutations = true,
            "--control" => args.control = true,
            "--oracle" => {
                args.oracle = match value()?.as_str() {
                    "gate" => Oracle::Gate,
                    "pg-table" => Oracle::Postgres,
                    other => return Err(format!("unknown oracle `{other}` (gate or pg-table)")),
                }
            }
            "--only" => {
                let v = value()?;
                let (s, b) = v.split_once('/').ok_or("--only takes SCENARIO/BACKEND")?;
                let scenario =
                    Scenario::parse(s).ok_or_else(|| format!("unknown scenario `{s}`"))?;
                let backend = Backend::parse(b).ok_or_else(|| format!("unknown backend `{b}`"))?;
                args.only = Some((scenario, backend));
            }
            "-h" | "--help" => {
                return Err("usage: fencelock-torture [--mode short|long] [--seed N] [--write-doc PATH] [--mutations] | --only SCENARIO/BACKEND [--oracle gate|pg-table] [--control] [--seed N] [--rounds N] [--workers N] [--timeline FILE.svg]".into());
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fencelock-torture: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let exe = me.with_file_name("fencelock-torture-worker");
    check_worker_fresh(&me, &exe)?;
    let mutation = mutations::from_env()?;
    if let Some((scenario, backend)) = args.only {
        let spec = RunSpec {
            scenario,
            backend,
            oracle: args.oracle,
            fenced: !args.control,
            mutation,
            seed: args.seed,
            rounds: args.rounds.unwrap_or(args.mode.rounds()),
            workers: args.workers,
        };
        let outcomes = suite::run_all(&[spec], &exe).await?;
        if let (Some(path), Some(outcome)) = (&args.timeline, outcomes.first()) {
            let svg = timeline::render_run(outcome)?;
            std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
        // A control run or a planted bug is expected to break invariants.
        let expect_clean = !args.control && mutation.is_none();
        return Ok(outcomes.iter().all(|o| o.is_clean() == expect_clean));
    }
    let started = Instant::now();
    let fenced = suite::run_all(&suite::fenced_runs(args.mode, args.seed), &exe).await?;
    let control = suite::run_all(&suite::control_runs(args.mode, args.seed), &exe).await?;
    let mutated = if args.mutations {
        mutations::allowed(Some(Mutation::FenceSkip))?;
        suite::mutation_runs(args.seed)
    } else {
        Vec::new()
    };
    let mutated = suite::run_all(&mutated, &exe).await?;
    let ok = fenced.iter().all(|o| o.is_clean())
        && control.iter().all(|o| !o.report.is_clean())
        && mutated.iter().all(|o| !o.report.is_clean());
    if let Some(path) = &args.write_doc {
        let profile = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        let features = if args.mutations {
            " --features mutations"
        } else {
            ""
        };
        let mut command = format!(
            "cargo build{profile} -p fencelock-torture --bins{features} && cargo run{profile} -p fencelock-torture{features}"
        );
        command.push_str(&format!(
            " -- --mode {} --seed {}",
            args.mode.name(),
            args.seed
        ));
        if args.mutations {
            command.push_str(" --mutations");
        }
        command.push_str(&format!(" --write-doc {}", path.display()));
        let doc = render(&Results {
            command,
            seed: args.seed,
            versions: servers::versions(),
            fenced: &fenced,
            control: &control,
            mutations: &mutated,
            elapsed: started.elapsed(),
        });
        std::fs::write(path, doc).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
        let pictures = path
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join(timeline::DIR);
        let n = timeline::write_all(fenced.iter().chain(&control), &pictures)?;
        println!("wrote {n} timelines into {}", pictures.display());
    }
    println!(
        "{} in {:.0} s",
        if ok {
            "all invariants held; control and mutations were caught"
        } else {
            "FAILED"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(ok)
}

/// `cargo run` rebuilds only this binary: a worker binary older than it was built from older
/// code (or without the `mutations` feature), and would make the run report on the wrong code.
/// Binaries linked within 30 s of each other count as one build.
fn check_worker_fresh(me: &std::path::Path, worker: &std::path::Path) -> Result<(), String> {
    let modified = |p: &std::path::Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    // Both binaries of one `cargo build --bins` link in either order, milliseconds apart; a
    // worker left over from an earlier build is older by at least a compile.
    let same_build = std::time::Duration::from_secs(30);
    if modified(worker)? + same_build < modified(me)? {
        return Err(format!(
            "{} is older than {}: build both first, with the same features: cargo build -p fencelock-torture --bins [--features mutations]",
            worker.display(),
            me.display()
        ));
    }
    Ok(())
}
