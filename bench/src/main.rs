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
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Hold(args)) => {
                let report = fencelock_bench::hold::hold(&args).await?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(None)
            }
            None => fencelock_bench::bench(cli.params).await.map(Some),
        }
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
