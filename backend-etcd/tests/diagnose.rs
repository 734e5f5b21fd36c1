//! `diagnose()` against real etcd clusters: one healthy member, three with one down and then
//! two down (no leader), a raised NOSPACE alarm, and a dead cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use etcd_client::{AlarmAction, AlarmOptions, AlarmType};
use fencelock_conformance::harness::EtcdCluster;
use fencelock_core::{Diagnosis, ErrorKind, LeaseStore, Verdict};
use fencelock_etcd::{EtcdLeaseStore, etcd_client};
use tokio::time::Instant;

fn finding<'a>(d: &'a Diagnosis, setting: &str) -> (&'a str, Verdict) {
    let found: Vec<_> = d.findings.iter().filter(|f| f.setting == setting).collect();
    assert_eq!(found.len(), 1, "one `{setting}` finding expected: {d:#?}");
    (found[0].value.as_str(), found[0].verdict)
}

async fn store_on(endpoints: Vec<String>, op_timeout: Duration) -> EtcdLeaseStore {
    EtcdLeaseStore::builder()
        .with_urls(endpoints)
        .with_op_timeout(op_timeout)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_healthy_member_is_ok_and_says_it_has_no_fault_tolerance() {
    let d = support::shared_store().await.diagnose().await.unwrap();
    assert_eq!(d.backend, "etcd");
    assert!(d.server.starts_with("etcd 3."), "{d:#?}");
    assert_eq!(d.verdict(), Verdict::Ok, "{d:#?}");
    assert_eq!(finding(&d, "leader").1, Verdict::Ok);
    assert_eq!(finding(&d, "alarms"), ("none", Verdict::Ok));
    assert_eq!(
        finding(&d, "endpoints"),
        ("1 of 1 members answer", Verdict::Ok)
    );
    let members = d.findings.iter().find(|f| f.setting == "members").unwrap();
    assert_eq!(
        (members.value.as_str(), members.verdict),
        ("1", Verdict::Ok)
    );
    assert!(members.advice.contains("no fault tolerance"), "{members:?}");
}

/// Three members: all fine; a follower down is a warning about its endpoint; a majority down
/// leaves no leader, which fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_going_down() {
    let cluster = EtcdCluster::start(3).await.unwrap();
    let store = store_on(cluster.endpoints(), Duration::from_secs(1)).await;
    let d = store.diagnose().await.unwrap();
    assert_eq!(finding(&d, "members"), ("3", Verdict::Ok));
    assert_eq!(
        finding(&d, "endpoints"),
        ("3 of 3 members answer", Verdict::Ok)
    );
    // Three members on a version with etcd #15247 warn about it; nothing else may.
    let (version, verdict) = finding(&d, "version");
    let expected = if fencelock_etcd::revokes_leases_early(version) {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    assert_eq!(verdict, expected, "{d:#?}");
    assert_eq!(d.verdict(), expected, "{d:#?}");

    // A store given one endpoint of three cannot fail over: the other members stay silent.
    let one = store_on(vec![cluster.endpoints()[0].clone()], Duration::from_secs(1)).await;
    let d = one.diagnose().await.unwrap();
    assert_eq!(
        finding(&d, "endpoints"),
        ("1 of 3 members answer", Verdict::Warn)
    );

    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    cluster.member(followers[0]).unwrap().kill().unwrap();
    let d = store.diagnose().await.unwrap();
    assert_eq!(finding(&d, "leader").1, Verdict::Ok, "{d:#?}");
    let (answering, verdict) = finding(&d, "endpoints");
    assert_eq!(verdict, Verdict::Warn, "{d:#?}");
    assert!(
        answering.starts_with("2 of 3 members answer"),
        "{answering}"
    );
    let silent = cluster.member(followers[0]).unwrap().name();
    let advice = &d
        .findings
        .iter()
        .find(|f| f.setting == "endpoints")
        .unwrap()
        .advice;
    assert!(
        advice.starts_with(&format!("{silent} answered none")),
        "{advice}"
    );
    assert_eq!(d.verdict(), Verdict::Warn);

    cluster.member(followers[1]).unwrap().kill().unwrap();
    // The survivor notices the lost quorum within an election timeout (a state of the cluster
    // no event announces): diagnose until it says so, within a generous bound.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.diagnose().await {
            Ok(d) if finding(&d, "leader").1 == Verdict::Fail => {
                assert_eq!(finding(&d, "leader").0, "none");
                assert_eq!(d.verdict(), Verdict::Fail);
                break;
            }
            Ok(_) | Err(_) if Instant::now() < deadline => {}
            other => panic!("still a leader, or an error, after 20 s: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_nospace_alarm_fails() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let store = store_on(cluster.endpoints(), Duration::from_secs(2)).await;
    let mut client = store.client().clone();
    let member = client.status().await.unwrap().header().unwrap().member_id();
    let mut options = AlarmOptions::new();
    options.with_member(member);
    client
        .alarm(AlarmAction::Activate, AlarmType::Nospace, Some(options))
        .await
        .unwrap();
    let d = store.diagnose().await.unwrap();
    let (value, verdict) = finding(&d, "alarms");
    assert_eq!(verdict, Verdict::Fail, "{d:#?}");
    assert!(value.starts_with("NOSPACE"), "{value}");
    assert_eq!(d.verdict(), Verdict::Fail);
    // And indeed nothing can be granted.
    let name = support::unique_name("nospace");
    assert!(
        store
            .try_acquire(&name, Duration::from_secs(5))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cluster_is_an_error_within_the_op_timeout() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let store = store_on(cluster.endpoints(), Duration::from_millis(500)).await;
    cluster.member(0).unwrap().kill().unwrap();
    let started = Instant::now();
    let err = store.diagnose().await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
}
