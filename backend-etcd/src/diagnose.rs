//! What an etcd cluster says about itself (status, members, alarms), which members answer
//! through the store's endpoints, and what that means for locks.
//!
//! Everything goes over the store's own client (its endpoints, TLS and credentials), each
//! request within the store's operation timeout. That client balances requests over its
//! endpoints at random, skips an endpoint while it reconnects, and has no way to address one,
//! so which members answer is learnt from a burst of status requests ([`PROBES_PER_MEMBER`] per
//! member): each names the member that answered it, and a live member among the endpoints
//! stays unseen with a chance below 10⁻⁴ for three members. A member that never answers is
//! down or unreachable, or not among the endpoints the store was given. Judging
//! ([`diagnosis`], [`leaderless`]) is a pure mapping from the answers.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Error as EtcdError, StatusResponse};
use fencelock_core::{Diagnosis, Error, Finding, Operation};

use crate::EtcdLeaseStore;
use crate::classify::{STORE, classify, timed_out};
use crate::rpc::Rpc;

/// Status requests per member for the endpoint check, and their bounds.
const PROBES_PER_MEMBER: usize = 8;
const MIN_PROBES: usize = 8;
const MAX_PROBES: usize = 64;

/// From this share of the space quota on, the database size is a warning (in percent).
const QUOTA_WARN_PERCENT: i64 = 80;

/// What the cluster answered, when it has a leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Health {
    pub(crate) version: String,
    /// The leader's member id.
    pub(crate) leader: u64,
    /// Errors the answering member reports about itself.
    pub(crate) errors: Vec<String>,
    pub(crate) db_size: i64,
    /// The space quota (0: not reported, etcd before 3.5).
    pub(crate) db_quota: i64,
    /// Every member: id and name.
    pub(crate) members: Vec<(u64, String)>,
    /// Raised alarms: the member and the alarm.
    pub(crate) alarms: Vec<(u64, AlarmType)>,
    pub(crate) probes: Probes,
}

/// The burst of status requests: how many went out, which members answered, what failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Probes {
    pub(crate) sent: usize,
    pub(crate) answered_by: BTreeSet<u64>,
    pub(crate) failures: Vec<String>,
}

/// Asks the cluster.
///
/// # Errors
/// The store's classification when the cluster does not answer within the operation timeout.
/// A cluster whose members answer only "no leader" is a `Fail` finding, not an error.
pub(crate) async fn diagnose(store: &EtcdLeaseStore) -> Result<Diagnosis, Error> {
    let rpc = &store.rpc;
    let Some(status) = status(rpc).await? else {
        return Ok(leaderless(None));
    };
    if status.leader() == 0 {
        return Ok(leaderless(Some(status.version())));
    }
    let members: Vec<(u64, String)> = rpc
        .call(|mut c| async move { c.member_list().await })
        .await
        .map_err(|e| classify(Operation::Diagnose, e))?
        .members()
        .iter()
        .map(|m| (m.id(), m.name().to_owned()))
        .collect();
    let alarms = rpc
        .call(|mut c| async move {
            c.alarm(AlarmAction::Get, AlarmType::None, Some(AlarmOptions::new()))
                .await
        })
        .await
        .map_err(|e| classify(Operation::Diagnose, e))?
        .alarms()
        .iter()
        .map(|a| (a.member_id(), a.alarm()))
        .collect();
    let probes = probe(rpc, members.len()).await;
    Ok(diagnosis(&Health {
        version: status.version().to_owned(),
        leader: status.leader(),
        errors: status.errors().to_vec(),
        db_size: status.db_size(),
        db_quota: status.db_size_quota(),
        members,
        alarms,
        probes,
    }))
}

/// One member's status, retried on other endpoints as every request is; `None` when every
/// answer within the operation timeout was "no leader".
async fn status(rpc: &Rpc) -> Result<Option<StatusResponse>, Error> {
    let no_leader = AtomicBool::new(false);
    let answer = rpc
        .call(|mut c| {
            let no_leader = &no_leader;
            async move {
                let answer = c.status().await;
                if answer.as_ref().is_err_and(says_no_leader) {
                    no_leader.store(true, Ordering::Relaxed);
                }
                answer
            }
        })
        .await;
    match answer {
        Ok(status) => Ok(Some(status)),
        Err(_) if no_leader.load(Ordering::Relaxed) => Ok(None),
        Err(e) => Err(classify(Operation::Diagnose, e)),
    }
}

fn says_no_leader(e: &EtcdError) -> bool {
    matches!(e, EtcdError::GRpcStatus(s) if s.message().contains("no leader"))
}

