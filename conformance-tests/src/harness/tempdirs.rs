//! Temporary directories for servers, and a janitor for the ones a killed
//! test process left behind.

use std::path::Path;
use std::sync::Once;

use tempfile::TempDir;

use super::error::{Result, ResultExt};
use super::postgres::remove_stale_shared_memory;

/// Every harness directory is named `fencelock-<pid>-<kind>-<random>`.
const PREFIX: &str = "fencelock-";

/// A fresh temporary directory for a server of `kind`, removed on drop.
pub(crate) fn server_dir(kind: &str) -> Result<TempDir> {
    static JANITOR: Once = Once::new();
    JANITOR.call_once(remove_stale_dirs);
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-{kind}-", std::process::id()))
        .tempdir()
        .ctx(|| format!("create a temporary directory for {kind}"))
}

/// Remove the directories of dead test processes. Shared servers live in
/// statics whose destructors never run, so their directories stay behind
/// when the process exits (the servers themselves die by `PDEATHSIG`).
fn remove_stale_dirs() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        remove_stale_shared_memory(&path.join("data"));
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// Whether `pid` names a live (not zombie) process.
pub(crate) fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        Ok(stat) => !matches!(stat_state(&stat), Some('Z' | 'X') | None),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/<pid>/stat` line.
pub(crate) fn stat_state(stat: &str) -> Option<char> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().next()?.chars().next()
}

/// The process group of a `/proc/<pid>/stat` line.
pub(crate) fn stat_pgrp(stat: &str) -> Option<i32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after comm: state ppid pgrp ...
    after_comm.split_whitespace().nth(2)?.parse().ok()
}

/// The parent pid of a `/proc/<pid>/stat` line.
pub(crate) fn stat_ppid(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}
