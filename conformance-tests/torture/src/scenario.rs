//! The named scenarios and the backends each applies to.

use std::time::Duration;

/// A lock backend as the torture runs set it up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// Redis without persistence.
    Redis,
    /// Redis with `appendfsync always`.
    RedisAof,
    /// PostgreSQL.
    Postgres,
    /// PostgreSQL behind pgbouncer in transaction mode (two server connections); LISTEN
    /// straight to PostgreSQL.
    PostgresPooled,
    /// Single-node etcd.
    Etcd,
    /// Three-node etcd cluster.
    Etcd3,
    /// Redis Cluster: three primaries with a replica each, without persistence
    /// (`redis+cluster://`).
    RedisCluster,
    /// Redis behind Sentinel: a primary, a replica, three sentinels, without persistence
    /// (`redis+sentinel://`).
    RedisSentinel,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 8] = [
        Self::Redis,
        Self::RedisAof,
        Self::Postgres,
        Self::PostgresPooled,
        Self::Etcd,
        Self::Etcd3,
        Self::RedisCluster,
        Self::RedisSentinel,
    ];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::RedisAof => "redis-aof",
            Self::Postgres => "postgres",
            Self::PostgresPooled => "postgres-pgbouncer",
            Self::Etcd => "etcd",
            Self::Etcd3 => "etcd-3node",
            Self::RedisCluster => "redis-cluster",
            Self::RedisSentinel => "redis-sentinel",
        }
    }

    /// Lease TTL: 500 ms, except etcd (whole seconds: 1 s).
    pub fn ttl(self) -> Duration {
        match self {
            Self::Etcd | Self::Etcd3 => Duration::from_secs(1),
            _ => Duration::from_millis(500),
        }
    }

    /// The store's per-request timeout: the TTL for etcd (its default, 5 s, is what a
    /// request to a killed or paused leader waits before it fails; see docs/RELIABILITY.md),
    /// the backend's default elsewhere.
    pub fn op_timeout(self) -> Option<Duration> {
        match self {
            Self::Etcd | Self::Etcd3 => Some(self.ttl()),
            _ => None,
        }
    }

    /// Renew interval: TTL / 3.
    pub fn renew_every(self) -> Duration {
        self.ttl() / 3
    }

    /// Allowance on top of TTL + renew interval for re-acquiring after a fault: waking the
    /// waiter, reconnecting, and for etcd its lease granularity.
    pub fn slack(self) -> Duration {
        match self {
            Self::Etcd | Self::Etcd3 => Duration::from_millis(1500),
            _ => Duration::from_millis(1000),
        }
    }
}

/// A fault scenario (numbers as in issue 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// 1: the holder SIGSTOPped for 3×TTL right before its write, then resumed.
    HolderPause,
    /// 2: the holder's only runtime thread blocked for 2×TTL right before its write.
    HolderStarve,
    /// 3: the holder killed with SIGKILL right before its write.
    HolderKill,
    /// 4: the lock server killed with SIGKILL and restarted (same data directory).
    ServerRestart,
    /// 5: the etcd leader killed (and later restarted).
    LeaderKill,
    /// 5: the etcd leader SIGSTOPped for 3×TTL.
    LeaderPause,
    /// 6: Redis failover to a lagging replica.
    RedisFailover,
    /// 6: PostgreSQL primary killed (SIGKILL) and a lagging streaming standby promoted.
    PgFailover,
    /// 7: the holder's connection to the store stalled (through its own `TcpProxy`) for
    /// 3×TTL right before its write: its renewals cannot get through.
    NetStall,
    /// 7: every waiter's connection delayed by TTL/5 each way for 2×TTL, so their acquire
    /// replies come late.
    NetDelay,
    /// 7: the holder's connection cut (TCP reset) right before its write; its store must
    /// reconnect.
    NetCut,
    /// 8: every worker runs under libfaketime; their wall clock jumps by hours or days
    /// between rounds (forwards and backwards), while a holder holds the lock.
    ClockJump,
    /// 6: Redis Cluster: while a holder is stopped at its write, the primary owning the lock's
    /// slot is killed (SIGKILL) and the cluster promotes its replica.
    ClusterPrimaryKill,
    /// 6: Redis behind Sentinel: while a holder is stopped at its write, the primary is killed
    /// (SIGKILL) and the sentinels promote the replica.
    SentinelFailover,
    /// 9: leader election: the workers campaign (`Election::campaign`) and write with their
    /// term; the leader is SIGSTOPped for 3×TTL right before its write, then resumed.
    ElectionPause,
    /// 9: leader election: the leader killed with SIGKILL right before its write.
    ElectionKill,
    /// 9: leader election: the leader's connections to the store stalled (through its own
    /// `TcpProxy`) for 3×TTL right before its write.
    ElectionPartition,
    /// 10: semaphore: the workers take permits of one semaphore ([`PERMIT_LIMIT`] permits),
    /// each writing at a place of its own; a permit holder SIGSTOPped for 3×TTL right before
    /// its write, then resumed (its late write carries the old token).
    SemaphorePause,
    /// 10: semaphore: the lock server killed with SIGKILL and restarted while permits are
    /// held.
    SemaphoreRestart,
}

