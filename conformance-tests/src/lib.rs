//! The conformance suite every fencelock backend passes, and the server harness.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod harness;
