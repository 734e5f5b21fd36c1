//! `fencelock check`: is the store reachable, and is it configured so that locks stay safe?
//!
//! One plain function per scheme, each using its backend's re-exported driver for the
//! server-specific questions; every one also runs a lock round trip through `LeaseStore`.

#[cfg(feature = "etcd")]
mod etcd;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redlock;

use std::process::ExitCode;

use fencelock::{LockName, StoreUrl};

use crate::args::CheckArgs;
use crate::exit::{Failure, status};
use crate::store::Target;

/// How a finding bears on the lock's guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Ok,
    Warn,
}

/// One checked setting.
#[derive(Debug)]
pub(crate) struct Finding {
    level: Level,
    what: String,
    advice: String,
}

impl Finding {
    pub(crate) fn ok(what: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            level: Level::Ok,
            what: what.into(),
            advice: advice.into(),
        }
    }

    pub(crate) fn warn(what: impl Into<String>, advice: impl Into<String>) -> Self {
        Self {
            level: Level::Warn,
            what: what.into(),
            advice: advice.into(),
        }
    }

    /// The same finding, said of `who` (one server of several).
    #[cfg(feature = "redis")]
    pub(crate) fn prefixed(self, who: &str) -> Self {
        Self {
            what: format!("{who}: {}", self.what),
            ..self
        }
    }
}

/// What a check found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) server: String,
    pub(crate) findings: Vec<Finding>,
}

pub(crate) async fn check(args: CheckArgs) -> Result<ExitCode, Failure> {
    let target = Target::from_args(&args.store)?;
    let mut report = match &target.parsed {
        StoreUrl::Memory => memory::check(),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(url) => postgres::check(url, target.timeout).await?,
        #[cfg(feature = "redis")]
        StoreUrl::Redis(url) => redis::check(url, target.timeout).await?,
        #[cfg(feature = "redis")]
        StoreUrl::Redlock(servers) => redlock::check(servers, target.timeout).await?,
        #[cfg(feature = "etcd")]
        StoreUrl::Etcd(endpoints) => etcd::check(endpoints, target.timeout).await?,
        _ => {
            return Err(Failure::usage(format!(
                "this build of fencelock has no {} support; rebuild with the `{}` feature",
                target.backend(),
                target.backend()
            )));
        }
    };
    report.findings.push(round_trip(&target).await?);
    print!("{}", render(&target, &report));
    let warned = report.findings.iter().any(|f| f.level == Level::Warn);
    Ok(if warned {
        ExitCode::from(status::WARNINGS_OR_DECLINED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Connects through the lock store itself and asks about one name: proves the URL, the
/// credentials and (for PostgreSQL) the lease table work.
async fn round_trip(target: &Target) -> Result<Finding, Failure> {
    let store = target.connect().await?;
    let probe = LockName::new("fencelock-check/probe")?;
    target.bounded("inspect", store.inspect(&probe)).await?;
    Ok(Finding::ok(
        "lock operations",
        format!(
            "connected as a {} lock store and inspected a lock",
            store.backend()
        ),
    ))
}

fn render(target: &Target, report: &Report) -> String {
    let mut out = format!("store    {} ({})\n", target.backend(), report.server);
    for finding in &report.findings {
        let level = match finding.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
        };
        out.push_str(&format!(
            "{level}     {}: {}\n",
            finding.what, finding.advice
        ));
    }
    let warnings = report
        .findings
        .iter()
        .filter(|f| f.level == Level::Warn)
        .count();
    out.push_str(&match warnings {
        0 => "safe for locks as far as these checks can tell\n".to_owned(),
        n => format!("{n} warning(s): read the advice above before relying on these locks\n"),
    });
    out
}