/// A burst of status requests at once, each sent once and within the operation timeout.
async fn probe(rpc: &Rpc, members: usize) -> Probes {
    let sent = (PROBES_PER_MEMBER * members).clamp(MIN_PROBES, MAX_PROBES);
    let one = || async {
        let mut maintenance = rpc.client.maintenance_client();
        match tokio::time::timeout(rpc.timeout, maintenance.status()).await {
            Ok(Ok(status)) => Ok(status.header().map_or(0, |h| h.member_id())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(timed_out(rpc.timeout).to_string()),
        }
    };
    let answers = futures::future::join_all((0..sent).map(|_| one())).await;
    let mut probes = Probes {
        sent,
        ..Probes::default()
    };
    for answer in answers {
        match answer {
            Ok(member) => {
                probes.answered_by.insert(member);
            }
            Err(failure) => probes.failures.push(failure),
        }
    }
    probes
}

/// A cluster without a leader: nothing else can be asked (every request needs one).
pub(crate) fn leaderless(version: Option<&str>) -> Diagnosis {
    let server = version.map_or_else(|| "etcd (no leader)".to_owned(), |v| format!("etcd {v}"));
    Diagnosis::new(STORE, server).with(Finding::fail(
        "leader",
        "none",
        "no member answered with a leader: locks can be neither taken, renewed nor released until a majority of the members is up and elects one",
    ))
}

/// What the answers of a cluster with a leader mean for locks, in a fixed order: version,
/// leader, members, alarms and errors, database size, members answering.
pub(crate) fn diagnosis(h: &Health) -> Diagnosis {
    let mut findings = vec![
        version(&h.version, h.members.len()),
        Finding::ok(
            "leader",
            format!("member {:x}", h.leader),
            "the cluster has a leader and can grant locks",
        ),
        members(h.members.len()),
        alarms(&h.alarms),
    ];
    if !h.errors.is_empty() {
        findings.push(Finding::warn(
            "member errors",
            h.errors.join("; "),
            "the answering member reports errors; requests it serves may fail. Check its log",
        ));
    }
    findings.extend(db_size(h.db_size, h.db_quota));
    findings.push(endpoints(&h.members, &h.probes));
    findings.into_iter().fold(
        Diagnosis::new(STORE, format!("etcd {}", h.version)),
        Diagnosis::with,
    )
}

fn version(v: &str, members: usize) -> Finding {
    if v.split('.').next() != Some("3") {
        Finding::warn(
            "version",
            v,
            "fencelock is built for etcd 3 (tested with 3.4 and 3.5); check that locks work here",
        )
    } else if members > 1 && revokes_leases_early(v) {
        Finding::warn(
            "version",
            v,
            "after a leader is paused or stalled (VM pause, slow disk) and replaced, this version lets the old leader revoke leases that the new one still keeps (etcd issue #15247, fixed in 3.4.30 and 3.5.13): a holder can lose its lock before its deadline while its guard still says valid. Fencing tokens still reject its late writes; upgrade etcd to close the gap",
        )
    } else {
        Finding::ok("version", v, "speaks the etcd v3 API that fencelock uses")
    }
}

/// Whether etcd `version` (`3.4.23`, `v3.5.9`) is one where a paused or stalled old leader, once
/// it resumes, can still revoke leases it thinks expired, through the new leader (etcd issue
/// [#15247](https://github.com/etcd-io/etcd/issues/15247); fixed by ignoring such revokes in
/// 3.4.30 and 3.5.13, and in 3.6). Such a revoke ends a lease before the deadline its holder was
/// given: its guard says valid while another holder is granted. Only a cluster of more than one
/// member can have it (it needs a leader change). A version that cannot be read counts as
/// affected: when in doubt, assume the gap.
#[must_use]
pub fn revokes_leases_early(version: &str) -> bool {
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split(['.', '-', '+']);
    let mut number = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (number(), number(), number()) {
        (Some(3), Some(minor), Some(patch)) => match minor {
            0..=3 => true,
            4 => patch < 30,
            5 => patch < 13,
            _ => false,
        },
        (Some(major), _, _) if major > 3 => false,
        _ => true,
    }
}

fn members(n: usize) -> Finding {
    let tolerated = n.saturating_sub(1) / 2;
    match n {
        1 => Finding::ok(
            "members",
            "1",
            "tokens are Raft-committed revisions and never go back, but one member has no fault tolerance: locks stop working while it is down. Run 3 or 5 members in production",
        ),
        n if n % 2 == 0 => Finding::ok(
            "members",
            n.to_string(),
            format!(
                "tolerates the loss of {tolerated} member(s), no more than {} members would",
                n - 1
            ),
        ),
        n => Finding::ok(
            "members",
            n.to_string(),
            format!("tolerates the loss of {tolerated} member(s)"),
        ),
    }
}

fn alarms(raised: &[(u64, AlarmType)]) -> Finding {
    let named: Vec<String> = raised
        .iter()
        .filter(|(_, alarm)| *alarm != AlarmType::None)
        .map(|(member, alarm)| format!("{} on member {member:x}", alarm.as_str_name()))
        .collect();
    if named.is_empty() {
        return Finding::ok("alarms", "none", "the cluster accepts writes");
    }
    let value = named.join(", ");
    if raised.iter().any(|(_, a)| *a == AlarmType::Nospace) {
        Finding::fail(
            "alarms",
            value,
            "the space quota is exhausted: etcd refuses every write, so no lock can be taken, renewed or released. Compact and defragment, then `etcdctl alarm disarm`",
        )
    } else {
        Finding::fail(
            "alarms",
            value,
            "a member's data is corrupt: the cluster refuses writes. Restore that member from a healthy one, then `etcdctl alarm disarm`",
        )
    }
}

fn db_size(size: i64, quota: i64) -> Option<Finding> {
    if quota <= 0 {
        return None;
    }
    let mib = |bytes: i64| bytes / (1024 * 1024);
    let value = format!("{} MiB of {} MiB", mib(size), mib(quota));
    Some(
        if size.saturating_mul(100) >= quota.saturating_mul(QUOTA_WARN_PERCENT) {
            Finding::warn(
                "db size",
                value,
                "close to the space quota: at the quota etcd raises NOSPACE and refuses every write, grants included. Compact and defragment, or raise --quota-backend-bytes",
            )
        } else {
            Finding::ok("db size", value, "well within the space quota")
        },
    )
}

fn endpoints(members: &[(u64, String)], p: &Probes) -> Finding {
    let silent: Vec<String> = members
        .iter()
        .filter(|(id, _)| !p.answered_by.contains(id))
        .map(|(id, name)| match name.as_str() {
            "" => format!("{id:x}"),
            name => name.to_owned(),
        })
        .collect();
    let mut value = format!(
        "{} of {} members answer",
        members.len() - silent.len(),
        members.len()
    );
    if !p.failures.is_empty() {
        value.push_str(&format!(
            ", {} of {} requests failed",
            p.failures.len(),
            p.sent
        ));
    }
    if silent.is_empty() && p.failures.is_empty() {
        return Finding::ok(
            "endpoints",
            value,
            format!(
                "{} status requests through the store's endpoints were answered, and every member answered some",
                p.sent
            ),
        );
    }
    let mut advice = Vec::new();
    if !silent.is_empty() {
        advice.push(format!(
            "{} answered none of {} status requests through the store's endpoints: down or unreachable, or not among the endpoints the store was given (it cannot fail over to a member it does not know). Bring it back, or add its endpoint",
            silent.join(", "),
            p.sent
        ));
    }
    if let Some(first) = p.failures.first() {
        advice.push(format!(
            "an endpoint does not answer ({first}); the store retries such requests on another endpoint, which costs time on each one that meets it"
        ));
    }
    Finding::warn("endpoints", value, advice.join("; "))
}

#[cfg(test)]
mod tests {
    use fencelock_core::Verdict::{self, Fail, Ok, Warn};

    use super::*;

    fn healthy() -> Health {
        Health {
            version: "3.4.23".to_owned(),
            leader: 0x8e9e_05c5_2164_694d,
            errors: Vec::new(),
            db_size: 20 * 1024 * 1024,
            db_quota: 0,
            members: vec![(1, "m0".into()), (2, "m1".into()), (3, "m2".into())],
            alarms: Vec::new(),
            probes: Probes {
                sent: 24,
                answered_by: [1, 2, 3].into(),
                failures: Vec::new(),
            },
        }
    }

    fn verdicts(d: &Diagnosis) -> Vec<(String, Verdict)> {
        d.findings
            .iter()
            .map(|f| (format!("{} = {}", f.setting, f.value), f.verdict))
            .collect()
    }

    /// A case: what it shows, the answers, and the expected `setting = value` and verdicts.
    type Case = (&'static str, Health, Vec<(&'static str, Verdict)>);

    #[test]
    fn versions_with_the_early_revoke() {
        for v in [
            "3.4.23", "v3.4.29", "3.5.0", "3.5.12", "3.3.27", "3.4", "", "nonsense",
        ] {
            assert!(revokes_leases_early(v), "{v}");
        }
        for v in [
            "3.4.30",
            "v3.4.37",
            "3.5.13",
            "3.5.16",
            "3.6.0",
            "3.6.5-rc.0",
            "4.0.0",
        ] {
            assert!(!revokes_leases_early(v), "{v}");
        }
    }

    #[test]
    fn answers_to_findings() {
        let with = |change: fn(&mut Health)| {
            let mut h = healthy();
            change(&mut h);
            h
        };
        let cases: Vec<Case> = vec![
            (
                "healthy cluster of three",
                healthy(),
                vec![
                    ("version = 3.4.23", Warn),
                    ("leader = member 8e9e05c52164694d", Ok),
                    ("members = 3", Ok),
                    ("alarms = none", Ok),
                    ("endpoints = 3 of 3 members answer", Ok),
                ],
            ),
            (
                "one member, quota known",
                with(|h| {
                    h.members.truncate(1);
                    h.probes.answered_by = [1].into();
                    h.db_quota = 2 * 1024 * 1024 * 1024;
                }),
                vec![
                    ("version = 3.4.23", Ok),
                    ("leader = member 8e9e05c52164694d", Ok),
                    ("members = 1", Ok),
                    ("alarms = none", Ok),
                    ("db size = 20 MiB of 2048 MiB", Ok),
                    ("endpoints = 1 of 1 members answer", Ok),
                ],
            ),
            (
                "out of space, nearly full, an endpoint down",
                with(|h| {
                    h.members.push((4, "m3".into()));
                    h.alarms = vec![(0xa, AlarmType::Nospace), (0xb, AlarmType::None)];
                    h.db_size = 90 * 1024 * 1024;
                    h.db_quota = 100 * 1024 * 1024;
                    h.probes.answered_by = [1, 2, 3, 4].into();
                    h.probes.failures = vec!["transport error".into(); 5];
                }),
                vec![
                    ("version = 3.4.23", Warn),
                    ("leader = member 8e9e05c52164694d", Ok),
                    ("members = 4", Ok),
                    ("alarms = NOSPACE on member a", Fail),
                    ("db size = 90 MiB of 100 MiB", Warn),
                    (
                        "endpoints = 4 of 4 members answer, 5 of 24 requests failed",
                        Warn,
                    ),
                ],
            ),
            (
                "a version without etcd #15247",
                with(|h| h.version = "3.5.16".into()),
                vec![
                    ("version = 3.5.16", Ok),
                    ("leader = member 8e9e05c52164694d", Ok),
                    ("members = 3", Ok),
                    ("alarms = none", Ok),
                    ("endpoints = 3 of 3 members answer", Ok),
                ],
            ),
            (
                "corrupt member, member errors, odd version",
                with(|h| {
                    h.version = "4.0.0".into();
                    h.alarms = vec![(0xc, AlarmType::Corrupt)];
                    h.errors = vec!["etcdserver: slow disk".into()];
                }),
                vec![
                    ("version = 4.0.0", Warn),
                    ("leader = member 8e9e05c52164694d", Ok),
                    ("members = 3", Ok),
                    ("alarms = CORRUPT on member c", Fail),
                    ("member errors = etcdserver: slow disk", Warn),
                    ("endpoints = 3 of 3 members answer", Ok),
                ],
            ),
        ];
        for (what, health, expected) in cases {
            let expected: Vec<(String, Verdict)> = expected
                .into_iter()
                .map(|(f, v)| (f.to_owned(), v))
                .collect();
            let d = diagnosis(&health);
            assert_eq!(verdicts(&d), expected, "{what}");
            assert!(d.findings.iter().all(|f| !f.advice.is_empty()), "{what}");
            assert_eq!(d.server, format!("etcd {}", health.version));
        }
    }

    #[test]
    fn a_silent_member_is_named() {
        let mut h = healthy();
        h.probes.answered_by = [1, 3].into();
        h.members[2].1 = String::new();
        let d = diagnosis(&h);
        let f = d
            .findings
            .iter()
            .find(|f| f.setting == "endpoints")
            .unwrap();
        assert_eq!(
            (f.value.as_str(), f.verdict),
            ("2 of 3 members answer", Warn)
        );
        assert!(f.advice.starts_with("m1 answered none"), "{f:?}");
        h.probes.answered_by = [1].into();
        let d = diagnosis(&h);
        let f = d
            .findings
            .iter()
            .find(|f| f.setting == "endpoints")
            .unwrap();
        assert!(f.advice.starts_with("m1, 3 answered none"), "{f:?}");
    }

    #[test]
    fn one_member_is_ok_but_says_why_it_is_fragile() {
        let mut h = healthy();
        h.members.truncate(1);
        let d = diagnosis(&h);
        let members = d.findings.iter().find(|f| f.setting == "members").unwrap();
        assert_eq!(members.verdict, Ok);
        assert!(members.advice.contains("no fault tolerance"), "{members:?}");
    }

    #[test]
    fn no_leader_fails() {
        for (version, server) in [(None, "etcd (no leader)"), (Some("3.5.9"), "etcd 3.5.9")] {
            let d = leaderless(version);
            assert_eq!(d.server, server);
            assert_eq!(verdicts(&d), vec![("leader = none".to_owned(), Fail)]);
        }
    }
}
