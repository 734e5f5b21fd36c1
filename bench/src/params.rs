//! Command-line parameters: what to run and for how long.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

/// Benchmarks fencelock against the raw operations and peer libraries on real servers it
/// starts itself, and rewrites BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "fencelock-bench", version)]
pub struct Cli {
    /// What to run (the whole benchmark when omitted).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The benchmark's parameters.
    #[command(flatten)]
    pub params: Params,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Internal: hold many leases in this process and report renewals, CPU and memory as JSON
    /// (the benchmark runs it as a child, so that its peak RSS is the client's alone).
    Hold(HoldArgs),
    /// Only the cost-per-cycle section: client and server CPU per acquire + release at many
    /// tasks, each mode alone, rounds alternating. Prints the section (Markdown) and writes
    /// nothing else.
    Cost(CostArgs),
}

/// Arguments of `cost`.
#[derive(Clone, Debug, Args, Serialize, Deserialize)]
pub struct CostArgs {
    /// Only these backends (comma-separated: redis,postgres,etcd).
    #[arg(long, value_delimiter = ',', default_value = "redis,postgres,etcd")]
    pub backends: Vec<String>,
    /// Concurrent tasks, each on its own name.
    #[arg(long, default_value_t = 64)]
    pub tasks: usize,
    /// Seconds of each run of each mode.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Rounds: each runs every mode once, in turn.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Skip the rslock peer.
    #[arg(long)]
    pub no_peers: bool,
    /// Where cargo builds the rslock peer (as for the whole benchmark).
    #[arg(long)]
    pub peer_target_dir: Option<PathBuf>,
    /// Also write the measurements as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Arguments of `hold`.
#[derive(Clone, Debug, Args, Serialize, Deserialize)]
pub struct HoldArgs {
    /// `redis`, `postgres` or `etcd`.
    #[arg(long)]
    pub backend: String,
    /// The server URL (comma-separated endpoints for etcd).
    #[arg(long)]
    pub url: String,
    /// How many leases to hold.
    #[arg(long)]
    pub leases: usize,
    /// How long to hold them, in seconds.
    #[arg(long)]
    pub hold_secs: f64,
    /// Their TTL in seconds (the watchdog renews every TTL/3).
    #[arg(long)]
    pub ttl_secs: u64,
    /// Turn the `Locker`'s renewal batching off: every watchdog renews alone.
    #[arg(long)]
    pub no_batching: bool,
    /// Acquires (and releases) in flight at once.
    #[arg(long, default_value_t = crate::hold::IN_FLIGHT)]
    pub in_flight: usize,
}

/// The benchmark's parameters. `--smoke` shrinks everything to a few seconds and skips peers.
#[derive(Clone, Debug, Args, Serialize, Deserialize)]
pub struct Params {
    /// Tiny counts and durations, no Python or rslock peers (what CI runs).
    #[arg(long)]
    pub smoke: bool,
    /// Where to write the report (default: BENCHMARKS.md at the repository root; in smoke
    /// mode a file in the temp directory).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Measured iterations of each uncontended operation (after warm-up).
    #[arg(long, default_value_t = 10_000)]
    pub iterations: usize,
    /// Warm-up iterations of each uncontended operation.
    #[arg(long, default_value_t = 1_000)]
    pub warmup: usize,
    /// Reference rows (round trips, alternative designs) run every Nth iteration.
    #[arg(long, default_value_t = 5)]
    pub reference_every: usize,
    /// Waiters on one name in the hand-off benchmark.
    #[arg(long, default_value_t = 16)]
    pub waiters: usize,
    /// How long each hand-off run lasts, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub handoff_secs: f64,
    /// Stop a hand-off run after this many hand-offs.
    #[arg(long, default_value_t = 2_000)]
    pub max_handoffs: usize,
    /// Concurrent tasks (each on its own name) in the throughput benchmark.
    #[arg(long, default_value_t = 64)]
    pub tasks: usize,
    /// Seconds of throughput measured for ours and for the raw floor each (alternating slices).
    #[arg(long, default_value_t = 10.0)]
    pub throughput_secs: f64,
    /// Length of one alternating throughput slice, in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub slice_secs: f64,
    /// Leases held in the renewal and memory benchmark, renewals batched (the `Locker`
    /// default; the held-lease targets are for 100,000).
    #[arg(long, default_value_t = 100_000)]
    pub leases: usize,
    /// Leases held by the second child, renewal batching off (one store call per renewal:
    /// 100,000 would ask for 20,000 calls/s, more than PostgreSQL or etcd serve on 2 cores).
    #[arg(long, default_value_t = 10_000)]
    #[serde(default = "default_alone_leases")]
    pub alone_leases: usize,
    /// How long the leases are held, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub hold_secs: f64,
    /// TTL of the held leases, in seconds (renewed every TTL/3).
    #[arg(long, default_value_t = 15)]
    pub renew_ttl_secs: u64,
    /// Seconds of each run of each mode in the cost-per-cycle section.
    #[arg(long, default_value_t = 2.0)]
    #[serde(default = "default_cost_secs")]
    pub cost_secs: f64,
    /// Rounds of the cost-per-cycle section (each runs every mode once, in turn).
    #[arg(long, default_value_t = 3)]
    #[serde(default = "default_cost_rounds")]
    pub cost_rounds: usize,
    /// Interleaved rounds when comparing with peers (each round runs ours, then every peer).
    #[arg(long, default_value_t = 4)]
    pub peer_rounds: usize,
    /// Skip the peers (rslock, redis-py, python-redis-lock).
    #[arg(long)]
    pub no_peers: bool,
    /// The Python venv the peers run in (created when missing).
    #[arg(long, default_value = "bench/.venv")]
    pub venv: PathBuf,
    /// Where cargo builds the rslock peer (default: $CARGO_TARGET_DIR/rslock-peer, else the
    /// peer's own `target/`).
    #[arg(long)]
    pub peer_target_dir: Option<PathBuf>,
    /// Rewrite the report from a run saved earlier (the `.json` file every run writes next to
    /// its report) instead of measuring: for changes to the report's text.
    #[arg(long)]
    pub render: Option<PathBuf>,
    /// Only these backends (comma-separated: redis,postgres,etcd,redis-cluster).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "redis,postgres,etcd,redis-cluster"
    )]
    pub backends: Vec<String>,
}

