#![doc = include_str!("../README.md")]

mod acquire;
mod admin;
mod builder;
mod classify;
mod config;
mod contender;
mod diagnose;
mod etcd_lease;
mod fence;
mod fence_owner;
mod keepalive;
mod keys;
mod list;
mod observe;
mod permit_wait;
mod permits;
mod queue_snapshot;
mod renew_batch;
mod renew_release;
mod rpc;
mod spare;
mod store;
mod wait;

pub use builder::EtcdBuilder;
pub use config::EtcdConfig;
pub use diagnose::revokes_leases_early;
pub use fence::{EtcdFence, FENCE_TOKEN_SUFFIX};
pub use store::EtcdLeaseStore;

/// The etcd client this crate is built on, re-exported so that your `Client`, `ConnectOptions`
/// and TLS types are the same version as ours.
pub use etcd_client;
