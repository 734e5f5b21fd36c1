#![doc = include_str!("../README.md")]

mod builder;
mod classify;
mod cluster;
mod cluster_wakeups;
mod config;
mod diagnose;
mod fence;
mod grant;
pub mod keys;
mod list;
mod permits;
mod pipeline;
pub mod redlock;
mod reply;
pub mod scripts;
mod sentinel;
mod store;
mod tls;
mod wakeups;

pub use builder::RedisBuilder;
pub use config::RedisConfig;
pub use fence::RedisFence;
pub use keys::KeyLayout;
pub use redlock::{RedlockBuilder, RedlockConfig, RedlockFence, RedlockLeaseStore};
pub use sentinel::SentinelConnection;
pub use store::RedisLeaseStore;

/// The `redis` driver this crate is built on, so you name the same version.
pub use redis;