/// Runs saved before `alone_leases` existed held the default 10,000 in both children (the
/// report takes each child's count from its own result anyway).
fn default_alone_leases() -> usize {
    10_000
}

fn default_cost_secs() -> f64 {
    2.0
}

fn default_cost_rounds() -> usize {
    3
}

impl Params {
    /// The parameters actually used: smoke mode shrinks every count and duration.
    #[must_use]
    pub fn effective(mut self) -> Self {
        if self.smoke {
            self.iterations = self.iterations.min(40);
            self.warmup = self.warmup.min(5);
            self.reference_every = self.reference_every.clamp(1, 2);
            self.handoff_secs = self.handoff_secs.min(0.3);
            self.max_handoffs = self.max_handoffs.min(30);
            self.waiters = self.waiters.min(4);
            self.tasks = self.tasks.min(8);
            self.throughput_secs = self.throughput_secs.min(0.2);
            self.slice_secs = self.slice_secs.min(0.1);
            self.leases = self.leases.min(50);
            self.alone_leases = self.alone_leases.min(50);
            self.hold_secs = self.hold_secs.min(1.5);
            self.renew_ttl_secs = self.renew_ttl_secs.min(3);
            self.cost_secs = self.cost_secs.min(0.2);
            self.cost_rounds = self.cost_rounds.min(1);
            self.no_peers = true;
        }
        self.reference_every = self.reference_every.max(1);
        self.peer_rounds = self.peer_rounds.max(1);
        self.cost_rounds = self.cost_rounds.max(1);
        self
    }

    /// Whether `backend` was selected.
    pub fn runs(&self, backend: &str) -> bool {
        self.backends.iter().any(|b| b.trim() == backend)
    }

    /// One throughput slice.
    pub fn slice(&self) -> Duration {
        Duration::from_secs_f64(self.slice_secs.max(0.01))
    }

    /// How long each hand-off run lasts.
    pub fn handoff(&self) -> Duration {
        Duration::from_secs_f64(self.handoff_secs.max(0.01))
    }

    /// The command line that reproduces these parameters (for the report).
    pub fn describe(&self) -> String {
        format!(
            "iterations {} (+{} warm-up), reference rows every {}th iteration; hand-off: {} waiters, {} s or {} hand-offs; throughput: {} tasks, {} s each for ours and raw in {} s slices; renewal: {} leases batched and {} alone, TTL {} s, held {} s; cost per cycle: {} rounds of {} s per mode; peers: {}",
            self.iterations,
            self.warmup,
            self.reference_every,
            self.waiters,
            self.handoff_secs,
            self.max_handoffs,
            self.tasks,
            self.throughput_secs,
            self.slice_secs,
            self.leases,
            self.alone_leases,
            self.renew_ttl_secs,
            self.hold_secs,
            self.cost_rounds,
            self.cost_secs,
            if self.no_peers {
                "skipped".to_owned()
            } else {
                format!("{} interleaved rounds", self.peer_rounds)
            },
        )
    }
}
