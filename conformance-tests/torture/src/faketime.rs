//! Scenario 8: worker processes under libfaketime, their wall clock moved by a spec file the
//! runner rewrites mid-run.
//!
//! `DONT_FAKE_MONOTONIC=1` is essential: libfaketime fakes `CLOCK_MONOTONIC` too by default,
//! and fencelock's expiry runs on the client's monotonic clock (tokio's `Instant`) and the
//! server's clock, never on the client's wall clock. Faking the monotonic clock would test
//! something else (a broken monotonic clock, which no lock can survive), and it would also
//! break the history, whose records from every process merge on `CLOCK_MONOTONIC`.

use std::path::{Path, PathBuf};

use fencelock_conformance::history::{Event, Record};
use tokio::process::Command;

use crate::worker::wall_ms;

/// Where Debian's `libfaketime` package puts the library (the `faketime` package depends on it).
const LIBRARIES: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
];

/// The offset the workers start with.
pub const START: (&str, i64) = ("+2h", 2 * HOUR);
/// The offsets the workers' clocks jump to, one per round, cycling.
pub const JUMPS: [(&str, i64); 4] = [
    ("-1d", -DAY),
    ("+30d", 30 * DAY),
    ("-3h", -3 * HOUR),
    ("+2h", 2 * HOUR),
];

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// How far an observed offset may be from the planned one (process start, rounding).
const TOLERANCE_MS: i64 = 60_000;

/// The shared spec file and the library.
#[derive(Debug)]
pub struct FakeClock {
    library: PathBuf,
    spec_file: PathBuf,
    /// Real wall clock minus monotonic clock, in ms, taken at start (the runner is not faked).
    real_minus_mono_ms: i64,
}

impl FakeClock {
    /// Finds libfaketime and writes the starting offset to `dir/faketime`.
    ///
    /// # Errors
    /// libfaketime missing (a failure, never a skip), or the file not writable.
    pub fn new(dir: &Path) -> Result<Self, String> {
        let library = LIBRARIES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                format!(
                    "libfaketime not found at {}; install the `faketime` package (scripts/install-deps)",
                    LIBRARIES.join(" or ")
                )
            })?;
        let clock = Self {
            library,
            spec_file: dir.join("faketime"),
            real_minus_mono_ms: wall_ms() - mono_ms(fencelock_conformance::history::now_ns()),
        };
        clock.set(START.0)?;
        Ok(clock)
    }

    /// Makes every worker's wall clock read real time + `spec` from its next clock read on.
    ///
    /// # Errors
    /// The file not writable.
    pub fn set(&self, spec: &str) -> Result<(), String> {
        // Write-then-rename, so that a worker never reads a half-written spec.
        let tmp = self.spec_file.with_extension("tmp");
        std::fs::write(&tmp, format!("{spec}\n")).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &self.spec_file).map_err(|e| e.to_string())
    }

    /// Runs `command` under libfaketime, reading its offset from the spec file on every call.
    pub fn apply(&self, command: &mut Command) {
        command
            .env("LD_PRELOAD", &self.library)
            .env("FAKETIME_TIMESTAMP_FILE", &self.spec_file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("DONT_FAKE_MONOTONIC", "1");
    }

    /// The offset (ms) each worker `Clock` record shows, by monotonic time.
    pub fn observed(&self, history: &[Record]) -> Vec<(u64, i64)> {
        history
            .iter()
            .filter_map(|r| match r.event {
                Event::Clock { wall_ms } => {
                    Some((r.t, wall_ms - (mono_ms(r.t) + self.real_minus_mono_ms)))
                }
                _ => None,
            })
            .collect()
    }

    /// Checks that the workers saw each planned offset: `plan` lists (monotonic ns from
    /// which it applies, offset ms). Returns what went wrong, if anything.
    pub fn verify(&self, history: &[Record], plan: &[(u64, i64)]) -> Vec<String> {
        let seen = self.observed(history);
        let mut problems = Vec::new();
        for (i, &(from, offset)) in plan.iter().enumerate() {
            let until = plan.get(i + 1).map_or(u64::MAX, |p| p.0);
            let window: Vec<i64> = seen
                .iter()
                .filter(|(t, _)| *t > from && *t < until)
                .map(|&(_, o)| o)
                .collect();
            if !window.iter().any(|o| (o - offset).abs() <= TOLERANCE_MS) {
                problems.push(format!(
                    "faketime: no worker saw the wall-clock offset {offset} ms (saw {:?} ms)",
                    window.first()
                ));
            }
        }
        problems
    }
}

fn mono_ms(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}
