#![doc = include_str!("../README.md")]

pub mod backends;
pub mod cost;
pub mod counting;
pub mod cycle;
pub mod error;
pub mod handoff;
pub mod hold;
pub mod machine;
pub mod notes;
pub mod params;
pub mod peers;
pub mod pg_pooler;
pub mod plots;
pub mod redis_cluster;
pub mod report;
pub mod run;
pub mod stats;
pub mod throughput;

pub use error::{BenchError, Result};
pub use params::{Cli, Command, CostArgs, HoldArgs, Params};

/// Runs the benchmark and writes the report where `params` says, with the run's data next to
/// it (the same path with a `.json` extension); returns the report's path. With
/// [`Params::render`], rewrites the report from such saved data instead of measuring.
///
/// # Errors
/// When a server cannot be started, a request fails, a peer cannot be prepared or run, the
/// saved data cannot be read, or the report cannot be written.
pub async fn bench(params: Params) -> Result<std::path::PathBuf> {
    let params = params.effective();
    let output = match &params.output {
        Some(path) => path.clone(),
        None if params.smoke => std::env::temp_dir().join("fencelock-BENCHMARKS-smoke.md"),
        None => peers::repo_root().join("BENCHMARKS.md"),
    };
    let report = match &params.render {
        Some(saved) => {
            let json = read(saved)?;
            serde_json::from_str(&json).map_err(|e| {
                BenchError::from(e).context(format!("reading the run saved in {}", saved.display()))
            })?
        }
        None => {
            let report = run::run(&params).await?;
            write(
                &output.with_extension("json"),
                &serde_json::to_string_pretty(&report)?,
            )?;
            report
        }
    };
    write(&output, &report::render(&report))?;
    plots::write_all(&report, &output)?;
    Ok(output)
}

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| BenchError::from(e).context(format!("reading {}", path.display())))
}

fn write(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| BenchError::from(e).context(format!("writing {}", path.display())))
}
