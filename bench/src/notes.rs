//! The prose of BENCHMARKS.md: what the numbers mean, and why a missed target was missed.

use crate::run::Report;

/// How the servers were set up.
pub fn setup() -> String {
    "Servers (started by the harness in `conformance-tests/src/harness/`): redis-server without \
     persistence; PostgreSQL with `fsync=off` and `full_page_writes=off` (the harness default; \
     `synchronous_commit` stays on and the store's grants are \"durable\", so each grant waits for \
     its WAL write, not for a disk flush); a single-member etcd (which does fsync its WAL)."
        .to_owned()
}

/// What the load says about the run.
pub fn load(before: &str, after: &str, nproc: usize) -> String {
    format!(
        "The load average was {before} at the start and {after} at the end on {nproc} cores. The \
         client, the server and (for the peers) the Python interpreter share those cores, so \
         everything runs slower than on an idle machine; ours and the floors are interleaved so \
         that the ratios stay comparable."
    )
}

/// Why a missed target was missed and what would close it.
pub fn missed(key: &str, report: &Report) -> String {
    let _ = report;
    format!("(no explanation recorded for `{key}`)")
}

/// Under the uncontended table of `backend`.
pub fn uncontended(backend: &str) -> String {
    let _ = backend;
    String::new()
}

/// Under the peers table.
pub fn peers() -> String {
    String::new()
}

/// Under the hand-off table.
pub fn handoff() -> String {
    String::new()
}

/// Under the throughput table.
pub fn throughput() -> String {
    "No target was set for throughput; the ratio is shown against the raw floor under the same concurrency.".to_owned()
}

/// Under the renewal table.
pub fn renewal() -> String {
    String::new()
}

/// What batching renewals would take.
pub fn batching() -> String {
    String::new()
}
