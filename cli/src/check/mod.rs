//! `fencelock check`: is the store reachable, and is it configured so that locks stay safe?
//!
//! The store answers that itself ([`LeaseStore::diagnose`], the same call a program can make
//! at start-up); this command adds one lock operation through the store and renders the
//! result, as text or as one JSON document. It knows nothing about any server.

mod render;

use std::process::ExitCode;

use fencelock::{Diagnosis, ErrorKind, Finding, LeaseStore, LockName, Verdict};

use crate::args::CheckArgs;
use crate::duration::short;
use crate::exit::{Failure, status, status_of};
use crate::store::Target;

/// A diagnosis makes a few requests, each bounded by the store's own timeouts (set from
/// `--connect-timeout`); this bounds the whole in case a backend does not.
const REQUESTS: u32 = 4;

pub(crate) async fn check(args: CheckArgs) -> Result<ExitCode, Failure> {
    let target = Target::from_args(&args.store)?;
    let store = target.connect().await?;
    let diagnosis = diagnose(&target, &*store).await?;
    let lock_operations = match round_trip(&target, &*store).await {
        Ok(finding) => finding,
        // A FAIL finding already says why lock operations fail here: show the whole report.
        Err(failure) if diagnosis.verdict() == Verdict::Fail => {
            Finding::fail("lock operations", "failed", failure.to_string())
        }
        Err(failure) => return Err(failure),
    };
    let report = diagnosis.with(lock_operations);
    let out = if args.json {
        render::json(&report)?
    } else {
        render::text(&report)
    };
    print!("{out}");
    Ok(ExitCode::from(exit_status(report.verdict())))
}

/// The exit status of a report: 0 safe, 1 warnings to read, 78 unsafe for locks.
fn exit_status(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Ok => 0,
        Verdict::Warn => status::WARNINGS_OR_DECLINED,
        _ => status::UNSAFE_FOR_LOCKS,
    }
}

/// The store's own diagnosis. A store that offers none still gets the round trip.
async fn diagnose(target: &Target, store: &dyn LeaseStore) -> Result<Diagnosis, Failure> {
    let limit = target.timeout.saturating_mul(REQUESTS);
    let answer = tokio::time::timeout(limit, store.diagnose())
        .await
        .map_err(|_| {
            Failure::new(
                status::UNAVAILABLE,
                format!(
                    "the {} store did not answer the check within {}; check that the server is up (or raise --connect-timeout)",
                    store.backend(),
                    short(limit)
                ),
            )
        })?;
    match answer {
        Ok(diagnosis) => Ok(diagnosis),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            Ok(
                Diagnosis::new(store.backend(), "unknown").with(Finding::warn(
                    "diagnosis",
                    "unsupported",
                    format!("{e}; check the server's settings by hand"),
                )),
            )
        }
        Err(e) => Err(Failure::new(
            status_of(&e),
            format!("{e}; check that the server is up and the URL is right"),
        )),
    }
}

/// One lock operation through the store: proves the URL, the credentials and (for PostgreSQL)
/// the lease table work.
async fn round_trip(target: &Target, store: &dyn LeaseStore) -> Result<Finding, Failure> {
    let probe = LockName::new("fencelock-check/probe")?;
    target.bounded("inspect", store.inspect(&probe)).await?;
    Ok(Finding::ok(
        "lock operations",
        "work",
        format!(
            "connected as a {} lock store and inspected a lock",
            store.backend()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_decides_the_exit_status() {
        assert_eq!(exit_status(Verdict::Ok), 0);
        assert_eq!(exit_status(Verdict::Warn), 1);
        assert_eq!(exit_status(Verdict::Fail), 78);
    }
}
