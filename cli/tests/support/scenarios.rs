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
    let script =
        r#"s=$(date +%s%N); sleep 0.2; e=$(date +%s%N); echo "$FENCELOCK_TOKEN $s $e" >> "$OUT""#;
    let text = run_concurrently(url, RUNS, &["--ttl", "5s", &name], script).await;
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

/// Starts `runs` copies of `fencelock run --store url --wait 30s args… -- sh -c script` at
/// once (`args` end with the name) with `OUT` naming a file in a temporary directory; asserts
/// that each exits 0 within 40 s, and returns what the programs wrote to `OUT`.
async fn run_concurrently(url: &str, runs: usize, args: &[&str], script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events");
    let mut all = vec!["run", "--store", url, "--wait", "30s"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "sh", "-c", script]);
    let mut children = Vec::new();
    for _ in 0..runs {
        let mut cmd = fencelock(&all);
        cmd.env("OUT", &log);
        children.push(cmd.spawn().unwrap());
    }
    for child in children {
        let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    std::fs::read_to_string(&log).unwrap()
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
    paused_run_is_stopped(url, &[], "lease on").await;
}

/// As [`paused_cli_loses_lease_and_stops_program`], for a permit of a semaphore: a permit is
/// lost and its program stopped exactly as a lock's.
pub async fn paused_permit_holder_is_stopped(url: &str) {
    // One permit: the next run gets it only once the lost one has expired.
    paused_run_is_stopped(url, &["--permits", "1"], "permit of").await;
}

/// `run extra… NAME` paused past its TTL is stopped with status 79, saying `held` and `lost`;
/// then `run extra… NAME` gets it at once.
async fn paused_run_is_stopped(url: &str, extra: &[&str], held: &str) {
    let name = unique_name("paused");
    let mut args = vec![
        "run",
        "--store",
        url,
        "--ttl",
        "1s",
        "--grace",
        "1s",
        "--no-wait",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        &name,
        "--",
        "sh",
        "-c",
        r#"trap "" TERM; echo "$$ $FENCELOCK_TOKEN"; exec sleep 60"#,
    ]);
    let (mut cli, mut lines) = spawn_with_lines(&args);
    let line = next_line(&mut lines, Duration::from_secs(10)).await;
    let (program, token) = line.split_once(' ').unwrap();
    let program = Pid::from_raw(program.parse().unwrap());
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
    assert!(
        err.contains(&format!("{held} `{name}` lost: token {token} ")),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "SIGKILL came before the grace: {took:?}"
    );
    assert!(kill(program, None).is_err(), "the program still runs");
    // Free again: the next run gets it at once.
    let mut again = vec!["run", "--store", url, "--no-wait"];
    again.extend_from_slice(extra);
    again.extend_from_slice(&[&name, "--", "true"]);
    let out = output(&again, Duration::from_secs(10)).await;
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
        let (holder, token) = hold(url, &["--ttl", "5s", "--label", label, &name]).await;
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
        (
            vec!["elect", "--store", url, "--as", "", "n", "--", "true"],
            "the label is empty",
        ),
        (
            vec![
                "elect", "--store", url, "--as", "a\u{1}b", "n", "--", "true",
            ],
            "label",
        ),
        (
            vec!["elect", "--store", url, "--as", "x", "", "--", "true"],
            "lock name",
        ),
        (vec!["elect", "--store", url, "n"], "PROGRAM"),
        (vec!["leader", "--store", url, "a\u{1}b"], "lock name"),
        (
            vec!["leader", "--store", url, "--every", "2s", "n"],
            "--watch",
        ),
        (
            vec!["leader", "--store", url, "--watch", "--every", "0s", "n"],
            "--every 0ms is out of range",
        ),
        (
            vec!["run", "--store", url, "--permits", "0", "n", "--", "true"],
            "0 is outside 1..=10000 permits",
        ),
        (
            vec![
                "run",
                "--store",
                url,
                "--permits",
                "10001",
                "n",
                "--",
                "true",
            ],
            "10001 is outside 1..=10000 permits",
        ),
        (
            vec!["run", "--store", url, "--permits", "two", "n", "--", "true"],
            "`two` is not a number of permits",
        ),
        (vec!["status", "--store", url, "--permits"], "NAME"),
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

