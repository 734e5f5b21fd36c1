//! A terminal session: `fencelock run` under a pseudo-terminal (`script(1)` from util-linux)
//! draws the "waiting for" progress line with the holder's token (or, with `--permits`, the
//! permits held); without a terminal it stays quiet.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness;
use support::{BIN, hold, output, status, stderr, unique_name};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn waiting_shows_a_live_progress_line_only_on_a_terminal() {
    let url = harness::shared_postgres().await.unwrap().url().to_owned();
    let name = unique_name("terminal");
    let (mut holder, token) = hold(&url, &["--ttl", "30s", &name]).await;

    // Under a pty: the line is drawn (and redrawn in place with \r + erase-line).
    let (code, screen) = on_a_terminal(&format!(
        "{BIN} run --store '{url}' --wait 1500ms '{name}' -- true"
    ))
    .await;
    assert_eq!(code, Some(status::BUSY), "{screen}");
    let expected = format!("fencelock: waiting for `{name}`: held by token {token} (");
    assert!(
        screen.contains(&expected),
        "{expected:?} not on the terminal:\n{screen:?}"
    );
    assert!(screen.contains("of 1.5s"), "{screen:?}");
    assert!(
        screen.contains("\r\x1b[2K"),
        "not redrawn in place: {screen:?}"
    );
    assert!(
        screen.matches("waiting for").count() >= 2,
        "the line was not refreshed: {screen:?}"
    );

    // Without a terminal: only the final one-line failure.
    let out = output(
        &[
            "run", "--store", &url, "--wait", "700ms", &name, "--", "true",
        ],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(status::BUSY));
    assert!(!stderr(&out).contains("waiting for"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));

    // SIGTERM goes on to the program's process group, so nothing outlives the test.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(holder.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = support::wait_exit(&mut holder, LIMIT).await;
    assert_eq!(exit.code(), Some(128 + 15));
}

/// Runs `command` under a pseudo-terminal: its exit status and everything it showed.
async fn on_a_terminal(command: &str) -> (Option<i32>, String) {
    let session = tokio::time::timeout(
        LIMIT,
        Command::new("script")
            .args(["-qfec", command, "/dev/null"])
            .env_remove("FENCELOCK_STORE")
            .output(),
    )
    .await
    .unwrap()
    .expect("script(1) from util-linux is needed for this test");
    (
        session.status.code(),
        String::from_utf8_lossy(&session.stdout).into_owned(),
    )
}

/// Waiting for a permit of a full semaphore shows how many are held and by which tokens.
#[tokio::test(flavor = "multi_thread")]
async fn waiting_for_a_permit_shows_the_permits_held() {
    let url = harness::shared_postgres().await.unwrap().url().to_owned();
    let name = unique_name("terminal-permits");
    let (mut holder, token) = hold(&url, &["--permits", "1", "--ttl", "30s", &name]).await;
    let (code, screen) = on_a_terminal(&format!(
        "{BIN} run --store '{url}' --permits 1 --wait 1500ms '{name}' -- true"
    ))
    .await;
    assert_eq!(code, Some(status::BUSY), "{screen}");
    let expected = format!(
        "fencelock: waiting for a permit of `{name}`: 1 of 1 held (token {token}; the soonest ends in "
    );
    assert!(
        screen.contains(&expected),
        "{expected:?} not on the terminal:\n{screen:?}"
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(holder.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = support::wait_exit(&mut holder, LIMIT).await;
    assert_eq!(exit.code(), Some(128 + 15));
}
