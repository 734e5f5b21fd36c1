//! One line of a history: who, when (system-wide monotonic nanoseconds), and what happened.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The worker id the coordinator (fault injector and in-memory oracle) writes under.
pub const COORDINATOR: u32 = 0;

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine, so the
/// histories of workers and coordinator merge by timestamp. Never the wall clock.
pub fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|ts| {
            u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(ts.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}

/// One history line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The worker, or [`COORDINATOR`].
    pub w: u32,
    /// [`now_ns`] when the step finished.
    pub t: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Whether an operation went to the resource through the fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A fenced read: it presents the token and raises the mark like a write, so that a
    /// value read under an old token can never be written back.
    Read,
    /// A write of a new counter value.
    Write,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// A worker process started.
    Started {
        /// Its process id.
        pid: u32,
    },
    /// A grant: `sent` is when the acquire began, `t` when the grant came back.
    Acquired {
        /// The fencing token granted.
        token: u64,
        /// [`now_ns`] when the acquire call began.
        sent: u64,
    },
    /// The worker's wall clock (`SystemTime`, ms since the Unix epoch), logged after each
    /// grant: the clock-jump scenario shows with it which (faked) time the worker saw.
    /// No invariant reads it.
    Clock {
        /// Milliseconds since the Unix epoch, as the worker's wall clock says.
        wall_ms: i64,
    },
    /// The acquire failed (`regression` when the client saw a token not above an earlier one).
    AcquireFailed {
        /// The error kind, e.g. `Unavailable`.
        kind: String,
        /// The error message.
        error: String,
    },
    /// The resource answered a read.
    Read {
        /// The token presented.
        token: u64,
        /// The value read.
        value: u64,
    },
    /// The worker asked its guard, right before writing, whether the lease still holds.
    Check {
        /// The token of the guard.
        token: u64,
        /// What `is_valid()` said.
        valid: bool,
    },
    /// The harness asked the guard of a holder that a fault holds at its checkpoint whether
    /// the lease still holds. The holder itself is frozen there and writes afterwards as it
    /// decided before (as a paused process would), so a probe counts for I6 (no two guards
    /// valid at once) and never for I4 (no write after the holder saw its guard invalid).
    Probe {
        /// The token of the guard.
        token: u64,
        /// What `is_valid()` said.
        valid: bool,
    },
    /// A write the resource accepted.
    WriteAccepted {
        /// The token presented.
        token: u64,
        /// The value written.
        value: u64,
    },
    /// A read or write the fence rejected.
    Rejected {
        /// Read or write.
        op: Op,
        /// The token presented.
        token: u64,
        /// The mark the fence reported.
        high_water: u64,
    },
    /// A read or write whose outcome the worker does not know (an error).
    OpFailed {
        /// Read or write.
        op: Op,
        /// The token presented.
        token: u64,
        /// The error message.
        error: String,
    },
    /// The worker released (`ok` = false when release reported an error, e.g. already lost).
    Released {
        /// The token released.
        token: u64,
        /// Whether release returned `Ok`.
        ok: bool,
    },
    /// A permit holder's validity as it saw it: logged after each `Check` that said valid,
    /// with the guard's local deadline then, and right before its release, with the earlier
    /// of now and the deadline. A permit's window runs from its grant to the last of these
    /// (I7: no more windows overlap than the semaphore has permits).
    ValidUntil {
        /// The permit's token.
        token: u64,
        /// [`now_ns`] time until which the holder took its permit as valid.
        until: u64,
    },
    /// An election observer (`Election::observe`) reported a change of leader: the new
    /// leader's term, or `None` for a vacancy. I2 requires the terms one observer reports to
    /// rise strictly, and each to be a term some candidate was granted.
    LeaderObserved {
        /// The new leader's term; `None` when nobody leads.
        term: Option<u64>,
    },
    /// The coordinator injected a fault.
    FaultInjected {
        /// The fault's name.
        fault: String,
        /// Whether the holder (not the server) was hit: recovery is then measured from
        /// the injection, else from the heal.
        holder: bool,
    },
    /// The coordinator healed the fault injected last.
    FaultHealed {
        /// The fault's name.
        fault: String,
    },
    /// The in-memory oracle served one operation, in the order it served them.
    Oracle {
        /// Read or write.
        op: Op,
        /// The worker that sent it.
        worker: u32,
        /// The token presented.
        token: u64,
        /// Whether the oracle admitted it.
        accepted: bool,
        /// The mark the oracle reported on rejection.
        high_water: Option<u64>,
        /// The counter after the operation (in the semaphore scenarios: the place's counter).
        value: u64,
        /// The place written, where the resource has several, each fenced on its own (the
        /// semaphore scenarios: one per permit, see [`OracleOp::slot`](super::OracleOp::slot));
        /// `None`: the one counter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<u32>,
    },
}

impl Record {
    /// A record stamped now.
    pub fn now(w: u32, event: Event) -> Self {
        Self {
            w,
            t: now_ns(),
            event,
        }
    }

    /// Appends this record as one JSON line and flushes, so a killed worker loses nothing
    /// it had written.
    ///
    /// # Errors
    /// I/O errors of `out`.
    pub fn append_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let line = serde_json::to_string(self).map_err(std::io::Error::other)?;
        writeln!(out, "{line}")?;
        out.flush()
    }
}

/// Reads every JSON-lines history file in `paths`, merged and sorted by time.
///
/// A torn last line (a worker killed mid-write) is skipped; any other bad line is an error.
///
/// # Errors
/// I/O errors and malformed lines (with file and line number).
pub fn read_histories(paths: &[impl AsRef<Path>]) -> std::io::Result<Vec<Record>> {
    let mut all = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let file = std::fs::File::open(path)?;
        let lines: Vec<String> = std::io::BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()?;
        let last = lines.len().saturating_sub(1);
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(record) => all.push(record),
                Err(_) if i == last => {}
                Err(e) => {
                    return Err(std::io::Error::other(format!(
                        "{}:{}: {e}",
                        path.display(),
                        i + 1
                    )));
                }
            }
        }
    }
    all.sort_by_key(|r| r.t);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn records_round_trip_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w1.jsonl");
        let mut file = std::fs::File::create(&path).unwrap();
        let a = Record {
            w: 1,
            t: 20,
            event: Event::Acquired { token: 7, sent: 10 },
        };
        let b = Record {
            w: 1,
            t: 5,
            event: Event::Rejected {
                op: Op::Write,
                token: 6,
                high_water: 7,
            },
        };
        a.append_to(&mut file).unwrap();
        b.append_to(&mut file).unwrap();
        // A torn last line, as left by kill -9.
        write!(file, "{{\"w\":1,\"t\":3").unwrap();
        let read = read_histories(&[&path]).unwrap();
        assert_eq!(read, vec![b, a]);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(line.starts_with(r#"{"w":1,"t":20,"e":"acquired","token":7,"sent":10}"#));
    }
}