/// Asserts that fencelock said each of `lines` on stderr.
fn assert_said(err: &str, lines: &[String]) {
    for line in lines {
        assert!(err.contains(line.as_str()), "{line:?} not in {err}");
    }
}

/// `fencelock leader --json NAME`: the one JSON line, after checking the status.
async fn leader_json(url: &str, name: &str) -> serde_json::Value {
    let out = output(
        &["leader", "--store", url, "--json", name],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// `fencelock elect --as LABEL NAME` whose program prints its term and token, then runs as
/// leader until a line comes on stdin.
fn candidate(
    url: &str,
    name: &str,
    label: &str,
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    tokio::process::ChildStdin,
) {
    spawn_with_stdin(&[
        "elect",
        "--store",
        url,
        "--ttl",
        "5s",
        "--as",
        label,
        name,
        "--",
        "sh",
        "-c",
        r#"echo "$FENCELOCK_TERM $FENCELOCK_TOKEN"; read line"#,
    ])
}

/// The term a candidate's program printed (it prints FENCELOCK_TERM and FENCELOCK_TOKEN,
/// which must agree).
async fn elected_term(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> u64 {
    let line = next_line(lines, Duration::from_secs(20)).await;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields.len(), 2, "{line}");
    assert_eq!(
        fields[0], fields[1],
        "FENCELOCK_TERM is not the token: {line}"
    );
    fields[0]
}

/// Ends a candidate's program (a line on its stdin): the candidate resigns and exits 0.
async fn resign(child: &mut tokio::process::Child, stdin: &mut tokio::process::ChildStdin) {
    use tokio::io::AsyncWriteExt;
    stdin.write_all(b"done\n").await.unwrap();
    let exit = wait_exit(child, Duration::from_secs(20)).await;
    assert_eq!(exit.code(), Some(0), "the candidate did not resign cleanly");
}

/// The next leader a `leader --watch --json` prints, skipping vacancies: (label, term).
async fn next_leader(
    watch: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> (String, u64) {
    loop {
        let line = next_line(watch, Duration::from_secs(20)).await;
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["led"] == true {
            return (
                json["label"].as_str().unwrap().to_owned(),
                json["term"].as_u64().unwrap(),
            );
        }
        assert_eq!(json["term"], serde_json::Value::Null, "{line}");
    }
}

/// Candidates a, b, then a again campaign in turn, each while the last one leads: the later
/// one waits (its program does not run, `leader` names the one in office), and is elected
/// when that one resigns. `leader --watch` prints the vacancy first, then each leader with its
/// label and term as the candidates' programs saw it, terms rising, and the vacancy at the end.
pub async fn leader_watch_follows_candidates_in_turn(url: &str) {
    let name = unique_name("elect-turns");
    let (mut watcher, mut watch) = spawn_with_lines(&[
        "leader", "--store", url, "--watch", "--json", "--every", "200ms", &name,
    ]);
    let first: serde_json::Value =
        serde_json::from_str(&next_line(&mut watch, Duration::from_secs(20)).await).unwrap();
    assert_eq!(first["led"], false, "{first}");
    assert_eq!(first["name"], name.as_str(), "{first}");

    let (mut leader, mut leader_out, mut leader_in) = candidate(url, &name, "a");
    let mut term = elected_term(&mut leader_out).await;
    assert_eq!(next_leader(&mut watch).await, ("a".to_owned(), term));
    let mut terms = vec![term];
    for label in ["b", "a"] {
        let (mut next, mut next_out, next_in) = candidate(url, &name, label);
        // The new candidate waits while the leader leads: its program does not run.
        let early = tokio::time::timeout(Duration::from_secs(1), next_out.next_line()).await;
        assert!(early.is_err(), "{label} ran while the other led: {early:?}");
        assert!(next.try_wait().unwrap().is_none(), "{label} gave up");
        let now = leader_json(url, &name).await;
        assert_eq!(
            (now["led"].clone(), now["term"].as_u64()),
            (true.into(), Some(term)),
            "{now}"
        );

        resign(&mut leader, &mut leader_in).await;
        let elected = elected_term(&mut next_out).await;
        assert!(elected > term, "term {elected} after {term}");
        assert_eq!(next_leader(&mut watch).await, (label.to_owned(), elected));
        (leader, leader_out, leader_in, term) = (next, next_out, next_in, elected);
        terms.push(term);
    }
    // The last leader's stdout stays open until it resigns (its program may still write).
    let _ = &leader_out;
    resign(&mut leader, &mut leader_in).await;
    let vacancy: serde_json::Value =
        serde_json::from_str(&next_line(&mut watch, Duration::from_secs(20)).await).unwrap();
    assert_eq!(
        vacancy["led"], false,
        "after the last resignation (terms {terms:?}): {vacancy}"
    );

    let pid = Pid::from_raw(i32::try_from(watcher.id().unwrap()).unwrap());
    kill(pid, Signal::SIGINT).unwrap();
    let exit = wait_exit(&mut watcher, Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(128 + Signal::SIGINT as i32));
}

/// `elect` runs its program as leader with the term; `leader` names it in text; breaking the
/// lock (`release --force`) makes `elect` report the loss, stop the program and exit 79; then
/// nobody leads (status 0, in text and JSON).
pub async fn elect_runs_the_program_as_leader_and_stops_it_on_loss(url: &str) {
    let name = unique_name("elect-loss");
    let out = output(&["leader", "--store", url, &name], Duration::from_secs(10)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{name}: no leader\n"));

    let (mut elect, mut lines) = spawn_with_lines(&[
        "elect",
        "--store",
        url,
        "--ttl",
        "3s",
        "--grace",
        "1s",
        "--as",
        "solo on host-1",
        &name,
        "--",
        "sh",
        "-c",
        r#"echo "$$ $FENCELOCK_TERM $FENCELOCK_TOKEN $FENCELOCK_NAME"; exec sleep 60"#,
    ]);
    let line = next_line(&mut lines, Duration::from_secs(20)).await;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let program = Pid::from_raw(fields[0].parse().unwrap());
    let term: u64 = fields[1].parse().unwrap();
    assert_eq!((fields[2], fields[3]), (fields[1], name.as_str()), "{line}");

    let out = output(&["leader", "--store", url, &name], Duration::from_secs(10)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("{name}: led by solo on host-1 with term {term}, ")),
        "{text}"
    );

    let out = output(
        &["release", "--force", "--yes", "--store", url, &name],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The leader notices at its next renewal (every TTL/3 = 1 s) and stops its program.
    let (exit, err) = wait_exit_with_stderr(&mut elect, Duration::from_secs(15)).await;
    assert_eq!(exit.code(), Some(status::LEASE_LOST), "{err}");
    assert_said(
        &err,
        &[
            format!("elected leader of `{name}` as solo on host-1 with term {term}"),
            format!("leadership of `{name}` lost: term {term} "),
        ],
    );
    assert!(kill(program, None).is_err(), "the program still runs");
    let json = leader_json(url, &name).await;
    assert_eq!(json["led"], false, "{json}");
}

/// `elect --again`: after its program exits, and after leadership is lost (the lock broken),
/// it campaigns again and reruns the program with a greater term; a signal is passed on to
/// the program and ends it all with the program's status.
pub async fn elect_again_campaigns_after_each_run(url: &str) {
    use tokio::io::AsyncWriteExt;
    let name = unique_name("elect-again");
    let (mut elect, mut lines, mut stdin) = spawn_with_stdin(&[
        "elect",
        "--store",
        url,
        "--ttl",
        "3s",
        "--grace",
        "1s",
        "--again",
        "--as",
        "looper",
        &name,
        "--",
        "sh",
        "-c",
        r#"echo "$FENCELOCK_TERM $FENCELOCK_TOKEN"; read line"#,
    ]);
    let first = elected_term(&mut lines).await;
    // The program exits: a new term, the program again.
    stdin.write_all(b"next\n").await.unwrap();
    let second = elected_term(&mut lines).await;
    assert!(second > first, "term {second} after {first}");
    // Leadership is lost: the program is stopped, then a new term.
    let out = output(
        &["release", "--force", "--yes", "--store", url, &name],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let third = elected_term(&mut lines).await;
    assert!(third > second, "term {third} after {second}");
    let json = leader_json(url, &name).await;
    assert_eq!(
        (json["label"].as_str(), json["term"].as_u64()),
        (Some("looper"), Some(third)),
        "{json}"
    );
    // A signal goes to the program (sh dies of it) and ends the loop.
    let pid = Pid::from_raw(i32::try_from(elect.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let (exit, err) = wait_exit_with_stderr(&mut elect, Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(128 + Signal::SIGTERM as i32), "{err}");
    assert_said(
        &err,
        &[
            format!("term {first} of `{name}` is over; campaigning again"),
            format!("leadership of `{name}` lost: term {second} "),
        ],
    );
    let json = leader_json(url, &name).await;
    assert_eq!(json["led"], false, "{json}");
}

/// The events the programs of [`permits_let_two_of_three_runs_in_at_once`] wrote, in time
/// order: (time in ns, started?, token).
fn permit_events(text: &str) -> Vec<(u128, bool, u64)> {
    let mut events: Vec<(u128, bool, u64)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[2].parse().unwrap(),
                f[0] == "start",
                f[1].parse().unwrap(),
            )
        })
        .collect();
    events.sort_unstable();
    events
}

/// The issue's acceptance test: three concurrent `run --permits 2 NAME -- sleep 2` (each
/// program writes `start TOKEN TIME PERMITS` and `end TOKEN TIME`): two run at once, never
/// three; the third starts after one of them ended, with a token above both of theirs; every
/// run has a token of its own and sees FENCELOCK_PERMITS=2.
pub async fn permits_let_two_of_three_runs_in_at_once(url: &str) {
    let name = unique_name("permits");
    let script = r#"echo "start $FENCELOCK_TOKEN $(date +%s%N) $FENCELOCK_PERMITS" >> "$OUT"; sleep 2; echo "end $FENCELOCK_TOKEN $(date +%s%N)" >> "$OUT""#;
    let args = ["--permits", "2", "--ttl", "5s", &name];
    let text = run_concurrently(url, 3, &args, script).await;
    assert!(
        text.lines()
            .filter(|l| l.starts_with("start "))
            .all(|l| l.ends_with(" 2")),
        "FENCELOCK_PERMITS is not 2: {text}"
    );
    let events = permit_events(&text);
    assert_eq!(events.len(), 6, "{text}");
    let (mut running, mut most) = (0_usize, 0_usize);
    let mut started: Vec<u64> = Vec::new();
    let mut ended = 0_usize;
    for &(_, start, token) in &events {
        if start {
            assert!(
                started.iter().all(|&t| t != token),
                "token {token} granted twice: {text}"
            );
            if started.len() == 2 {
                assert!(ended >= 1, "the third run started before any ended: {text}");
                assert!(
                    started.iter().all(|&t| t < token),
                    "the third run's token {token} is not above {started:?}: {text}"
                );
            }
            started.push(token);
            running += 1;
            most = most.max(running);
        } else {
            assert!(started.contains(&token), "an end before its start: {text}");
            running -= 1;
            ended += 1;
        }
    }
    assert_eq!(most, 2, "not exactly two runs at once at most: {text}");
}

/// Two runs hold permits of a semaphore of 2 with their labels: `status --permits` shows both
/// (token, time left, label) and the limit, as JSON and text, and a free semaphore as free; a
/// third run is busy (status 75, naming the holders' tokens); a run with another limit is a
/// usage error naming both limits.
pub async fn permit_status_busy_and_limit_mismatch(url: &str) {
    let name = unique_name("permit-status");
    let free = unique_name("permit-free");
    let mut holders = Vec::new();
    let mut expected = Vec::new();
    for label in ["worker a on host-1", "worker b: {tag}"] {
        let args = ["--permits", "2", "--ttl", "5s", "--label", label, &name];
        let (holder, token) = hold(url, &args).await;
        holders.push(holder);
        expected.push((token, label.to_owned()));
    }
    expected.sort();
    assert!(expected[0].0 < expected[1].0, "{expected:?}");

    let out = output(
        &[
            "status",
            "--store",
            url,
            "--permits",
            "--json",
            &name,
            &free,
        ],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let held = &json[0];
    assert_eq!(
        (&held["name"], &held["limit"], &held["held"]),
        (&name.as_str().into(), &2.into(), &2.into()),
        "{json:#}"
    );
    let listed: Vec<(u64, String)> = held["permits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let left = p["remaining_ms"].as_u64().unwrap();
            assert!(left > 0 && left <= 5000, "{p}");
            (
                p["token"].as_u64().unwrap(),
                p["label"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, expected, "{json:#}");
    assert_eq!(
        json[1],
        serde_json::json!({"name": free, "limit": null, "held": 0, "permits": []})
    );

    let out = output(
        &["status", "--store", url, "--permits", &name, &free],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].ends_with("LABEL"),
        "{text}"
    );
    for ((token, label), line) in expected.iter().zip(&lines[1..3]) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[..4], [name.as_str(), "2", "of", "2"], "{text}");
        assert_eq!(fields[4], token.to_string(), "{text}");
        assert!(line.ends_with(label.as_str()), "{text}");
    }
    let fields: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(fields[..3], [free.as_str(), "free", "-"], "{text}");

    // A full semaphore is busy, naming the holders; another limit names both.
    let tokens = format!("tokens {}, {}", expected[0].0, expected[1].0);
    for (permits, code, needle) in [
        (
            "2",
            status::BUSY,
            format!("all 2 permits of `{name}` are held ({tokens}"),
        ),
        (
            "3",
            status::USAGE,
            "is held with a limit of 2 permits; asked with 3".to_owned(),
        ),
    ] {
        let args = [
            "run",
            "--store",
            url,
            "--permits",
            permits,
            "--no-wait",
            &name,
            "--",
            "true",
        ];
        let out = output(&args, Duration::from_secs(10)).await;
        assert_one_line_failure(&out, code, &needle);
    }
    for mut holder in holders {
        holder.kill().await.unwrap();
    }
}

/// A store without semaphores (Redlock, or a backend stamped `without_semaphores`): `run
/// --permits` and `status --permits` are one line with the unavailable status, saying which
/// stores have semaphores; the program does not run.
pub async fn permits_are_refused_without_semaphores(url: &str) {
    let name = unique_name("no-semaphores");
    for args in [
        vec![
            "run",
            "--store",
            url,
            "--permits",
            "2",
            &name,
            "--",
            "false",
        ],
        vec!["status", "--store", url, "--permits", &name],
    ] {
        let out = output(&args, Duration::from_secs(20)).await;
        assert_one_line_failure(
            &out,
            status::UNAVAILABLE,
            "--permits needs a store with semaphores: Redis (one server, Cluster or Sentinel), PostgreSQL or etcd",
        );
    }
}
