//! Helpers for running the real `fencelock` binary.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod scenarios;

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

/// The `fencelock` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fencelock");

/// Exit statuses the CLI documents.
pub mod status {
    pub const WARNINGS_OR_DECLINED: i32 = 1;
    pub const USAGE: i32 = 64;
    pub const UNAVAILABLE: i32 = 69;
    pub const BUSY: i32 = 75;
    pub const UNSAFE_FOR_LOCKS: i32 = 78;
    pub const LEASE_LOST: i32 = 79;
    pub const NOT_FOUND: i32 = 127;
}

/// A `fencelock` command with `FENCELOCK_STORE` cleared and stdin from /dev/null (not a
/// terminal: the program gets its own process group, as under cron).
pub fn fencelock(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("FENCELOCK_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `fencelock args…` to completion (at most `limit`).
pub async fn output(args: &[&str], limit: Duration) -> Output {
    tokio::time::timeout(limit, fencelock(args).output())
        .await
        .unwrap_or_else(|_| panic!("fencelock {args:?} did not finish within {limit:?}"))
        .unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a failure: the expected status and exactly one `fencelock: …` line on stderr that
/// contains `needle`.
pub fn assert_one_line_failure(out: &Output, expected: i32, needle: &str) {
    let err = stderr(out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("warning: memory://"))
        .collect();
    assert_eq!(out.status.code(), Some(expected), "stderr: {err}");
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err:?}");
    assert!(lines[0].starts_with("fencelock: "), "{err:?}");
    assert!(lines[0].contains(needle), "{needle:?} not in {err:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

/// Runs `fencelock check --json --store url extra…`: the exit status and the JSON document,
/// after checking the document's shape (the lock round trip is the last finding).
pub async fn check_json(url: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["check", "--json", "--store", url];
    args.extend_from_slice(extra);
    let out = output(&args, Duration::from_secs(30)).await;
    let text = stdout(&out);
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {text}{}", stderr(&out)));
    let findings = json["findings"].as_array().expect("findings");
    assert_eq!(
        findings.last().unwrap()["setting"],
        "lock operations",
        "{json:#}"
    );
    for key in ["backend", "server", "verdict"] {
        assert!(json[key].is_string(), "{key} missing: {json:#}");
    }
    (out.status.code(), json)
}

/// Runs `fencelock check --store url` as text and as JSON ([`check_json`]); asserts that both
/// exit with `expected` and that the text reports the lock round trip as working. Returns the
/// text and the document.
pub async fn check_both(url: &str, expected: i32) -> (String, serde_json::Value) {
    let out = output(&["check", "--store", url], Duration::from_secs(30)).await;
    let text = stdout(&out);
    assert!(text.contains("ok       lock operations = work"), "{text}");
    assert_eq!(out.status.code(), Some(expected), "{text}");
    let (code, json) = check_json(url, &[]).await;
    assert_eq!(code, Some(expected), "{json:#}");
    (text, json)
}

/// The finding named `setting` in a `check --json` document.
pub fn finding<'a>(json: &'a serde_json::Value, setting: &str) -> &'a serde_json::Value {
    json["findings"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["setting"] == setting))
        .unwrap_or_else(|| panic!("no `{setting}` finding: {json:#}"))
}

/// A lock name of its own for each test.
pub fn unique_name(prefix: &str) -> String {
    format!("cli-test/{prefix}/{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Reads the next line the program printed (through fencelock's stdout), at most `limit`.
pub async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    limit: Duration,
) -> String {
    tokio::time::timeout(limit, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no output within {limit:?}"))
        .unwrap()
        .expect("stdout closed before a line came")
}

/// Spawns `fencelock args…` and returns it with a line reader on its stdout.
pub fn spawn_with_lines(
    args: &[&str],
) -> (
    Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = fencelock(args).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    (child, tokio::io::BufReader::new(out).lines())
}

/// Spawns `fencelock args…` with its stdin a pipe (which the program inherits): returns it
/// with a line reader on its stdout and the pipe's write end.
pub fn spawn_with_stdin(
    args: &[&str],
) -> (
    Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    tokio::process::ChildStdin,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = fencelock(args).stdin(Stdio::piped()).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, tokio::io::BufReader::new(out).lines(), stdin)
}

/// Spawns `fencelock run --store url args… -- sh -c 'echo "$FENCELOCK_TOKEN"; exec sleep 60'`
/// (`args` end with the name) and waits until its program runs: the holding fencelock and its
/// token. Kill it (or let it drop) to end the hold.
pub async fn hold(url: &str, args: &[&str]) -> (Child, u64) {
    let mut all = vec!["run", "--store", url];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--",
        "sh",
        "-c",
        r#"echo "$FENCELOCK_TOKEN"; exec sleep 60"#,
    ]);
    let (mut holder, mut lines) = spawn_with_lines(&all);
    match tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await {
        Ok(Ok(Some(token))) => (holder, token.parse().unwrap()),
        Ok(Ok(None)) => {
            let (exit, err) = wait_exit_with_stderr(&mut holder, Duration::from_secs(10)).await;
            panic!("fencelock {all:?} exited ({exit}) before its program ran: {err}")
        }
        other => panic!("the program of fencelock {all:?} did not start within 10s: {other:?}"),
    }
}

