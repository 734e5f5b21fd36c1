//! `fencelock elect`: campaign in an election and run a program as leader, with its term.
//!
//! Leading is holding the election's lock, so everything after the campaign is `run`'s
//! supervision ([`crate::hold`]): the same environment, signals, and stop on loss.

use std::process::ExitCode;
use std::time::Duration;

use fencelock::{AcquireOptions, Leadership, Locker};
use tokio::time::Instant;

use crate::args::ElectArgs;
use crate::duration::WaitFor;
use crate::exit::{Failure, status};
use crate::hold::{Holding, Role, Taken};
use crate::signals::Forwarded;
use crate::store::Target;

/// With `--again`, terms start at most this often: a program that fails at once must not
/// campaign and run a thousand times a second (nor let this candidate crowd out the others).
const AGAIN_AT_MOST_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn elect(args: ElectArgs) -> Result<ExitCode, Failure> {
    let target = Target::from_args(&args.store)?;
    target.warn_if_memory();
    // Caught from here on: a signal while campaigning leaves cleanly (nothing held).
    let mut signals = Forwarded::catch()?;
    let store = target.connect().await?;
    let election = Locker::from_arc(store.clone()).election(args.name.clone())?;
    let mut options = AcquireOptions::new().with_ttl(args.ttl);
    if let Some(label) = args.label.clone() {
        options = options.with_label(label);
    }
    options = match args.timeout {
        WaitFor::Up(limit) => options.with_timeout(limit),
        WaitFor::Forever => options.with_wait_forever(),
    };
    let holding = Holding {
        role: Role::Leader,
        target: &target,
        store,
        name: &args.name,
        grace: args.child.grace,
    };
    loop {
        let campaign = async {
            let leadership = election.campaign(options.clone()).await?;
            Ok(Leadership::into_guard(leadership))
        };
        let guard = match holding
            .take(campaign, Some(args.timeout), &mut signals)
            .await?
        {
            Taken::Held(guard) => guard,
            Taken::Interrupted(signal) => {
                return Ok(ExitCode::from(status::SIGNAL_BASE + signal as u8));
            }
        };
        let elected = Instant::now();
        let term = guard.token();
        let label = guard
            .lease()
            .label()
            .map_or_else(|| "an unlabelled candidate".to_owned(), |l| l.to_string());
        eprintln!(
            "fencelock: elected leader of `{}` as {label} with term {term}",
            args.name
        );
        let supervised = holding
            .supervise(
                guard,
                &args.child.program,
                &[("FENCELOCK_TERM", term.to_string())],
                &mut signals,
            )
            .await;
        if !args.again || supervised.signalled.is_some() {
            return supervised.result.map(ExitCode::from);
        }
        match supervised.result {
            Ok(code @ (status::CANNOT_EXECUTE | status::NOT_FOUND)) => {
                eprintln!(
                    "fencelock: the program could not be run (status {code}); not campaigning again"
                );
                return Ok(ExitCode::from(code));
            }
            Ok(code) => eprintln!(
                "fencelock: the program ended with status {code}; term {term} of `{}` is over; campaigning again",
                args.name
            ),
            Err(failure) if supervised.lost => {
                eprintln!("fencelock: {failure}; campaigning again");
            }
            Err(failure) => return Err(failure),
        }
        tokio::select! {
            () = tokio::time::sleep_until(elected + AGAIN_AT_MOST_EVERY) => {}
            signal = signals.recv() => {
                return Ok(ExitCode::from(status::SIGNAL_BASE + signal as u8));
            }
        }
    }
}
