//! A terminal session: `fencelock run` under a pseudo-terminal (`script(1)` from util-linux)
//! draws the "waiting for" progress line with the holder's token; without a terminal it
//! stays quiet.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use fencelock_conformance::harness;
use support::{BIN, next_line, output, spawn_with_lines, status, stderr, unique_name};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn waiting_shows_a_live_progress_line_only_on_a_terminal() {
    let url = harness::shared_postgres().await.unwrap().url().to_owned();
    let name = unique_name("terminal");
    let (mut holder, mut lines) = spawn_with_lines(&[
        "run",
        "--store",
        &url,
        "--ttl",
        "30s",
        &name,
        "--",
        "sh",
        "-c",
        r#"echo "$FENCELOCK_TOKEN"; exec sleep 60"#,
    ]);
    let token = next_line(&mut lines, LIMIT).await;

    // Under a pty: the line is drawn (and redrawn in place with \r + erase-line).
    let command = format!("{BIN} run --store '{url}' --wait 1500ms '{name}' -- true");
    let session = tokio::time::timeout(
        LIMIT,
        Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env_remove("FENCELOCK_STORE")
            .output(),
    )
    .await
    .unwrap()
    .expect("script(1) from util-linux is needed for this test");
    let screen = String::from_utf8_lossy(&session.stdout);
    assert_eq!(session.status.code(), Some(status::BUSY), "{screen}");
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
