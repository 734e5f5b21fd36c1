//! An example fencelock backend, written as a third-party author would: against
//! `fencelock-core` alone, outside the workspace's library crates, and proven with the shared
//! suites of `fencelock-conformance` (see `tests/`).
//!
//! - [`server::TableServer`] stands in for the database a real backend talks to: a table of
//!   leases and fenced values with its own clock, whose methods are the wire protocol (one
//!   atomic step each), and which can be stopped and started again.
//! - [`TableStore`] implements `LeaseStore` over it, [`TableFence`] implements `Fence`.
//!
//! The guide to writing a backend, `docs/WRITING_A_BACKEND.md`, walks through this crate; its
//! code is compiled as the doctests of [`guide`], and `tests/guide.rs` checks that it quotes
//! `src/store.rs` and `src/fence.rs` word for word.

// The store's code is quoted in the guide, where it is compiled as a doctest that sees this
// crate from outside; naming the crate the same way here lets one text compile in both places.
extern crate self as fencelock_example_table_store;

mod fence;
pub mod server;
mod store;

pub use fence::TableFence;
pub use store::TableStore;

/// The name errors, logs and metrics use for this backend.
pub const STORE: &str = "table";

#[doc = include_str!("../../../docs/WRITING_A_BACKEND.md")]
pub mod guide {}
