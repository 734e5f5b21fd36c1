#![doc = include_str!("../../REDLOCK.md")]

mod acquire;
mod builder;
mod config;
mod diagnose;
mod fence;
mod instance;
mod quorum;
mod release;
mod reply;
mod rollback;
mod store;
mod watch;

pub use builder::RedlockBuilder;
pub use config::{DEFAULT_DRIFT_FACTOR, MAX_SERVERS, RedlockConfig};
pub use fence::RedlockFence;
pub use store::RedlockLeaseStore;
