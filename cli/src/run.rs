//! `fencelock run`: hold a lock (or, with `--permits N`, one of N permits of a semaphore)
//! while a program runs.

use std::process::ExitCode;

use fencelock::{AcquireOptions, Locker, PermitGuard};

use crate::args::RunArgs;
use crate::duration::WaitFor;
use crate::exit::{Failure, status};
use crate::hold::{Holding, Role, Taken};
use crate::signals::Forwarded;
use crate::store::Target;

pub(crate) async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let target = Target::from_args(&args.store)?;
    target.warn_if_memory();
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
    let holding = Holding {
        role: args.permits.map_or(Role::Lock, Role::Permit),
        target: &target,
        store,
        name: &args.name,
        grace: args.child.grace,
    };
    let attempt = async {
        match args.permits {
            None => locker.acquire(args.name.clone(), options).await,
            Some(limit) => {
                let semaphore = locker.semaphore(args.name.clone(), limit.get())?;
                semaphore
                    .acquire(options)
                    .await
                    .map(PermitGuard::into_guard)
            }
        }
    };
    let guard = match holding.take(attempt, wait, &mut signals).await? {
        Taken::Held(guard) => guard,
        Taken::Interrupted(signal) => {
            return Ok(ExitCode::from(status::SIGNAL_BASE + signal as u8));
        }
    };
    let permits = args
        .permits
        .map(|limit| ("FENCELOCK_PERMITS", limit.to_string()));
    let supervised = holding
        .supervise(guard, &args.child.program, permits.as_slice(), &mut signals)
        .await;
    supervised.result.map(ExitCode::from)
}
