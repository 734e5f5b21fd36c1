#![doc = include_str!("../README.md")]

pub mod backends;
pub mod counting;
pub mod cycle;
pub mod error;
pub mod handoff;
pub mod hold;
pub mod machine;
pub mod notes;
pub mod params;
pub mod peers;
pub mod report;
pub mod run;
pub mod stats;
pub mod throughput;

pub use error::{BenchError, Result};
pub use params::{Cli, Command, HoldArgs, Params};

/// Runs the benchmark and writes the report where `params` says; returns its path.
///
/// # Errors
/// When a server cannot be started, a request fails, a peer cannot be prepared or run, or the
/// report cannot be written.
pub async fn bench(params: Params) -> Result<std::path::PathBuf> {
    let params = params.effective();
    let report = run::run(&params).await?;
    let markdown = report::render(&report);
    let output = match &params.output {
        Some(path) => path.clone(),
        None if params.smoke => std::env::temp_dir().join("fencelock-BENCHMARKS-smoke.md"),
        None => peers::repo_root().join("BENCHMARKS.md"),
    };
    std::fs::write(&output, markdown)
        .map_err(|e| BenchError::from(e).context(format!("writing {}", output.display())))?;
    Ok(output)
}
