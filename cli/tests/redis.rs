//! The real binary against a real Redis started by the harness.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness;
use support::{assert_one_line_failure, check_both, check_json, finding, output, status, stdout};

backend_cli_tests!(url, "redis://127.0.0.1:{port}", "redis");

async fn url() -> String {
    harness::shared_redis().await.unwrap().url().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_settings_with_advice() {
    let (text, json) = check_both(&url().await, status::WARNINGS_OR_DECLINED).await;
    assert!(text.starts_with("store    redis (Redis "), "{text}");
    assert!(text.contains("maxmemory-policy = noeviction"), "{text}");
    assert!(text.contains("role = primary"), "{text}");
    // The harness runs Redis without persistence, which check must flag.
    assert!(text.contains("WARN     appendonly = no"), "{text}");
    assert!(
        text.ends_with("read the advice above before relying on these locks\n"),
        "{text}"
    );
    assert_eq!(json["backend"], "redis");
    assert_eq!(json["verdict"], "warn");
    assert_eq!(finding(&json, "appendonly")["verdict"], "warn");
    assert_eq!(finding(&json, "lock operations")["verdict"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_of_a_well_configured_server_is_clean() {
    let server = harness::RedisServer::start(harness::RedisServerOptions::aof())
        .await
        .unwrap();
    let out = output(
        &["check", "--store", &server.url()],
        Duration::from_secs(20),
    )
    .await;
    let text = stdout(&out);
    assert!(!text.contains("WARN") && !text.contains("FAIL"), "{text}");
    assert!(text.contains("ok       appendonly = yes"), "{text}");
    assert!(
        text.ends_with("safe for locks as far as these checks can tell\n"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
}

/// A replica: the store connects, but locks cannot work there: FAIL lines (the role, and the
/// lock operation it refuses) and status 78, in text and JSON.
#[tokio::test(flavor = "multi_thread")]
async fn check_of_a_replica_fails() {
    let primary = harness::RedisServer::start(harness::RedisServerOptions::aof())
        .await
        .unwrap();
    let replica = harness::RedisServer::start_replica_of(&primary)
        .await
        .unwrap();
    let out = output(
        &["check", "--store", &replica.url()],
        Duration::from_secs(20),
    )
    .await;
    let text = stdout(&out);
    assert!(text.contains("FAIL     role = replica"), "{text}");
    assert!(
        text.contains("locks cannot work safely on this store"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(status::UNSAFE_FOR_LOCKS), "{text}");

    let (code, json) = check_json(&replica.url(), &[]).await;
    assert_eq!(code, Some(status::UNSAFE_FOR_LOCKS), "{json:#}");
    assert_eq!(json["verdict"], "fail");
    assert_eq!(finding(&json, "role")["verdict"], "fail");
}

/// `redlock://` over three servers: a run sees a token, `--permits` is refused (no
/// semaphores), and check reports each server and the quorum, warning (not failing) while one
/// server is down.
#[tokio::test(flavor = "multi_thread")]
async fn redlock_runs_and_checks_each_server_and_the_quorum() {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(
            harness::RedisServer::start(harness::RedisServerOptions::ephemeral())
                .await
                .unwrap(),
        );
    }
    let hosts: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect();
    let url = format!("redlock://{}", hosts.join(","));
    // Redlock gives each server 100 ms, so on a loaded machine a run may exit with the
    // unavailable status (its acquire failed or its outcome is unknown). That run is counted
    // and another made, on a name of its own: a grant whose reply was lost would hold the
    // first name for the 30 s TTL.
    let mut unavailable = Vec::new();
    let out = loop {
        let name = format!("job-{}", unavailable.len());
        let out = output(
            &[
                "run",
                "--store",
                &url,
                "--no-wait",
                &name,
                "--",
                "sh",
                "-c",
                "echo token=$FENCELOCK_TOKEN",
            ],
            Duration::from_secs(20),
        )
        .await;
        if out.status.code() != Some(status::UNAVAILABLE) || unavailable.len() == 4 {
            break out;
        }
        unavailable.push(support::stderr(&out));
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "{} (runs before that exited unavailable: {unavailable:?})",
        support::stderr(&out)
    );
    assert!(stdout(&out).starts_with("token="), "{}", stdout(&out));
    // Redlock has no semaphores: `--permits` says so and which stores have them.
    support::scenarios::permits_are_refused_without_semaphores(&url).await;

    servers[2].kill().unwrap();
    let out = output(&["check", "--store", &url], Duration::from_secs(20)).await;
    let text = stdout(&out);
    assert!(text.starts_with("store    redlock (Redis "), "{text}");
    assert!(
        text.contains("WARN     server 1: appendonly = no"),
        "{text}"
    );
    assert!(text.contains("WARN     server 3: reachable = no"), "{text}");
    assert!(
        text.contains("ok       quorum = 2 of 3 servers answer"),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(status::WARNINGS_OR_DECLINED),
        "{text}"
    );
    let (code, json) = check_json(&url, &[]).await;
    assert_eq!(code, Some(status::WARNINGS_OR_DECLINED), "{json:#}");
    assert_eq!(json["backend"], "redlock");
    assert_eq!(finding(&json, "quorum")["value"], "2 of 3 servers answer");

    // Without a majority the store cannot even connect.
    servers[1].kill().unwrap();
    let out = output(
        &["check", "--store", &url, "--connect-timeout", "1s"],
        Duration::from_secs(20),
    )
    .await;
    assert_one_line_failure(&out, status::UNAVAILABLE, "no majority of the 3 servers");
}
