//! `fencelock release --force`: break a lock, for operators.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::args::ReleaseArgs;
use crate::duration::short;
use crate::exit::{Failure, status};
use crate::store::Target;

pub(crate) async fn release(args: ReleaseArgs) -> Result<ExitCode, Failure> {
    let target = Target::from_args(&args.store)?;
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "refusing to break `{}` without confirmation: stdin is not a terminal; add --yes if you mean it",
            args.name
        )));
    }
    let store = target.connect().await?;
    if !args.yes {
        let holder = match target.bounded("inspect", store.inspect(&args.name)).await? {
            Some(info) => format!(
                "held by token {} ({} left)",
                info.token,
                short(info.remaining)
            ),
            None => {
                println!("`{}` is not held; nothing to break", args.name);
                return Ok(ExitCode::SUCCESS);
            }
        };
        let question = format!(
            "Break `{}`, {holder}? Its holder keeps running until it notices; only writes fenced by token are safe. [y/N] ",
            args.name
        );
        if !confirm(&question)? {
            eprintln!("fencelock: not broken");
            return Ok(ExitCode::from(status::WARNINGS_OR_DECLINED));
        }
    }
    match target
        .bounded("force release", store.force_release(&args.name))
        .await?
    {
        Some(token) => println!(
            "broke `{}` (token {token}); the next grant gets a greater token",
            args.name
        ),
        None => println!("`{}` was not held; nothing to break", args.name),
    }
    Ok(ExitCode::SUCCESS)
}

fn confirm(question: &str) -> Result<bool, Failure> {
    let io_failure =
        |e: std::io::Error| Failure::new(status::INTERNAL, format!("cannot read the answer: {e}"));
    let mut err = std::io::stderr().lock();
    write!(err, "{question}").map_err(io_failure)?;
    err.flush().map_err(io_failure)?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(io_failure)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
