//! The program dies with fencelock, even when fencelock is killed with SIGKILL (Linux).
//!
//! While the program runs, fencelock renews the lease and stops the program if the lease is
//! lost. If fencelock is killed with SIGKILL (the OOM killer, `kill -9`, a service manager's
//! last resort), neither happens any more: the lease runs out at its TTL and the program would
//! go on working without the lock. Failing closed means the program must not outlive
//! fencelock.
//!
//! On Linux, `run` therefore starts the program through a second copy of itself
//! (`/proc/self/exe`, which names this binary even if it was replaced on disk since): that
//! copy asks the kernel to send it SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), checks
//! that its parent is still the fencelock that started it (it may have died in between), and
//! then replaces itself with the program. The setting survives `execve`, so the program is
//! killed the moment fencelock dies, by whatever means. Helpers the program started in its
//! process group are not reached by the kernel's signal; they are the program's to stop.
//!
//! The kernel sends the signal when the *thread* that forked the program exits. `run`
//! spawns the program from the thread that runs `block_on`, the main thread, which lives
//! until the process exits.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::unistd::{Pid, getppid};

use crate::child::cannot_run;
use crate::exit::{Failure, status};

/// The first argument that makes `fencelock` the tether instead of the command line tool.
/// Not a subcommand: it never reaches clap, help or completions.
const MARKER: &str = "__fencelock-tether";

/// The command that starts `argv` tethered to this process:
/// `/proc/self/exe __fencelock-tether <our pid> -- argv…`.
pub(crate) fn command(argv: &[OsString]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("/proc/self/exe");
    command
        .arg(MARKER)
        .arg(std::process::id().to_string())
        .arg("--")
        .args(argv);
    command
}

/// When this process was started as the tether (see [`command`]), runs it and returns the
/// exit status for an `exec` that failed; `None` for every other command line.
pub(crate) fn enter() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(MARKER)) {
        return None;
    }
    Some(match tether(args) {
        Ok(never) => match never {},
        Err(failure) => failure.report(),
    })
}

/// The tether: `<parent pid> -- program args…`. Returns only on failure.
fn tether(mut args: impl Iterator<Item = OsString>) -> Result<std::convert::Infallible, Failure> {
    let parent = args
        .next()
        .and_then(|pid| pid.to_str().and_then(|pid| pid.parse::<i32>().ok()));
    let separator = args.next();
    let program = args.next();
    let (Some(parent), Some(program)) = (parent, program) else {
        return Err(Failure::usage(format!(
            "{MARKER} is internal to `fencelock run` (usage: {MARKER} PARENT_PID -- PROGRAM [ARGS…])"
        )));
    };
    if separator.as_deref() != Some(OsStr::new("--")) {
        return Err(Failure::usage(format!(
            "{MARKER}: `--` must follow the parent's pid"
        )));
    }
    set_pdeathsig(Signal::SIGKILL).map_err(|e| {
        Failure::new(
            status::INTERNAL,
            format!("cannot ask for a parent-death signal before running the program: {e}"),
        )
    })?;
    // Asked for only now, the signal would never come if fencelock died before: then the
    // parent is someone else already, and the program must not start.
    if getppid() != Pid::from_raw(parent) {
        return Err(Failure::new(
            status::INTERNAL,
            "fencelock exited before the program started; not running it without the lock",
        ));
    }
    let error = std::process::Command::new(&program).args(args).exec();
    Err(cannot_run(&program, &error))
}
