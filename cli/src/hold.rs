//! Holding a lock while a program runs, shared by `run` (a lock, or one permit of a semaphore
//! with `--permits`; one run) and `elect` (an election's lock, one run per term): taking the
//! lock within a bounded time while signals still end the wait, then supervising the program:
//! fencing variables in its environment, signals passed on, SIGTERM then SIGKILL when the lock
//! is lost, the lock released when the program exits. Written once so that a leader and a
//! permit holder are stopped on loss exactly as a `run` is.

use std::ffi::OsString;
use std::future::Future;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fencelock::{
    Error, LeaseInfo, LeaseStore, LockGuard, LockName, LossReason, PermitLimit, Permits,
};
use nix::sys::signal::Signal;

use crate::child::{Program, mirror};
use crate::duration::{WaitFor, short};
use crate::exit::{Failure, status};
use crate::progress::ProgressLine;
use crate::signals::Forwarded;
use crate::store::Target;

/// What the lock is to the user, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `run`: a lock with a fencing token.
    Lock,
    /// `elect`: an election's leadership with a term.
    Leader,
    /// `run --permits N`: one of the N permits of a semaphore, with its own token.
    Permit(PermitLimit),
}

impl Role {
    /// What is held, before the name: "lease on `x`", "leadership of `x`".
    fn held(self) -> &'static str {
        match self {
            Self::Lock => "lease on",
            Self::Leader => "leadership of",
            Self::Permit(_) => "permit of",
        }
    }

    /// What the fencing token is called.
    pub(crate) fn token(self) -> &'static str {
        match self {
            Self::Lock | Self::Permit(_) => "token",
            Self::Leader => "term",
        }
    }

    /// Giving the lock back.
    fn release(self) -> &'static str {
        match self {
            Self::Lock | Self::Permit(_) => "release",
            Self::Leader => "resign",
        }
    }

    /// The option that bounds the wait.
    fn wait_option(self) -> &'static str {
        match self {
            Self::Lock | Self::Permit(_) => "--wait",
            Self::Leader => "--timeout",
        }
    }

    /// The semaphore's limit, when a permit is held rather than a lock.
    pub(crate) fn permits(self) -> Option<PermitLimit> {
        match self {
            Self::Permit(limit) => Some(limit),
            Self::Lock | Self::Leader => None,
        }
    }
}

/// A lock being taken and held for a program, in one store.
pub(crate) struct Holding<'a> {
    pub(crate) role: Role,
    pub(crate) target: &'a Target,
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) name: &'a LockName,
    /// After a loss: time between SIGTERM and SIGKILL to the program.
    pub(crate) grace: Duration,
}

/// What taking the lock came to.
pub(crate) enum Taken {
    Held(LockGuard),
    /// A signal came first; nothing is held.
    Interrupted(Signal),
}

/// How a supervised run ended.
pub(crate) struct Supervised {
    /// The status to exit with: the program's (mirrored), or a failure (79 after a loss).
    pub(crate) result: Result<u8, Failure>,
    /// Whether the lock was lost while the program ran (it was stopped).
    pub(crate) lost: bool,
    /// The last signal fencelock received (and passed on) while the program ran.
    pub(crate) signalled: Option<Signal>,
}

/// How the program's run ended.
enum Ended {
    Exited(ExitStatus),
    Lost(LossReason),
}

