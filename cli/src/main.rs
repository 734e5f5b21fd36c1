#![doc = include_str!("../README.md")]

mod args;
mod check;
mod child;
mod duration;
mod elect;
mod exit;
mod hold;
mod leader;
mod progress;
mod release;
mod run;
mod signals;
mod status;
mod store;
#[cfg(target_os = "linux")]
mod tether;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::exit::{Failure, status as code};

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    if let Some(failed) = tether::enter() {
        return failed;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return exit::clap_error(&error),
    };
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "fencelock",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return Failure::new(code::INTERNAL, format!("cannot start the runtime: {e}")).report();
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    // Background tasks (a best-effort release, a driver's reconnect loop) must not keep the
    // process alive.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

async fn dispatch(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Elect(args) => elect::elect(args).await,
        Command::Leader(args) => leader::leader(args).await,
        Command::Status(args) => status::status(args).await,
        Command::Release(args) => release::release(args).await,
        Command::Check(args) => check::check(args).await,
        Command::Completions { .. } => Ok(ExitCode::SUCCESS),
    }
}
