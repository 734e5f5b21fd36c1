#![doc = include_str!("../README.md")]

mod connect;

pub use connect::{StoreUrl, connect};
pub use fencelock_core::*;
