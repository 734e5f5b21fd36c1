//! End-to-end scenarios every backend runs, given the URL of a live store.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::*;

/// Children of concurrent runs append `token start_ns end_ns`; the intervals must be
/// disjoint and the tokens must rise in start order.
pub async fn concurrent_runs_never_overlap(url: &str) {
    const RUNS: usize = 4;
    let name = unique_name("overlap");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("intervals");
    let script =
        r#"s=$(date +%s%N); sleep 0.2; e=$(date +%s%N); echo "$FENCELOCK_TOKEN $s $e" >> "$OUT""#;
    let mut children = Vec::new();
    for _ in 0..RUNS {
        let mut cmd = fencelock(&[
            "run", "--store", url, "--ttl", "5s", "--wait", "30s", &name, "--", "sh", "-c", script,
        ]);
        cmd.env("OUT", &log);
        children.push(cmd.spawn().unwrap());
    }
    for child in children {
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut runs: Vec<(u64, u128, u128)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(runs.len(), RUNS, "{text}");
    runs.sort_by_key(|r| r.1);
    for pair in runs.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(b.1 > a.2, "runs overlap: {a:?} and {b:?}");
        assert!(
            b.0 > a.0,
            "token did not rise in start order: {a:?} then {b:?}"
        );
    }
}

/// Sequential runs see rising tokens, the lock name, and a deadline in the future.
pub async fn token_rises_run_after_run(url: &str) {
    let name = unique_name("rising");
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let before = now_ms();
        let out = output(
            &[
                "run",
                "--store",
                url,
                "--ttl",
                "10s",
                "--no-wait",
                &name,
                "--",
                "sh",
                "-c",
                r#"echo "$FENCELOCK_TOKEN $FENCELOCK_NAME $FENCELOCK_DEADLINE""#,
            ],
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields[1], name);
        let deadline: u128 = fields[2].parse().unwrap();
        assert!(
            deadline > before && deadline <= now_ms() + 10_000,
            "deadline {deadline} not within the TTL from {before}"
        );
        tokens.push(fields[0].parse::<u64>().unwrap());
    }
    assert!(tokens.windows(2).all(|w| w[1] > w[0]), "{tokens:?}");
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// SIGSTOP the CLI past the TTL, SIGCONT: it stops the program (which ignores SIGTERM, so
/// SIGKILL after --grace) and exits with the lease-lost status; the lock is free again.
pub async fn paused_cli_loses_lease_and_stops_program(url: &str) {
    let name = unique_name("paused");
    let (mut cli, mut lines) = spawn_with_lines(&[
        "run",
        "--store",
        url,
        "--ttl",
        "1s",
        "--grace",
        "1s",
        "--no-wait",
        &name,
        "--",
        "sh",
        "-c",
        r#"trap "" TERM; echo "$$"; exec sleep 60"#,
    ]);
    let program = Pid::from_raw(
        next_line(&mut lines, Duration::from_secs(10))
            .await
            .parse()
            .unwrap(),
    );
    let pid = Pid::from_raw(i32::try_from(cli.id().unwrap()).unwrap());
    kill(pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await; // TTL 1 s, with an honest margin
    let resumed = tokio::time::Instant::now();
    kill(pid, Signal::SIGCONT).unwrap();
    let exit = wait_exit(&mut cli, Duration::from_secs(10)).await;
    let took = resumed.elapsed();
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(cli.stderr.as_mut().unwrap(), &mut err)
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(status::LEASE_LOST), "{err}");
    assert!(err.contains("lost"), "{err}");
    assert!(
        took >= Duration::from_millis(900),
        "SIGKILL came before the grace: {took:?}"
    );
    assert!(kill(program, None).is_err(), "the program still runs");
    // Free again: the next run gets it at once.
    let out = output(
        &["run", "--store", url, "--no-wait", &name, "--", "true"],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A held lock: --no-wait and a short --wait exit 75 naming the holder's token; `status`
/// shows the holder; `release --force --yes` breaks it and its `run` exits with 79.
pub async fn busy_status_and_forced_release(url: &str) {
    let name = unique_name("busy");
    let (mut holder, mut lines) = spawn_with_lines(&[
        "run",
        "--store",
        url,
        "--ttl",
        "3s",
        "--grace",
        "1s",
        &name,
        "--",
        "sh",
        "-c",
        r#"echo "$FENCELOCK_TOKEN"; exec sleep 60"#,
    ]);
    let token: u64 = next_line(&mut lines, Duration::from_secs(10))
        .await
        .parse()
        .unwrap();

    let out = output(
        &["run", "--store", url, "--no-wait", &name, "--", "true"],
        Duration::from_secs(10),
    )
    .await;
    assert_one_line_failure(&out, status::BUSY, &format!("held by token {token}"));
    let started = tokio::time::Instant::now();
    let out = output(
        &[
            "run", "--store", url, "--wait", "600ms", &name, "--", "true",
        ],
        Duration::from_secs(10),
    )
    .await;
    assert_one_line_failure(&out, status::BUSY, "--wait 600ms");
    assert!(started.elapsed() >= Duration::from_millis(600));

    let out = output(
        &["status", "--store", url, "--json", &name],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["held"], true);
    assert_eq!(json[0]["token"], token);
    let left = json[0]["remaining_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 3000, "{left}");
    let out = output(&["inspect", "--store", url, &name], Duration::from_secs(10)).await;
    assert!(
        stdout(&out).contains(&token.to_string()),
        "{}",
        stdout(&out)
    );

    let out = output(
        &["release", "--force", "--store", url, &name],
        Duration::from_secs(10),
    )
    .await;
    assert_one_line_failure(&out, status::USAGE, "--yes");
    let out = output(
        &["release", "--force", "--yes", "--store", url, &name],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("token {token}")),
        "{}",
        stdout(&out)
    );

    // The holder notices at its next renewal (every TTL/3 = 1 s) and stops its program.
    let exit = wait_exit(&mut holder, Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(status::LEASE_LOST));
    let out = output(
        &["status", "--store", url, "--json", &name],
        Duration::from_secs(10),
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["held"], false);
}

/// Two processes hold two locks; `status` with no name lists both under their prefix, with the
/// label each was given (text and JSON), and nothing outside the prefix.
pub async fn status_lists_holders_with_their_labels(url: &str) {
    let prefix = format!("{}/", unique_name("list"));
    let mut holders = Vec::new();
    let mut tokens = Vec::new();
    for (lock, label) in [("a", "worker a on host-1"), ("b%_*", "worker b: {tag}")] {
        let name = format!("{prefix}{lock}");
        let (holder, mut lines) = spawn_with_lines(&[
            "run",
            "--store",
            url,
            "--ttl",
            "5s",
            "--label",
            label,
            &name,
            "--",
            "sh",
            "-c",
            r#"echo "$FENCELOCK_TOKEN"; exec sleep 60"#,
        ]);
        let token: u64 = next_line(&mut lines, Duration::from_secs(10))
            .await
            .parse()
            .unwrap();
        holders.push(holder);
        tokens.push((name, label, token));
    }
    let out = output(
        &["status", "--store", url, "--json", "--prefix", &prefix],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<(String, String, u64)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            assert_eq!(row["held"], true, "{row}");
            (
                row["name"].as_str().unwrap().to_owned(),
                row["label"].as_str().unwrap().to_owned(),
                row["token"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, u64)> = tokens
        .iter()
        .map(|(n, l, t)| (n.clone(), (*l).to_owned(), *t))
        .collect();
    assert_eq!(listed, expected, "{json:#}");
    let out = output(
        &["status", "--store", url, "--prefix", &prefix],
        Duration::from_secs(10),
    )
    .await;
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().next().unwrap().ends_with("LABEL"), "{text}");
    for (name, label, _) in &tokens {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name.as_str()) && l.ends_with(label)),
            "{text}"
        );
    }
    for mut holder in holders {
        holder.kill().await.unwrap();
    }
}

