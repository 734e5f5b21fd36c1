//! `check` for `redlock://`: every server as a Redis server, plus whether a majority answers.

use std::time::Duration;

use super::{Finding, Report, redis};
use crate::exit::{Failure, status};

pub(crate) async fn check(servers: &[String], timeout: Duration) -> Result<Report, Failure> {
    let quorum = servers.len() / 2 + 1;
    let checks = servers.iter().map(|url| redis::check(url, timeout));
    let results = futures::future::join_all(checks).await;
    let mut report = Report::default();
    let mut answered = 0;
    for (i, result) in results.into_iter().enumerate() {
        let who = format!("server {}", i + 1);
        match result {
            Ok(server) => {
                answered += 1;
                if report.server.is_empty() {
                    report.server = server.server.clone();
                }
                for finding in server.findings {
                    report.findings.push(finding.prefixed(&who));
                }
            }
            Err(failure) => report.findings.push(Finding::warn(
                format!("{who}: no answer"),
                format!(
                    "{failure}; Redlock keeps working while a majority ({quorum} of {}) answers, but one more failure stops all grants",
                    servers.len()
                ),
            )),
        }
    }
    if answered < quorum {
        return Err(Failure::new(
            status::UNAVAILABLE,
            format!(
                "only {answered} of {} Redlock servers answered; a majority ({quorum}) is needed to grant locks",
                servers.len()
            ),
        ));
    }
    report.findings.push(Finding::ok(
        format!("quorum: {answered} of {} servers answer", servers.len()),
        format!("grants need {quorum}; tokens come from a majority, so they rise even if one server loses its data"),
    ));
    Ok(report)
}
