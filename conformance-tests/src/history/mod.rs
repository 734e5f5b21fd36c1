//! Histories of fault-injection runs and the checkers over them.
//!
//! Workers and the coordinator each append [`Record`]s (JSON lines, stamped with the
//! system-wide monotonic clock) to their own file; [`read_histories`] merges them and
//! [`check`] judges the invariants I1–I7 (see the `check` module docs). The unit tests feed
//! synthetic histories, including ones that break each invariant, so every checker is shown
//! to fail when it should.
//!
//! [`check_store`] runs the whole loop in this process against a store the caller supplies
//! (contending workers, holders whose store calls stall past the TTL, optionally the
//! caller's own server fault) and returns the checkers' [`Report`]: fault injection for a
//! backend the torture suite does not know.

mod check;
mod options;
mod record;
mod stall;
mod store_check;
#[cfg(test)]
mod tests;

pub use check::{Bounds, Invariant, OracleLog, OracleOp, Report, Violation, check};
pub use options::CheckOptions;
pub use record::{COORDINATOR, Event, Op, Record, now_ns, read_histories};
pub use store_check::check_store;