impl Holding<'_> {
    /// Waits for `attempt` (an acquire or a campaign made with `wait`), showing the holder on
    /// a terminal, until it is granted, fails or a signal comes.
    ///
    /// # Errors
    /// [`status::BUSY`] naming the holder when the wait ran out; [`status::UNAVAILABLE`] when
    /// the store did not answer within the wait plus one request's timeout; the store's
    /// failure otherwise.
    pub(crate) async fn take(
        &self,
        attempt: impl Future<Output = Result<LockGuard, Error>>,
        wait: Option<WaitFor>,
        signals: &mut Forwarded,
    ) -> Result<Taken, Failure> {
        let target = self.target;
        // A dead store must not hang a bounded wait: allow the wait plus one request's timeout.
        let bound = match wait {
            None => Some(target.timeout),
            Some(WaitFor::Up(limit)) => Some(limit.saturating_add(target.timeout)),
            Some(WaitFor::Forever) => None,
        };
        let failure = |error: Error| match self.role {
            Role::Permit(_) => target.permit_failure(error),
            Role::Lock | Role::Leader => Failure::from(error),
        };
        let bounded = async {
            let Some(bound) = bound else {
                return attempt.await.map_err(failure);
            };
            match tokio::time::timeout(bound, attempt).await {
                Ok(result) => result.map_err(failure),
                Err(_) => Err(Failure::new(
                    status::UNAVAILABLE,
                    format!(
                        "{} store did not answer the acquire within {}; check that the server is up",
                        target.backend(),
                        short(bound)
                    ),
                )),
            }
        };
        let mut progress = ProgressLine::on_stderr();
        let shown = wait.unwrap_or(WaitFor::Up(Duration::ZERO));
        let taken = tokio::select! {
            result = bounded => result,
            never = progress.show_holder(self.store.clone(), self.name, self.role.permits(), shown, target.timeout) => match never {},
            signal = signals.recv() => {
                progress.clear();
                return Ok(Taken::Interrupted(signal));
            }
        };
        progress.clear();
        match taken {
            Ok(guard) => Ok(Taken::Held(guard)),
            Err(failure) if failure.status() == status::BUSY => Err(self.busy(wait).await),
            Err(failure) => Err(failure),
        }
    }

    /// Runs `argv` while `guard` holds, with `FENCELOCK_TOKEN`, `FENCELOCK_NAME`,
    /// `FENCELOCK_DEADLINE` and `extra_env` in its environment; passes signals on; stops the
    /// program (SIGTERM, SIGKILL after the grace) if the lock is lost; releases the lock once
    /// the program is gone.
    pub(crate) async fn supervise(
        &self,
        guard: LockGuard,
        argv: &[OsString],
        extra_env: &[(&str, String)],
        signals: &mut Forwarded,
    ) -> Supervised {
        let mut env = vec![
            ("FENCELOCK_TOKEN", guard.token().to_string()),
            ("FENCELOCK_NAME", self.name.to_string()),
            ("FENCELOCK_DEADLINE", deadline_unix_ms(&guard).to_string()),
        ];
        env.extend(extra_env.iter().cloned());
        let mut signalled = None;
        let mut program = match Program::spawn(argv, &env) {
            Ok(program) => program,
            Err(failure) => {
                self.release_quietly(guard).await;
                return Supervised {
                    result: Err(failure),
                    lost: false,
                    signalled,
                };
            }
        };
        let ended = loop {
            tokio::select! {
                exit = program.wait() => break exit.map(Ended::Exited),
                signal = signals.recv() => {
                    signalled = Some(signal);
                    program.forward(signal);
                }
                reason = guard.lost() => break Ok(Ended::Lost(reason)),
            }
        };
        let ended = ended
            .map_err(|e| Failure::new(status::INTERNAL, format!("lost track of the program: {e}")));
        let (result, lost) = match ended {
            Ok(Ended::Exited(exit)) => self.finish(guard, exit).await,
            Ok(Ended::Lost(reason)) => (Err(self.stop(guard, reason, &mut program).await), true),
            Err(failure) => {
                self.release_quietly(guard).await;
                (Err(failure), false)
            }
        };
        Supervised {
            result,
            lost,
            signalled,
        }
    }

    /// The lock was lost: say so, stop the program, and fail with [`status::LEASE_LOST`].
    async fn stop(&self, guard: LockGuard, reason: LossReason, program: &mut Program) -> Failure {
        let (name, token, held) = (self.name, guard.token(), self.role.held());
        let word = self.role.token();
        eprintln!(
            "fencelock: {held} `{name}` lost: {word} {token} {reason}; stopping the program (SIGTERM, SIGKILL after {})",
            short(self.grace)
        );
        let stopped = program.stop(self.grace).await;
        self.release_quietly(guard).await;
        let how = match stopped {
            Ok(exit) => describe(exit),
            Err(e) => format!("could not be waited for ({e})"),
        };
        Failure::new(
            status::LEASE_LOST,
            format!(
                "the program {how} after the {held} `{name}` was lost; writes it made with {word} {token} after the loss may have been rejected or overwritten"
            ),
        )
    }

    /// The program exited on its own: release, and mirror its status unless the lock had been
    /// lost before it finished (then the second value is true).
    async fn finish(&self, guard: LockGuard, exit: ExitStatus) -> (Result<u8, Failure>, bool) {
        let (name, token, held) = (self.name, guard.token(), self.role.held());
        match self.target.bounded("the release", guard.release()).await {
            Ok(()) => (Ok(mirror(exit)), false),
            Err(failure) if failure.status() == status::LEASE_LOST => {
                let failure = Failure::new(
                    status::LEASE_LOST,
                    format!(
                        "the program {} but the {held} `{name}` was lost before that: {failure}",
                        describe(exit)
                    ),
                );
                (Err(failure), true)
            }
            Err(failure) => {
                // The program ran under the lock; the lock frees itself at its TTL.
                eprintln!(
                    "fencelock: warning: could not {} `{name}` ({} {token}); it frees itself when its TTL runs out: {failure}",
                    self.role.release(),
                    self.role.token()
                );
                (Ok(mirror(exit)), false)
            }
        }
    }

    async fn release_quietly(&self, guard: LockGuard) {
        // The lock is lost or the program failed to start; the outcome changes nothing now.
        let _ = self.target.bounded("the release", guard.release()).await;
    }

    /// The failure for a lock that stayed held: who holds it, and for how long still.
    async fn busy(&self, wait: Option<WaitFor>) -> Failure {
        let option = self.role.wait_option();
        let holder = match self.role {
            Role::Permit(limit) => self.permits_busy(limit).await,
            Role::Lock => self.lock_busy(false).await,
            Role::Leader => self.lock_busy(true).await,
        };
        let waited = match wait {
            None => "--no-wait given".to_owned(),
            Some(WaitFor::Up(limit)) => format!("gave up after {option} {}", short(limit)),
            Some(WaitFor::Forever) => "gave up".to_owned(),
        };
        Failure::new(
            status::BUSY,
            format!("{holder}; {waited}; the program was not run"),
        )
    }

    /// Who holds the lock (or, for an election, leads), for [`Holding::busy`].
    async fn lock_busy(&self, election: bool) -> String {
        let name = self.name;
        let inspected = self
            .target
            .bounded("inspect", self.store.inspect(name))
            .await;
        match (election, inspected) {
            (false, Ok(Some(info))) => format!(
                "lock `{name}` is held by token {} for {} more",
                info.token,
                short(info.remaining)
            ),
            (true, Ok(Some(info))) => format!(
                "`{name}` is led by {} (term {})",
                info.label
                    .as_ref()
                    .map_or("an unlabelled leader", |l| l.as_str()),
                info.token
            ),
            (false, Ok(None)) => format!("lock `{name}` was held (it is free now; try again)"),
            (true, Ok(None)) => format!("`{name}` had a leader (nobody leads now; try again)"),
            (false, Err(_)) => format!("lock `{name}` is held by someone else"),
            (true, Err(_)) => format!("`{name}` is led by someone else"),
        }
    }

    /// Who holds the semaphore's permits, for [`Holding::busy`].
    async fn permits_busy(&self, limit: PermitLimit) -> String {
        let name = self.name;
        let inspected = self
            .target
            .bounded("inspect", self.store.inspect_permits(name))
            .await;
        match inspected {
            Ok(permits) if permits.holders.len() >= limit.get() as usize => {
                format!(
                    "all {limit} permits of `{name}` are held ({})",
                    holders(&permits)
                )
            }
            Ok(permits) => format!(
                "all {limit} permits of `{name}` were held ({} of them now; try again)",
                permits.holders.len()
            ),
            Err(_) => format!("all {limit} permits of `{name}` are held by others"),
        }
    }
}

