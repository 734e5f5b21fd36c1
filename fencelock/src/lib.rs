#![doc = include_str!("../README.md")]

mod connect;

pub use connect::{StoreUrl, connect};
pub use fencelock_core::*;

/// The workspace README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
