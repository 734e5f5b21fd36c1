//! The real binary without a server: help, usage errors, and `run` over `memory://` (one
//! process, so it shows the program's environment, exit statuses and signals).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{
    assert_one_line_failure, check_json, fencelock, finding, next_line, output, spawn_with_lines,
    status, stderr, stdout, wait_exit,
};

const LIMIT: Duration = Duration::from_secs(10);

/// `fencelock run --store memory:// n -- sh -c script`.
fn sh_in_memory(script: &str) -> [&str; 8] {
    ["run", "--store", "memory://", "n", "--", "sh", "-c", script]
}

#[tokio::test]
async fn help_has_examples_and_exit_statuses() {
    let out = output(&["run", "--help"], LIMIT).await;
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for needle in [
        "FENCELOCK_TOKEN",
        "FENCELOCK_DEADLINE",
        "Examples:",
        "--no-wait",
        "--permits",
        "FENCELOCK_PERMITS",
        "79",
        "75",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
    let out = output(&["--help"], LIMIT).await;
    assert!(stdout(&out).contains("Exit status"));
}

#[tokio::test]
async fn elect_and_leader_help_name_the_term_and_statuses() {
    let out = output(&["elect", "--help"], LIMIT).await;
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for needle in ["FENCELOCK_TERM", "--again", "--as", "--timeout", "75", "79"] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
    let out = output(&["leader", "--help"], LIMIT).await;
    let help = stdout(&out);
    for needle in ["--watch", "--json", "--every", "\"led\""] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

/// `elect` over `memory://`: the program runs as leader with the term (as FENCELOCK_TERM and
/// FENCELOCK_TOKEN) and the name, and fencelock exits with its status.
#[tokio::test]
async fn elect_passes_the_term_and_mirrors_exit_status() {
    let out = output(
        &[
            "elect",
            "--store",
            "memory://",
            "--as",
            "web-3",
            "scheduler",
            "--",
            "sh",
            "-c",
            r#"echo "$FENCELOCK_TERM $FENCELOCK_TOKEN $FENCELOCK_NAME"; exit 7"#,
        ],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1 1 scheduler");
    assert!(
        stderr(&out).contains("elected leader of `scheduler` as web-3 with term 1"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn completions_for_bash() {
    let out = output(&["completions", "bash"], LIMIT).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("_fencelock"));
}

#[tokio::test]
async fn usage_errors_are_one_line() {
    for (args, needle) in [
        (vec!["run", "n", "--", "true"], "FENCELOCK_STORE"),
        (vec!["status", "--store", "ftp://x", "n"], "unknown scheme"),
        (vec!["status", "--store", "nonsense", "n"], "scheme://"),
        (vec!["status", "--store", "etcd://", "n"], "etcd://"),
        (
            vec![
                "run",
                "--store",
                "memory://",
                "--ttl",
                "5 parsecs",
                "n",
                "--",
                "true",
            ],
            "not a duration",
        ),
        (
            vec![
                "run",
                "--store",
                "memory://",
                "--grace",
                "",
                "n",
                "--",
                "true",
            ],
            "empty duration",
        ),
        (vec!["run", "--store", "memory://", "n"], "PROGRAM"),
        (
            vec![
                "run",
                "--store",
                "memory://",
                "--wait",
                "1s",
                "--no-wait",
                "n",
                "--",
                "true",
            ],
            "cannot be used",
        ),
        (vec!["release", "--store", "memory://", "n"], "--force"),
        (vec!["frobnicate"], "frobnicate"),
        (
            vec![
                "run",
                "--store",
                "memory://",
                "--permits",
                "-1",
                "n",
                "--",
                "true",
            ],
            "-1",
        ),
        (
            vec![
                "status",
                "--store",
                "memory://",
                "--permits",
                "--prefix",
                "a",
                "n",
            ],
            "cannot be used",
        ),
    ] {
        let out = output(&args, LIMIT).await;
        assert_one_line_failure(&out, status::USAGE, needle);
    }
}

#[tokio::test]
async fn store_from_environment_and_password_never_printed() {
    let mut cmd = fencelock(&["status", "n"]);
    cmd.env("FENCELOCK_STORE", "gopher://:hunter2@host");
    let out = cmd.output().await.unwrap();
    assert_one_line_failure(&out, status::USAGE, "unknown scheme `gopher`");
    assert!(!stderr(&out).contains("hunter2"));
    let mut cmd = fencelock(&["status", "--json", "n"]);
    cmd.env("FENCELOCK_STORE", "memory://");
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `check` over `memory://`: the store's own diagnosis (one warning: it is one process) and
/// the lock round trip, as text and as JSON; `check --help` documents every exit status.
#[tokio::test]
async fn check_renders_the_stores_diagnosis() {
    let out = output(&["check", "--store", "memory://"], LIMIT).await;
    let text = stdout(&out);
    assert_eq!(
        text.lines().next(),
        Some("store    memory (in-process)"),
        "{text}"
    );
    assert!(text.contains("WARN     scope = one process: "), "{text}");
    assert!(text.contains("ok       lock operations = work: "), "{text}");
    assert_eq!(
        out.status.code(),
        Some(status::WARNINGS_OR_DECLINED),
        "{text}"
    );

    let (code, json) = check_json("memory://", &[]).await;
    assert_eq!(code, Some(status::WARNINGS_OR_DECLINED));
    assert_eq!(json["backend"], "memory");
    assert_eq!(json["server"], "in-process");
    assert_eq!(json["verdict"], "warn");
    assert_eq!(finding(&json, "scope")["verdict"], "warn");

    let out = output(&["check", "--help"], LIMIT).await;
    let help = stdout(&out);
    for needle in ["--json", "78", "69", "LeaseStore::diagnose"] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[tokio::test]
async fn check_of_a_dead_server_is_one_line() {
    let port = fencelock_conformance::harness::free_port().unwrap();
    for url in [
        format!("redis://:hunter2@127.0.0.1:{port}"),
        format!("etcd://127.0.0.1:{port}"),
    ] {
        for json in [false, true] {
            let mut args = vec!["check", "--store", &url, "--connect-timeout", "1s"];
            if json {
                args.push("--json");
            }
            let out = output(&args, LIMIT).await;
            assert_one_line_failure(&out, status::UNAVAILABLE, "check that the server is up");
            assert_eq!(
                stdout(&out),
                "",
                "nothing on stdout when nothing was checked"
            );
            assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
        }
    }
}

#[tokio::test]
async fn run_passes_token_and_mirrors_exit_status() {
    let out = output(
        &[
            "run",
            "--store",
            "memory://",
            "job/1",
            "--",
            "sh",
            "-c",
            r#"echo "$FENCELOCK_TOKEN $FENCELOCK_NAME"; exit 7"#,
        ],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout(&out).trim(), "1 job/1");
    assert!(stderr(&out).contains("memory://"), "the warning is missing");

    let out = output(&sh_in_memory("kill -USR1 $$"), LIMIT).await;
    assert_eq!(out.status.code(), Some(128 + Signal::SIGUSR1 as i32));

    let out = output(
        &[
            "run",
            "--store",
            "memory://",
            "n",
            "--",
            "/nonexistent/program",
        ],
        LIMIT,
    )
    .await;
    assert_one_line_failure(&out, status::NOT_FOUND, "/nonexistent/program");
}

/// `run --permits` over `memory://`: the program gets the permit's token, the semaphore's name
/// and FENCELOCK_PERMITS; `status --permits` of a semaphore nobody holds shows it free.
#[tokio::test]
async fn run_with_permits_passes_the_permit_and_its_limit() {
    let out = output(
        &[
            "run",
            "--store",
            "memory://",
            "--permits",
            "3",
            "exports",
            "--",
            "sh",
            "-c",
            r#"echo "$FENCELOCK_TOKEN $FENCELOCK_NAME $FENCELOCK_PERMITS"; exit 5"#,
        ],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "1 exports 3");

    let out = output(
        &["status", "--store", "memory://", "--permits", "exports"],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().nth(1).unwrap().starts_with("exports  free "),
        "{text}"
    );
}

#[tokio::test]
async fn signals_are_forwarded_to_the_program() {
    for (signal, code) in [
        (Signal::SIGTERM, 11),
        (Signal::SIGINT, 12),
        (Signal::SIGHUP, 13),
    ] {
        let script = format!(
            r#"trap 'echo got; exit {code}' {}; echo ready; while :; do sleep 0.05; done"#,
            signal.as_str().trim_start_matches("SIG")
        );
        let (mut cli, mut lines) = spawn_with_lines(&sh_in_memory(&script));
        assert_eq!(next_line(&mut lines, LIMIT).await, "ready");
        kill(
            Pid::from_raw(i32::try_from(cli.id().unwrap()).unwrap()),
            signal,
        )
        .unwrap();
        assert_eq!(next_line(&mut lines, LIMIT).await, "got");
        assert_eq!(
            wait_exit(&mut cli, LIMIT).await.code(),
            Some(code),
            "{signal}"
        );
    }
}

/// The fail-closed case the lease cannot cover: fencelock itself killed with SIGKILL. Nothing
/// renews the lease or stops the program any more, so the kernel must kill the program now.
#[tokio::test]
async fn the_program_dies_when_fencelock_is_killed() {
    let (mut cli, mut lines) = spawn_with_lines(&sh_in_memory("echo ready; exec sleep 600"));
    assert_eq!(next_line(&mut lines, LIMIT).await, "ready");
    let fencelock = Pid::from_raw(i32::try_from(cli.id().unwrap()).unwrap());
    kill(fencelock, Signal::SIGKILL).unwrap();
    assert_eq!(wait_exit(&mut cli, LIMIT).await.signal(), Some(9));
    // The program (now `sleep`) holds the last write end of the pipe: end of file means it is
    // gone. Untethered it would sleep on for ten minutes.
    let eof = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .expect("the program outlived fencelock");
    assert_eq!(eof.unwrap(), None);
}

/// The program starts with the signal dispositions of a normal child (Rust ignores SIGPIPE in
/// its own processes, and the tether is one): `yes | head` must end `yes` by SIGPIPE.
#[tokio::test]
async fn the_program_does_not_inherit_an_ignored_sigpipe() {
    let out = output(&sh_in_memory("grep SigIgn /proc/$$/status"), LIMIT).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let mask = text.trim().trim_start_matches("SigIgn:").trim();
    let ignored = u64::from_str_radix(mask, 16).unwrap_or_else(|_| panic!("{text:?}"));
    assert_eq!(ignored & (1 << (Signal::SIGPIPE as u32 - 1)), 0, "{text:?}");
}

/// The tether starts the program only while its parent is the fencelock that asked for it:
/// a parent that died before the parent-death signal was set could not be noticed later.
#[tokio::test]
async fn the_tether_runs_the_program_only_under_its_own_parent() {
    const TETHER: &str = "__fencelock-tether";
    let me = std::process::id().to_string();
    let ran = output(&[TETHER, &me, "--", "sh", "-c", "echo ran"], LIMIT).await;
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert_eq!(stdout(&ran), "ran\n");

    let someone_else = (std::process::id() + 1).to_string();
    let out = output(
        &[TETHER, &someone_else, "--", "sh", "-c", "echo ran"],
        LIMIT,
    )
    .await;
    assert_one_line_failure(&out, 70, "exited before the program started");
    assert_eq!(stdout(&out), "");

    let out = output(&[TETHER, &me, "sh", "-c", "echo ran"], LIMIT).await;
    assert_one_line_failure(&out, status::USAGE, "`--`");
    let out = output(&[TETHER, "x", "--", "sh"], LIMIT).await;
    assert_one_line_failure(&out, status::USAGE, "internal to `fencelock run`");
}