/// The holders of a semaphore in a few words: their tokens (the first few of many) and the
/// soonest end of one, were it not renewed: "tokens 17, 18; the soonest ends in 4.2s".
pub(crate) fn holders(permits: &Permits) -> String {
    const SHOWN: usize = 5;
    let all = &permits.holders;
    let mut tokens: Vec<String> = all
        .iter()
        .take(SHOWN)
        .map(|h| h.token.to_string())
        .collect();
    if all.len() > SHOWN {
        tokens.push(format!("… ({} in all)", all.len()));
    }
    let soonest = all.iter().map(|h: &LeaseInfo| h.remaining).min();
    match soonest {
        None => "none now".to_owned(),
        Some(left) => format!(
            "{} {}; the soonest ends in {} unless renewed",
            if all.len() == 1 { "token" } else { "tokens" },
            tokens.join(", "),
            short(left)
        ),
    }
}

pub(crate) fn describe(exit: ExitStatus) -> String {
    match (
        exit.code(),
        std::os::unix::process::ExitStatusExt::signal(&exit),
    ) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".to_owned(),
    }
}

/// FENCELOCK_DEADLINE: now (wall clock) + the time left before the guard's conservative local
/// deadline, in unix milliseconds.
fn deadline_unix_ms(guard: &LockGuard) -> u128 {
    let left = guard.lease().remaining();
    SystemTime::now()
        .checked_add(left)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencelock::FencingToken;

    fn permits(tokens_and_left_ms: &[(u64, u64)]) -> Permits {
        let holders = tokens_and_left_ms
            .iter()
            .map(|&(token, left)| LeaseInfo {
                token: FencingToken::new(token),
                holder: None,
                remaining: Duration::from_millis(left),
                label: None,
            })
            .collect();
        Permits::new(PermitLimit::new(10).ok(), holders)
    }

    #[test]
    fn holders_name_a_few_tokens_and_the_soonest_end() {
        assert_eq!(
            holders(&permits(&[(18, 900), (17, 4_200)])),
            "tokens 17, 18; the soonest ends in 900ms unless renewed"
        );
        assert_eq!(
            holders(&permits(&[(3, 1_500)])),
            "token 3; the soonest ends in 1.5s unless renewed"
        );
        let many: Vec<(u64, u64)> = (1..=7).map(|t| (t, 5_000)).collect();
        assert_eq!(
            holders(&permits(&many)),
            "tokens 1, 2, 3, 4, 5, … (7 in all); the soonest ends in 5.0s unless renewed"
        );
        assert_eq!(holders(&Permits::default()), "none now");
    }
}
