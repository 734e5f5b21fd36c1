//! `diagnose()` for Redlock: every server is diagnosed as a single Redis server would be (its
//! findings prefixed `server N`, in the configured order), and a last finding says whether a
//! majority answers.

use std::time::Duration;

use fencelock_core::{Diagnosis, Error, ErrorKind, Finding, Operation};

use super::instance::Instance;
use super::quorum::{REDLOCK, no_majority, quorum};
use super::store::Inner;
use crate::diagnose::{self, Settings};

/// How many requests one server's diagnosis makes (`INFO`, four `CONFIG GET`s): its time
/// limit is that many server timeouts.
const REQUESTS: u32 = 5;

/// Asks every server at once.
///
/// # Errors
/// When no server answers: the no-majority error (`Unavailable` or `OutcomeUnknown`). Fewer
/// than a majority answering is a `Fail` finding, not an error.
pub(crate) async fn diagnose(inner: &Inner) -> Result<Diagnosis, Error> {
    let n = inner.instances.len();
    let asks = inner
        .instances
        .iter()
        .map(|instance| ask(instance, inner.server_timeout));
    let answers = futures::future::join_all(asks).await;
    let mut server = None;
    let mut findings = Vec::new();
    let mut failed = Vec::new();
    for (i, (instance, answer)) in inner.instances.iter().zip(answers).enumerate() {
        let who = format!("server {}", i + 1);
        match answer {
            Ok(settings) => {
                server.get_or_insert_with(|| settings.server());
                findings.extend(
                    diagnose::findings(&settings)
                        .into_iter()
                        .map(|f| f.of_server(&who)),
                );
            }
            Err(error) => {
                findings.push(
                    Finding::warn(
                        "reachable",
                        "no",
                        format!(
                            "{}: {error}; Redlock grants while a majority answers, so each server down brings it closer to stopping. Bring it back",
                            instance.target
                        ),
                    )
                    .of_server(&who),
                );
                failed.push((i, error));
            }
        }
    }
    let Some(server) = server else {
        return Err(no_majority(Operation::Diagnose, n, failed));
    };
    findings.push(majority(n, n - failed.len()));
    Ok(findings
        .into_iter()
        .fold(Diagnosis::new(REDLOCK, server), Diagnosis::with))
}

/// One server's settings, within [`REQUESTS`] server timeouts; asked once more after a
/// timeout (a diagnosis changes nothing, and the server timeout is tuned for grants, not for
/// `INFO` on a busy machine).
async fn ask(instance: &Instance, limit: Duration) -> Result<Settings, Error> {
    let once = || async {
        let mut conn = instance.connection();
        match tokio::time::timeout(limit * REQUESTS, diagnose::ask(&mut conn)).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::outcome_unknown(
                REDLOCK,
                Operation::Diagnose,
                format!("no answer within {:?}", limit * REQUESTS),
            )),
        }
    };
    match once().await {
        Err(e) if e.kind() == ErrorKind::OutcomeUnknown => once().await,
        answer => answer,
    }
}

/// Whether enough servers answered to grant locks.
fn majority(n: usize, answered: usize) -> Finding {
    let q = quorum(n);
    let value = format!("{answered} of {n} servers answer");
    if answered >= q {
        Finding::ok(
            "quorum",
            value,
            format!(
                "grants need {q}; tokens come from a majority, so they rise even if one server loses its data"
            ),
        )
    } else {
        Finding::fail(
            "quorum",
            value,
            format!(
                "grants need a majority ({q} of {n}): every grant, renewal and release fails until enough servers are back"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use fencelock_core::Verdict;

    use super::*;

    #[test]
    fn a_majority_must_answer() {
        for (n, answered, verdict) in [
            (3, 3, Verdict::Ok),
            (3, 2, Verdict::Ok),
            (3, 1, Verdict::Fail),
            (5, 3, Verdict::Ok),
            (5, 2, Verdict::Fail),
        ] {
            let finding = majority(n, answered);
            assert_eq!(finding.verdict, verdict, "{answered} of {n}: {finding:?}");
            assert_eq!(finding.value, format!("{answered} of {n} servers answer"));
        }
    }
}