/// The permits of the semaphore in the semaphore scenarios (10): fewer than the workers, so
/// that some wait.
pub const PERMIT_LIMIT: u32 = 2;

/// Where `semaphore-pause` runs: every backend with semaphores (Redlock has none).
pub const SEMAPHORE_PAUSE_BACKENDS: &[Backend] =
    &[Backend::Redis, Backend::Postgres, Backend::Etcd];

/// Where `semaphore-restart` runs: likewise, and Redis with persistence (Redis without it loses
/// its permits in the restart, so I7 is reported there, not judged: [`Scenario::keeps_state`]).
pub const SEMAPHORE_RESTART_BACKENDS: &[Backend] = &[
    Backend::Redis,
    Backend::RedisAof,
    Backend::Postgres,
    Backend::Etcd,
];

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 19] = [
        Self::HolderPause,
        Self::HolderStarve,
        Self::HolderKill,
        Self::ServerRestart,
        Self::LeaderKill,
        Self::LeaderPause,
        Self::RedisFailover,
        Self::PgFailover,
        Self::NetStall,
        Self::NetDelay,
        Self::NetCut,
        Self::ClockJump,
        Self::ClusterPrimaryKill,
        Self::SentinelFailover,
        Self::ElectionPause,
        Self::ElectionKill,
        Self::ElectionPartition,
        Self::SemaphorePause,
        Self::SemaphoreRestart,
    ];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::HolderPause => "holder-pause",
            Self::HolderStarve => "holder-starve",
            Self::HolderKill => "holder-kill",
            Self::ServerRestart => "server-restart",
            Self::LeaderKill => "leader-kill",
            Self::LeaderPause => "leader-pause",
            Self::RedisFailover => "redis-failover",
            Self::PgFailover => "pg-failover",
            Self::NetStall => "net-stall",
            Self::NetDelay => "net-delay",
            Self::NetCut => "net-cut",
            Self::ClockJump => "clock-jump",
            Self::ClusterPrimaryKill => "cluster-primary-kill",
            Self::SentinelFailover => "sentinel-failover",
            Self::ElectionPause => "election-pause",
            Self::ElectionKill => "election-kill",
            Self::ElectionPartition => "election-partition",
            Self::SemaphorePause => "semaphore-pause",
            Self::SemaphoreRestart => "semaphore-restart",
        }
    }

    /// The scenario number.
    pub fn number(self) -> u32 {
        match self {
            Self::HolderPause => 1,
            Self::HolderStarve => 2,
            Self::HolderKill => 3,
            Self::ServerRestart => 4,
            Self::LeaderKill | Self::LeaderPause => 5,
            Self::RedisFailover
            | Self::PgFailover
            | Self::ClusterPrimaryKill
            | Self::SentinelFailover => 6,
            Self::NetStall | Self::NetDelay | Self::NetCut => 7,
            Self::ClockJump => 8,
            Self::ElectionPause | Self::ElectionKill | Self::ElectionPartition => 9,
            Self::SemaphorePause | Self::SemaphoreRestart => 10,
        }
    }

    /// The backends this scenario runs against.
    pub fn backends(self) -> &'static [Backend] {
        match self {
            Self::HolderPause | Self::HolderKill => &[
                Backend::Redis,
                Backend::Postgres,
                Backend::PostgresPooled,
                Backend::Etcd,
            ],
            Self::HolderStarve
            | Self::NetStall
            | Self::NetDelay
            | Self::NetCut
            | Self::ClockJump
            | Self::ElectionPause
            | Self::ElectionKill
            | Self::ElectionPartition => &[Backend::Redis, Backend::Postgres, Backend::Etcd],
            Self::ServerRestart => &[
                Backend::Redis,
                Backend::RedisAof,
                Backend::Postgres,
                Backend::PostgresPooled,
                Backend::Etcd,
            ],
            Self::LeaderKill | Self::LeaderPause => &[Backend::Etcd3],
            Self::RedisFailover => &[Backend::Redis],
            Self::PgFailover => &[Backend::Postgres],
            Self::ClusterPrimaryKill => &[Backend::RedisCluster],
            Self::SentinelFailover => &[Backend::RedisSentinel],
            Self::SemaphorePause => SEMAPHORE_PAUSE_BACKENDS,
            Self::SemaphoreRestart => SEMAPHORE_RESTART_BACKENDS,
        }
    }

    /// Whether the scenario pauses or partitions a holder, so that stale writes must be
    /// attempted.
    pub fn hits_holder(self) -> bool {
        matches!(
            self,
            Self::HolderPause
                | Self::HolderStarve
                | Self::NetStall
                | Self::ClusterPrimaryKill
                | Self::SentinelFailover
                | Self::ElectionPause
                | Self::ElectionPartition
                | Self::SemaphorePause
        )
    }

    /// Whether each worker reaches the store through its own `TcpProxy`.
    pub fn proxied(self) -> bool {
        matches!(
            self,
            Self::NetStall | Self::NetDelay | Self::NetCut | Self::ElectionPartition
        )
    }

    /// Whether the workers campaign in an election (and one more worker observes it)
    /// instead of taking the lock.
    pub fn election(self) -> bool {
        matches!(
            self,
            Self::ElectionPause | Self::ElectionKill | Self::ElectionPartition
        )
    }

    /// Whether the workers take permits of a semaphore ([`PERMIT_LIMIT`]) instead of the lock,
    /// each writing at a place of its own.
    pub fn semaphore(self) -> bool {
        matches!(self, Self::SemaphorePause | Self::SemaphoreRestart)
    }

    /// Whether the server keeps every lease through this scenario's faults on `backend`, so
    /// that no two guards may be valid at once (I6; in a semaphore run: no more than the limit,
    /// I7). Not so for Redis without persistence restarted (the lease is gone while its holder's guard is still valid) nor for a
    /// failover to a lagging replica or standby (it may never have seen the lease:
    /// replication is asynchronous).
    pub fn keeps_state(self, backend: Backend) -> bool {
        !matches!(
            (self, backend),
            (Self::ServerRestart | Self::SemaphoreRestart, Backend::Redis)
                | (
                    Self::RedisFailover
                        | Self::PgFailover
                        | Self::ClusterPrimaryKill
                        | Self::SentinelFailover,
                    _
                )
        )
    }

    /// Whether the fault is injected once per run (a failover), not every round.
    pub fn once(self) -> bool {
        matches!(
            self,
            Self::RedisFailover
                | Self::PgFailover
                | Self::ClusterPrimaryKill
                | Self::SentinelFailover
        )
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl Backend {
    /// Parses a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}
