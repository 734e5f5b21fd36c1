//! The program `run` starts: spawning it, passing signals on, stopping it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp, tcgetpgrp};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use crate::exit::{Failure, status};

/// How often a process group is looked at while it shuts down (there is no event for it).
const GROUP_POLL: Duration = Duration::from_millis(50);

/// A running program.
pub(crate) struct Program {
    child: Child,
    pid: Pid,
    /// Whether the program leads its own process group (everything but interactive use).
    own_group: bool,
}

/// Whether fencelock runs in the foreground of a terminal: then the terminal's keyboard
/// signals (Ctrl-C, Ctrl-\) already reach the whole foreground process group.
fn in_terminal_foreground() -> bool {
    tcgetpgrp(io::stdin()).is_ok_and(|fg| fg == getpgrp())
}

impl Program {
    /// Starts `argv` with `env` added to the environment.
    ///
    /// In the foreground of a terminal the program stays in fencelock's process group, so it
    /// can read the terminal; otherwise (cron, CI, services) it gets a process group of its
    /// own, and signals go to the whole group, helpers it started included.
    ///
    /// The program is started tethered (see [`crate::tether`]): it dies with fencelock. The
    /// tether reports a program it cannot run on stderr and exits with
    /// [`status::NOT_FOUND`] or [`status::CANNOT_EXECUTE`], as a shell would.
    ///
    /// # Errors
    /// [`status::NOT_FOUND`] or [`status::CANNOT_EXECUTE`] with the reason, where the
    /// program had to be started untethered.
    pub(crate) fn spawn(argv: &[OsString], env: &[(&str, String)]) -> Result<Self, Failure> {
        let Some((program, args)) = argv.split_first() else {
            return Err(Failure::usage("no program given after `--`"));
        };
        let own_group = !in_terminal_foreground();
        let prepare = |mut command: Command| {
            command.envs(env.iter().map(|(k, v)| (k, v)));
            if own_group {
                command.process_group(0);
            }
            command
        };
        #[cfg(target_os = "linux")]
        let tethered = prepare(crate::tether::command(argv)).spawn();
        #[cfg(not(target_os = "linux"))]
        let tethered: io::Result<Child> = Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "parent-death signals are Linux-only",
        ));
        let child = match tethered {
            Ok(child) => child,
            Err(e) => {
                // Without /proc (an odd chroot) the program can still run, but untethered.
                eprintln!(
                    "fencelock: warning: cannot start the program tethered to fencelock \
                     (/proc/self/exe: {e}); if fencelock is killed with SIGKILL, the program \
                     keeps running without the lock"
                );
                let mut command = Command::new(program);
                command.args(args);
                prepare(command)
                    .spawn()
                    .map_err(|e| cannot_run(program, &e))?
            }
        };
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| Failure::new(status::INTERNAL, "the program has no process id"))?;
        Ok(Self {
            child,
            pid,
            own_group,
        })
    }

    /// Waits for the program to exit.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Passes a signal fencelock received on to the program.
    pub(crate) fn forward(&self, signal: Signal) {
        // In a terminal's foreground group, Ctrl-C and Ctrl-\ reached the program already;
        // sending them again would look like a second keypress.
        let from_keyboard = matches!(signal, Signal::SIGINT | Signal::SIGQUIT);
        if !self.own_group && from_keyboard && in_terminal_foreground() {
            return;
        }
        self.send(signal);
    }

    fn send(&self, signal: Signal) {
        // ESRCH (already gone) is the only expected failure, and harmless.
        let _ = if self.own_group {
            killpg(self.pid, signal)
        } else {
            kill(self.pid, signal)
        };
    }

    fn group_alive(&self) -> bool {
        self.own_group && killpg(self.pid, None).is_ok()
    }

    /// SIGTERM now, SIGKILL after `grace` if the program (or, with its own group, anything in
    /// it) is still running; then waits for the exit.
    pub(crate) async fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        let until = Instant::now() + grace;
        self.send(Signal::SIGTERM);
        let exited = match timeout(grace, self.child.wait()).await {
            Ok(result) => Some(result?),
            Err(_) => None,
        };
        while exited.is_some() && self.group_alive() && Instant::now() < until {
            sleep(GROUP_POLL).await;
        }
        if exited.is_none() || self.group_alive() {
            self.send(Signal::SIGKILL);
        }
        match exited {
            Some(status) => Ok(status),
            None => self.child.wait().await,
        }
    }
}

/// The failure for a program that could not be started: [`status::NOT_FOUND`] or
/// [`status::CANNOT_EXECUTE`] with the reason.
pub(crate) fn cannot_run(program: &OsStr, error: &io::Error) -> Failure {
    let code = if error.kind() == io::ErrorKind::NotFound {
        status::NOT_FOUND
    } else {
        status::CANNOT_EXECUTE
    };
    let shown = program.to_string_lossy();
    Failure::new(code, format!("cannot run `{shown}`: {error}"))
}

/// The exit status that mirrors the program's: its code, or 128 + the signal that killed it.
pub(crate) fn mirror(exit: ExitStatus) -> u8 {
    if let Some(code) = exit.code() {
        return u8::try_from(code & 0xff).unwrap_or(status::INTERNAL);
    }
    let signal = exit.signal().unwrap_or(0);
    u8::try_from(i32::from(status::SIGNAL_BASE) + signal).unwrap_or(status::INTERNAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_codes_and_signals() {
        assert_eq!(mirror(ExitStatus::from_raw(0)), 0);
        assert_eq!(mirror(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(mirror(ExitStatus::from_raw(255 << 8)), 255);
        assert_eq!(mirror(ExitStatus::from_raw(Signal::SIGTERM as i32)), 143);
        assert_eq!(mirror(ExitStatus::from_raw(Signal::SIGKILL as i32)), 137);
    }
}
