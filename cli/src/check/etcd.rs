//! `check` for `etcd://`: version, leader, members, alarms, and every endpoint's health.

use std::time::Duration;

use fencelock_etcd::EtcdLeaseStore;
use fencelock_etcd::etcd_client::{self, AlarmAction, AlarmOptions, AlarmType, Client};

use super::{Finding, Report};
use crate::exit::{Failure, status};

pub(crate) async fn check(endpoints: &[String], timeout: Duration) -> Result<Report, Failure> {
    let failed = |e: etcd_client::Error| {
        Failure::new(
            status::UNAVAILABLE,
            format!(
                "etcd check failed: {e}; check that the cluster is up and the endpoints are right"
            ),
        )
    };
    // The store's own options (TLS roots for https:// endpoints), but without require_leader:
    // a cluster without a leader is a finding to report, not a failed check.
    let options = EtcdLeaseStore::builder()
        .with_urls(endpoints)
        .with_connect_timeout(timeout)
        .default_connect_options()
        .map_err(|e| Failure::usage(e.to_string()))?
        .with_require_leader(false)
        .with_timeout(timeout);
    let work = async {
        let mut client = Client::connect(endpoints, Some(options.clone())).await?;
        let status = client.status().await?;
        let members = client.member_list().await?.members().len();
        let alarms = client
            .alarm(AlarmAction::Get, AlarmType::None, Some(AlarmOptions::new()))
            .await?
            .alarms()
            .len();
        // Each endpoint on its own: a cluster answers through any live member.
        let mut unhealthy = Vec::new();
        for endpoint in endpoints {
            let alive = match Client::connect([endpoint], Some(options.clone())).await {
                Ok(mut one) => one.status().await.is_ok(),
                Err(_) => false,
            };
            if !alive {
                unhealthy.push(endpoint.clone());
            }
        }
        Ok::<_, etcd_client::Error>(Health {
            version: status.version().to_owned(),
            has_leader: status.leader() != 0,
            errors: status.errors().to_vec(),
            members,
            alarms,
            unhealthy,
        })
    };
    let health = tokio::time::timeout(timeout.saturating_mul(3), work)
        .await
        .map_err(|_| {
            Failure::new(
                status::UNAVAILABLE,
                "etcd did not answer the check in time; check that the cluster is up",
            )
        })?
        .map_err(failed)?;
    Ok(health.report())
}

struct Health {
    version: String,
    has_leader: bool,
    errors: Vec<String>,
    members: usize,
    alarms: usize,
    unhealthy: Vec<String>,
}

impl Health {
    fn report(&self) -> Report {
        let mut findings = vec![if self.has_leader {
            Finding::ok("leader", "the cluster has a leader and can grant locks")
        } else {
            Finding::warn(
                "leader",
                "no leader: locks can be neither taken nor renewed until one is elected",
            )
        }];
        findings.push(match self.members {
            1 => Finding::ok(
                "members = 1",
                "tokens are Raft-committed revisions and never go back, but one member has no fault tolerance: locks stop working while it is down. Run 3 or 5 members in production",
            ),
            n => Finding::ok(format!("members = {n}"), "tolerates the loss of a minority of members"),
        });
        findings.push(if self.alarms == 0 && self.errors.is_empty() {
            Finding::ok("alarms", "none")
        } else {
            Finding::warn(
                "alarms",
                format!(
                    "{} alarm(s) {}: a NOSPACE alarm makes every grant fail; compact and defragment",
                    self.alarms,
                    self.errors.join("; ")
                ),
            )
        });
        findings.push(if self.unhealthy.is_empty() {
            Finding::ok("endpoints", "every endpoint answers")
        } else {
            Finding::warn(
                "endpoints",
                format!("not answering: {}", self.unhealthy.join(", ")),
            )
        });
        Report {
            server: format!("etcd {}", self.version),
            findings,
        }
    }
}