/// Bad input against a live store: one line, a usage status, nothing run.
pub async fn bad_input_is_one_line(url: &str) {
    for (args, needle) in [
        (
            vec!["run", "--store", url, "--ttl", "10", "n", "--", "true"],
            "no unit",
        ),
        (
            vec!["run", "--store", url, "--wait", "soon", "n", "--", "true"],
            "not a duration",
        ),
        (
            vec!["run", "--store", url, "a\u{1}b", "--", "true"],
            "lock name",
        ),
        (vec!["status", "--store", url, ""], "lock name"),
        (
            vec!["run", "--store", url, "--ttl", "0s", "n", "--", "true"],
            "ttl",
        ),
    ] {
        let out = output(&args, Duration::from_secs(10)).await;
        assert_one_line_failure(&out, status::USAGE, needle);
    }
}

/// A dead server (nothing listens on `dead_url`) is one line and the unavailable status,
/// within the connect timeout rather than the driver's own retry schedule.
pub async fn dead_server_is_one_line(dead_url: &str, needle: &str) {
    let started = tokio::time::Instant::now();
    let out = super::output(
        &[
            "run",
            "--store",
            dead_url,
            "--connect-timeout",
            "1s",
            "n",
            "--",
            "true",
        ],
        Duration::from_secs(10),
    )
    .await;
    super::assert_one_line_failure(&out, super::status::UNAVAILABLE, needle);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