/// Waits for `child` to exit (at most `limit`).
pub async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    tokio::time::timeout(limit, child.wait())
        .await
        .unwrap_or_else(|_| panic!("fencelock did not exit within {limit:?}"))
        .unwrap()
}

/// Waits for `child` to exit (at most `limit`), then reads all it wrote on stderr.
pub async fn wait_exit_with_stderr(
    child: &mut Child,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let exit = wait_exit(child, limit).await;
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut err)
        .await
        .unwrap();
    (exit, err)
}

/// Stamps the scenarios every backend shares into named tests: `$url` is an async fn giving
/// the store URL of a running server, `$dead` a format string for a URL on a port where
/// nothing listens, and `$needle` a word the dead-server error must contain.
///
/// The `--permits` scenarios are among them: every backend that uses this macro offers
/// semaphores. A backend that does not (yet) is stamped with `, without_semaphores` after
/// `$needle`: then `permits_are_refused_without_semaphores` asserts the one-line refusal
/// instead, which fails as soon as the backend grants a permit, so that nobody forgets to drop
/// the marker and nothing is skipped silently.
#[macro_export]
macro_rules! backend_cli_tests {
    ($url:path, $dead:literal, $needle:literal) => {
        $crate::backend_cli_tests!(@shared $url;
            permits_let_two_of_three_runs_in_at_once,
            permit_status_busy_and_limit_mismatch,
            paused_permit_holder_is_stopped,
        );
        $crate::backend_cli_tests!(@locks $url, $dead, $needle);
    };
    ($url:path, $dead:literal, $needle:literal, without_semaphores) => {
        $crate::backend_cli_tests!(@shared $url; permits_are_refused_without_semaphores);
        $crate::backend_cli_tests!(@locks $url, $dead, $needle);
    };
    (@locks $url:path, $dead:literal, $needle:literal) => {
        $crate::backend_cli_tests!(@shared $url;
            concurrent_runs_never_overlap,
            token_rises_run_after_run,
            paused_cli_loses_lease_and_stops_program,
            busy_status_and_forced_release,
            status_lists_holders_with_their_labels,
            bad_input_is_one_line,
            leader_watch_follows_candidates_in_turn,
            elect_runs_the_program_as_leader_and_stops_it_on_loss,
            elect_again_campaigns_after_each_run,
        );

        #[tokio::test(flavor = "multi_thread")]
        async fn dead_server_and_wrong_url_are_one_line() {
            let port = fencelock_conformance::harness::free_port().unwrap();
            let dead = format!($dead, port = port);
            $crate::support::scenarios::dead_server_is_one_line(&dead, $needle).await;
        }
    };
    (@shared $url:path; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $case() {
            $crate::support::scenarios::$case(&$url().await).await;
        }
    )*};
}
