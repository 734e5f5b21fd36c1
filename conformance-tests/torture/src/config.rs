//! What the coordinator tells each worker process (one JSON argument).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the fenced counter lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OracleKind {
    /// The in-memory `FenceGate` in the coordinator, over the control socket.
    Gate,
    /// A PostgreSQL table written through `fencelock_postgres::FencedTable`.
    Postgres {
        /// The oracle database (not the lock's).
        url: String,
    },
}

/// How a worker takes part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes the lock with `Locker::acquire` and writes with the token.
    #[default]
    Lock,
    /// Campaigns in the election of the lock's name (`Election::campaign`) and writes with
    /// its term while it leads.
    Candidate,
    /// Follows that election (`Election::observe`) and records each change of leader; never
    /// writes.
    Observer,
    /// Takes a permit of the semaphore of the lock's name (`Locker::semaphore`, limit
    /// [`WorkerConfig::permit_limit`]), claims a place whose last holder's permit is no longer
    /// held, and writes there with the permit's token.
    Permit,
}

/// One worker's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The worker id (≥ 1; 0 is the coordinator).
    pub id: u32,
    /// The lock store URL, as `fencelock::connect` takes it.
    pub store_url: String,
    /// The lock name (the election's, for candidates and observers).
    pub lock: String,
    /// Lock holder, election candidate or election observer.
    #[serde(default)]
    pub role: Role,
    /// The semaphore's limit, for [`Role::Permit`].
    #[serde(default)]
    pub permit_limit: Option<u32>,
    /// Lease TTL in ms.
    pub ttl_ms: u64,
    /// Renew interval in ms.
    pub renew_ms: u64,
    /// The store's per-request timeout in ms, where the backend takes one (etcd); `None`:
    /// the backend's default.
    #[serde(default)]
    pub op_timeout_ms: Option<u64>,
    /// A separate URL for the PostgreSQL store's LISTEN connection (straight to PostgreSQL
    /// when `store_url` is a pooler's).
    #[serde(default)]
    pub listen_url: Option<String>,
    /// Poll interval of waiters in ms.
    pub poll_ms: u64,
    /// Longest random work between read and write, in ms.
    pub work_max_ms: u64,
    /// The coordinator's socket.
    pub socket: PathBuf,
    /// This worker's history file.
    pub history: PathBuf,
    /// Seed of this worker's random choices.
    pub seed: u64,
    /// The fenced resource.
    pub oracle: OracleKind,
    /// Whether reads and writes go through the fence (false: the control run).
    pub fenced: bool,
    /// A planted bug (only with the `mutations` feature).
    pub mutation: Option<String>,
    /// Shared state of planted bugs (e.g. the lossy token counter file).
    pub run_dir: PathBuf,
}
