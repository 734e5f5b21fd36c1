//! `fencelock-bench`: see the crate README.

use clap::Parser;
use fencelock_bench::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fencelock-bench: cannot start the tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The benchmark runs as a task on a runtime worker, where servers' users run their lock
    // calls: a future driven by `block_on` on the main thread is woken through a thread
    // park/unpark after every reply, which costs tens of µs per round trip on these machines.
    let work = runtime.spawn(async move {
        match cli.command {
            Some(Command::Hold(args)) => {
                let report = fencelock_bench::hold::hold(&args).await?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(None)
            }
            Some(Command::Cost(args)) => {
                print!("{}", fencelock_bench::cost::only(&args).await?);
                Ok(None)
            }
            None => fencelock_bench::bench(cli.params).await.map(Some),
        }
    });
    let result = runtime.block_on(work).unwrap_or_else(|e| {
        Err(fencelock_bench::BenchError::new(format!(
            "the benchmark task failed: {e}"
        )))
    });
    match result {
        Ok(Some(path)) => {
            eprintln!("wrote {}", path.display());
            std::process::ExitCode::SUCCESS
        }
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let e: fencelock_bench::BenchError = e;
            eprintln!("fencelock-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
