#![doc = include_str!("../README.md")]

mod builder;
mod classify;
mod config;
mod diagnose;
mod fence;
mod fenced_table;
mod ident;
mod migrate;
mod pooler;
mod statements;
mod store;
mod wakeups;

pub use builder::PgBuilder;
pub use config::PgConfig;
pub use fence::PgFence;
pub use fenced_table::{FencedTable, PgQuery};
pub use ident::{Ident, TableName};
pub use store::PgLeaseStore;

/// The driver, re-exported so that pools and transactions you pass in are the same version.
pub use sqlx;
