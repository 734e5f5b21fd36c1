#![doc = include_str!("../README.md")]

pub mod config;
pub mod coordinator;
pub mod faketime;
pub mod mutations;
pub mod pg_oracle;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod servers;
pub mod suite;
pub mod timeline;
pub mod worker;

pub use config::{OracleKind, Role, WorkerConfig};
pub use mutations::Mutation;
pub use runner::{Oracle, RunOutcome, RunSpec, run};
pub use scenario::{Backend, Scenario};
