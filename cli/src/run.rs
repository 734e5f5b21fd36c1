//! `fencelock run`: hold a lock while a program runs.

use std::process::{ExitCode, ExitStatus};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fencelock::{AcquireOptions, LockGuard, LockName, Locker, LossReason};

use crate::args::RunArgs;
use crate::child::{Program, mirror};
use crate::duration::{WaitFor, short};
use crate::exit::{Failure, status};
use crate::progress::ProgressLine;
use crate::signals::Forwarded;
use crate::store::Target;

/// How the program's run ended.
enum Ended {
    Exited(ExitStatus),
    Lost(LossReason),
}

pub(crate) async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let target = Target::from_args(&args.store)?;
    if target.is_memory() {
        eprintln!(
            "fencelock: warning: memory:// locks live inside this one process and exclude nothing across processes; use it only to try fencelock out"
        );
    }
    let wait = if args.no_wait { None } else { Some(args.wait) };
    // Caught from here on, so that Ctrl-C while waiting leaves cleanly (nothing held).
    let mut signals = Forwarded::catch()?;
    let store = target.connect().await?;
    let locker = Locker::from_arc(store.clone());
    let mut options = AcquireOptions::new().with_ttl(args.ttl);
    if let Some(label) = args.label.clone() {
        options = options.with_label(label);
    }
    options = match wait {
        None => options.with_no_wait(),
        Some(WaitFor::Up(limit)) => options.with_timeout(limit),
        Some(WaitFor::Forever) => options.with_wait_forever(),
    };
    // A dead store must not hang a bounded wait: allow the wait plus one request's timeout.
    let bound = match wait {
        None => Some(target.timeout),
        Some(WaitFor::Up(limit)) => Some(limit.saturating_add(target.timeout)),
        Some(WaitFor::Forever) => None,
    };
    let acquire = async {
        let attempt = locker.acquire(args.name.clone(), options.clone());
        let Some(bound) = bound else {
            return attempt.await.map_err(Failure::from);
        };
        match tokio::time::timeout(bound, attempt).await {
            Ok(result) => result.map_err(Failure::from),
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
    let acquired = tokio::select! {
        result = acquire => result,
        never = progress.show_holder(store.clone(), &args.name, wait.unwrap_or(WaitFor::Up(Duration::ZERO)), target.timeout) => match never {},
        signal = signals.recv() => {
            progress.clear();
            return Ok(ExitCode::from(status::SIGNAL_BASE + signal as u8));
        }
    };
    progress.clear();
    let guard = match acquired {
        Ok(guard) => guard,
        Err(failure) if failure.status() == status::BUSY => {
            return Err(busy(&target, &args.name, wait, store.as_ref()).await);
        }
        Err(failure) => return Err(failure),
    };

    let env = [
        ("FENCELOCK_TOKEN", guard.token().to_string()),
        ("FENCELOCK_NAME", args.name.to_string()),
        ("FENCELOCK_DEADLINE", deadline_unix_ms(&guard).to_string()),
    ];
    let mut program = match Program::spawn(&args.program, &env) {
        Ok(program) => program,
        Err(failure) => {
            release_quietly(guard, &target).await;
            return Err(failure);
        }
    };

    let ended = loop {
        tokio::select! {
            exit = program.wait() => break exit.map(Ended::Exited),
            signal = signals.recv() => program.forward(signal),
            reason = guard.lost() => break Ok(Ended::Lost(reason)),
        }
    };
    let ended = ended
        .map_err(|e| Failure::new(status::INTERNAL, format!("lost track of the program: {e}")));
    match ended {
        Ok(Ended::Exited(exit)) => finish(guard, &target, exit).await,
        Ok(Ended::Lost(reason)) => {
            let token = guard.token();
            eprintln!(
                "fencelock: lease on `{}` lost: token {token} {reason}; stopping the program (SIGTERM, SIGKILL after {})",
                args.name,
                short(args.grace)
            );
            let stopped = program.stop(args.grace).await;
            release_quietly(guard, &target).await;
            let how = match stopped {
                Ok(exit) => describe(exit),
                Err(e) => format!("could not be waited for ({e})"),
            };
            Err(Failure::new(
                status::LEASE_LOST,
                format!(
                    "the program {how} after the lease on `{}` was lost; writes it made with token {token} after the loss may have been rejected or overwritten",
                    args.name
                ),
            ))
        }
        Err(failure) => {
            release_quietly(guard, &target).await;
            Err(failure)
        }
    }
}

/// The program exited on its own: release, and mirror its status unless the lease had been
/// lost before it finished.
async fn finish(guard: LockGuard, target: &Target, exit: ExitStatus) -> Result<ExitCode, Failure> {
    let name = guard.name();
    let token = guard.token();
    match target.bounded("the release", guard.release()).await {
        Ok(()) => Ok(ExitCode::from(mirror(exit))),
        Err(failure) if failure.status() == status::LEASE_LOST => Err(Failure::new(
            status::LEASE_LOST,
            format!(
                "the program {} but the lease on `{name}` was lost before that: {failure}",
                describe(exit)
            ),
        )),
        Err(failure) => {
            // The program ran under the lease; the lock frees itself at its TTL.
            eprintln!(
                "fencelock: warning: could not release `{name}` (token {token}); it frees itself when its TTL runs out: {failure}"
            );
            Ok(ExitCode::from(mirror(exit)))
        }
    }
}

async fn release_quietly(guard: LockGuard, target: &Target) {
    // The lease is lost or the program failed to start; the outcome changes nothing now.
    let _ = target.bounded("the release", guard.release()).await;
}

fn describe(exit: ExitStatus) -> String {
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

/// The message for a lock that stayed held: who holds it, and for how long still.
async fn busy(
    target: &Target,
    name: &LockName,
    wait: Option<WaitFor>,
    store: &dyn fencelock::LeaseStore,
) -> Failure {
    let holder = match target.bounded("inspect", store.inspect(name)).await {
        Ok(Some(info)) => format!(
            "held by token {} for {} more",
            info.token,
            short(info.remaining)
        ),
        Ok(None) => "was held (it is free now; try again)".to_owned(),
        Err(_) => "held by someone else".to_owned(),
    };
    let waited = match wait {
        None => "--no-wait given".to_owned(),
        Some(WaitFor::Up(limit)) => format!("gave up after --wait {}", short(limit)),
        Some(WaitFor::Forever) => "gave up".to_owned(),
    };
    Failure::new(
        status::BUSY,
        format!("lock `{name}` is {holder}; {waited}; the program was not run"),
    )
}
