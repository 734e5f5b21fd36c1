//! Histories of fault-injection runs and the checkers over them.
//!
//! Workers and the coordinator each append [`Record`]s (JSON lines, stamped with the
//! system-wide monotonic clock) to their own file; [`read_histories`] merges them and
//! [`check`] judges the invariants I1–I6 (see the `check` module docs). Pure logic, no
//! backend: the unit tests feed synthetic histories, including ones that break each
//! invariant, so every checker is shown to fail when it should.

mod check;
mod record;
#[cfg(test)]
mod tests;

pub use check::{Bounds, Invariant, OracleLog, OracleOp, Report, Violation, check};
pub use record::{COORDINATOR, Event, Op, Record, now_ns, read_histories};
