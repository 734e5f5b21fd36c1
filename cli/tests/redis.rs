//! The real binary against a real Redis started by the harness.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness;
use support::{assert_one_line_failure, output, status, stdout};

backend_cli_tests!(url, "redis://127.0.0.1:{port}", "redis");

async fn url() -> String {
    harness::shared_redis().await.unwrap().url().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_settings_with_advice() {
    let url = url().await;
    let out = output(&["check", "--store", &url], Duration::from_secs(20)).await;
    let text = stdout(&out);
    assert!(text.contains("Redis "), "{text}");
    assert!(text.contains("maxmemory-policy"), "{text}");
    assert!(text.contains("role = primary"), "{text}");
    assert!(text.contains("lock operations"), "{text}");
    // The harness runs Redis without persistence, which check must flag.
    assert!(
        text.contains("WARN") && text.contains("persistence"),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(status::WARNINGS_OR_DECLINED),
        "{text}"
    );
}

/// `redlock://` over three servers: a run sees a token, and check reports each server and the
/// quorum, warning (not failing) while one server is down.
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

    servers[2].kill().unwrap();
    let out = output(&["check", "--store", &url], Duration::from_secs(20)).await;
    let text = stdout(&out);
    assert!(text.contains("server 1: persistence"), "{text}");
    assert!(text.contains("server 3: no answer"), "{text}");
    assert!(text.contains("quorum: 2 of 3 servers answer"), "{text}");
    assert_eq!(
        out.status.code(),
        Some(status::WARNINGS_OR_DECLINED),
        "{text}"
    );

    servers[1].kill().unwrap();
    let out = output(
        &["check", "--store", &url, "--connect-timeout", "1s"],
        Duration::from_secs(20),
    )
    .await;
    assert_one_line_failure(
        &out,
        status::UNAVAILABLE,
        "only 1 of 3 Redlock servers answered",
    );
}
