//! The whole benchmark: per backend, start its server through the harness, measure, stop it.

use std::time::{Duration, Instant};

use fencelock_conformance::harness;
use fencelock_core::Locker;
use serde::{Deserialize, Serialize};

use crate::backends::etcd::EtcdBench;
use crate::backends::postgres::PgBench;
use crate::backends::redis::RedisBench;
use crate::cost::{self, Cost, ServerCpu};
use crate::cycle::{self, Cycle, Role, Row, Variant};
use crate::error::Result;
use crate::handoff::{self, Handoff};
use crate::hold::{self, HoldReport};
use crate::machine::{self, Machine};
use crate::params::Params;
use crate::peers::{self, Peer};
use crate::stats::Summary;
use crate::throughput::{self, Throughput};

/// Connections in the PostgreSQL pool for throughput and hand-off (the backend's default).
pub(crate) const PG_POOL: u32 = 10;

/// Everything one backend measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendResult {
    /// `redis`, `postgres`, `etcd`.
    pub key: String,
    /// Server name and version.
    pub server: String,
    /// Uncontended latency rows, headline first.
    pub uncontended: Vec<Row>,
    /// Contended hand-off, ours.
    pub handoff: Handoff,
    /// Throughput, ours (through `Locker`).
    pub throughput_ours: Throughput,
    /// Throughput, the raw floor.
    pub throughput_raw: Throughput,
    /// Renewal at scale and memory, renewals batched (the `Locker` default).
    pub hold: HoldReport,
    /// The same with renewal batching off: every watchdog renews alone.
    pub hold_unbatched: HoldReport,
    /// Cost per cycle (client and server CPU), when measured.
    #[serde(default)]
    pub cost: Option<Cost>,
}

impl BackendResult {
    /// The first row with `role`.
    pub fn row(&self, role: Role) -> Option<&Row> {
        self.uncontended.iter().find(|r| r.role == role)
    }

    /// The row whose label contains `needle`.
    pub fn row_like(&self, needle: &str) -> Option<&Row> {
        self.uncontended.iter().find(|r| r.label.contains(needle))
    }
}

/// One peer's results next to ours, measured in the same interleaved rounds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerResult {
    /// Library and version.
    pub library: String,
    /// Uncontended acquire + release.
    pub uncontended: Summary,
    /// Contended hand-off.
    pub handoff: Handoff,
}

/// The peers section.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeersResult {
    /// Ours (`Locker` on Redis), in the rounds interleaved with the peers.
    pub ours_uncontended: Summary,
    /// The raw floor (`SET NX PX` + `DEL`) in the same rounds.
    pub raw_uncontended: Summary,
    /// Each peer.
    pub peers: Vec<PeerResult>,
}

/// A whole run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Parameters used.
    pub params: Params,
    /// The machine.
    pub machine: Machine,
    /// Load averages when the run started.
    pub load_before: String,
    /// Load averages when it ended.
    pub load_after: String,
    /// Wall time of the run.
    pub took_secs: f64,
    /// Per backend.
    pub backends: Vec<BackendResult>,
    /// Peers, when run.
    pub peers: Option<PeersResult>,
    /// `Locker` vs the bare store, in memory (no server).
    pub client_overhead: Vec<Row>,
    /// PostgreSQL direct and through pgbouncer, when the harness started the pooler.
    #[serde(default)]
    pub pg_pooler: Option<crate::pg_pooler::PgPoolerResult>,
    /// Redis Cluster, when run.
    #[serde(default)]
    pub redis_cluster: Option<crate::redis_cluster::ClusterResult>,
}

impl Report {
    /// The results of the backend keyed `key` (`redis`, `postgres`, `etcd`), if it ran.
    pub fn backend(&self, key: &str) -> Option<&BackendResult> {
        self.backends.iter().find(|b| b.key == key)
    }
}

/// Runs everything `params` asks for.
pub async fn run(params: &Params) -> Result<Report> {
    let started = Instant::now();
    let load_before = machine::load();
    let machine = Machine::describe();
    eprintln!("load before the run: {load_before}; {}", params.describe());
    let peer_list = if params.no_peers || !params.runs("redis") {
        Vec::new()
    } else {
        peers::prepare(&params.venv, params.peer_target_dir.as_deref()).await?
    };
    section("memory", "client overhead of `Locker`");
    let mut client_overhead = cycle::interleaved(
        &crate::backends::memory::variants(),
        params.warmup,
        params.iterations,
    )
    .await?;
    for row in &mut client_overhead {
        row.label.push_str(" — multi-thread runtime (2 workers)");
    }
    client_overhead.extend(current_thread_overhead(params.warmup, params.iterations).await?);
    let mut backends = Vec::new();
    let mut peers_result = None;
    if params.runs("redis") {
        let (result, peers) = redis(params, &peer_list).await?;
        backends.push(result);
        peers_result = peers;
    }
    let mut pg_pooler = None;
    if params.runs("postgres") {
        let (result, pooler) = postgres(params).await?;
        backends.push(result);
        pg_pooler = pooler;
    }
    let redis_cluster = if params.runs(crate::redis_cluster::KEY) {
        Some(crate::redis_cluster::run(params).await?)
    } else {
        None
    };
    if params.runs("etcd") {
        backends.push(etcd(params).await?);
    }
    Ok(Report {
        params: params.clone(),
        machine,
        load_before,
        load_after: machine::load(),
        took_secs: started.elapsed().as_secs_f64(),
        backends,
        peers: peers_result,
        client_overhead,
        pg_pooler,
        redis_cluster,
    })
}

/// The in-memory rows again on a current-thread runtime (no cross-thread wake-ups), on a thread
/// of their own.
async fn current_thread_overhead(warmup: usize, iterations: usize) -> Result<Vec<Row>> {
    let rows = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(cycle::interleaved(
            &crate::backends::memory::variants(),
            warmup,
            iterations,
        ))
    })
    .await??;
    Ok(rows
        .into_iter()
        .map(|mut row| {
            row.label.push_str(" — current-thread runtime");
            row
        })
        .collect())
}

fn section(backend: &str, what: &str) {
    eprintln!("[{backend}] {what} (load {})", machine::load());
}

/// The variants compared again once a waiter has subscribed to release notifications (the
/// store's subscriber then receives every release).
struct After {
    ours: Cycle,
    raw: Cycle,
}

/// Sections 1 and 3 (and the rerun of ours vs raw after hand-off), with `between` run after
/// the uncontended latencies (the peers, on Redis).
#[allow(clippy::too_many_arguments)]
async fn latencies(
    key: &str,
    params: &Params,
    uncontended: Vec<Variant>,
    handoff_on: (&Locker, String),
    after: After,
) -> Result<(Vec<Row>, Handoff)> {
    section(key, "uncontended acquire + release");
    let mut rows = cycle::interleaved(&uncontended, params.warmup, params.iterations).await?;
    drop(uncontended);
    section(key, "contended hand-off");
    let handoff = handoff::run(
        handoff_on.0,
        &handoff_on.1,
        params.waiters,
        params.handoff(),
        params.max_handoffs,
    )
    .await?;
    section(key, "uncontended again, with the release subscriber active");
    let again = [
        Variant::new(
            "fencelock `Locker`, after a waiter subscribed to releases",
            Role::Reference,
            after.ours,
        ),
        Variant::new("raw floor, same moment", Role::Reference, after.raw),
    ];
    let n = (params.iterations / 5).max(1);
    rows.extend(cycle::interleaved(&again, params.warmup.min(n), n).await?);
    Ok((rows, handoff))
}

/// Sections 4 to 6.
async fn load(
    key: &str,
    url: &str,
    params: &Params,
    throughput_on: (Cycle, Cycle),
) -> Result<(Throughput, Throughput, HoldReport, HoldReport)> {
    section(key, "throughput");
    let tp = throughput::alternating_with_sweep(
        &[throughput_on.0, throughput_on.1],
        params.tasks,
        Duration::from_secs_f64(params.throughput_secs),
        params.slice(),
    )
    .await?;
    let mut tp = tp.into_iter();
    let throughput_ours = tp.next().unwrap_or_default();
    let throughput_raw = tp.next().unwrap_or_default();
    section(key, "renewal at scale and memory (child process, batched)");
    let hold = hold::run_child(
        key,
        url,
        params.leases,
        params.hold_secs,
        params.renew_ttl_secs,
        true,
    )
    .await?;
    section(key, "renewal at scale (child process, batching off)");
    let hold_unbatched = hold::run_child(
        key,
        url,
        params.alone_leases,
        params.hold_secs,
        params.renew_ttl_secs,
        false,
    )
    .await?;
    Ok((throughput_ours, throughput_raw, hold, hold_unbatched))
}

async fn redis(
    params: &Params,
    peer_list: &[Peer],
) -> Result<(BackendResult, Option<PeersResult>)> {
    let target = harness::redis_url_or_start().await?;
    let url = target.url().to_owned();
    let bench = RedisBench::connect(&url).await?;
    let server = bench.version().await?;
    // Peers first, while this store has no subscriber yet (as the peers have none).
    let mut peers = if peer_list.is_empty() {
        None
    } else {
        Some(compare_peers(params, &bench, &url, peer_list).await?)
    };
    let (uncontended, handoff) = latencies(
        "redis",
        params,
        bench.uncontended(params.reference_every),
        (&bench.locker, bench.handoff_name()),
        After {
            ours: bench.ours("after"),
            raw: bench.raw("after"),
        },
    )
    .await?;
    if let Some(peers) = peers.as_mut() {
        peer_handoffs(params, &url, peer_list, peers).await?;
    }
    let (throughput_ours, throughput_raw, hold, hold_unbatched) =
        load("redis", &url, params, bench.throughput()).await?;
    section("redis", "cost per cycle");
    let rslock = peer_list.iter().find(|p| p.name == "rslock");
    let cost = cost::measure(
        &cost::redis_candidates(&bench, &url, rslock.map(Peer::program)),
        &ServerCpu::new(target.server().and_then(|s| s.pid())),
        cost::REDIS_PROCESSES,
        params.tasks,
        params.cost_secs,
        params.cost_rounds,
    )
    .await?;
    drop(target);
    Ok((
        BackendResult {
            key: "redis".into(),
            server,
            uncontended,
            handoff,
            throughput_ours,
            throughput_raw,
            hold,
            hold_unbatched,
            cost: Some(cost),
        },
        peers,
    ))
}

async fn compare_peers(
    params: &Params,
    bench: &RedisBench,
    url: &str,
    peer_list: &[Peer],
) -> Result<PeersResult> {
    section("redis", "peers: uncontended, interleaved rounds");
    let per_round = params.iterations.div_ceil(params.peer_rounds);
    let warmup = (params.warmup / params.peer_rounds).max(50);
    let ours = [
        Variant::new("ours", Role::Ours, bench.ours("peers")),
        Variant::new("raw", Role::Raw, bench.raw("peers")),
    ];
    let mut our_samples = Vec::new();
    let mut raw_samples = Vec::new();
    let mut peer_samples = vec![Vec::new(); peer_list.len()];
    let mut libraries = vec![String::new(); peer_list.len()];
    for round in 0..params.peer_rounds {
        let mut samples =
            cycle::samples(&ours, warmup, per_round, round * (warmup + per_round)).await?;
        our_samples.append(&mut samples[0]);
        raw_samples.append(&mut samples[1]);
        for (i, peer) in peer_list.iter().enumerate() {
            let out = peer.uncontended(url, per_round, warmup).await?;
            libraries[i] = out.library;
            peer_samples[i].extend(out.samples_us);
        }
    }
    Ok(PeersResult {
        ours_uncontended: Summary::of(&our_samples),
        raw_uncontended: Summary::of(&raw_samples),
        peers: libraries
            .into_iter()
            .zip(peer_samples)
            .map(|(library, samples)| PeerResult {
                library,
                uncontended: Summary::of_micros(samples),
                handoff: Handoff::default(),
            })
            .collect(),
    })
}

async fn peer_handoffs(
    params: &Params,
    url: &str,
    peer_list: &[Peer],
    result: &mut PeersResult,
) -> Result<()> {
    for (peer, out) in peer_list.iter().zip(result.peers.iter_mut()) {
        section("redis", &format!("peers: hand-off, {}", peer.name));
        let run = peer
            .handoff(
                url,
                params.waiters,
                params.handoff_secs,
                params.max_handoffs,
            )
            .await?;
        let n = run.samples_us.len() as f64;
        out.handoff = Handoff {
            per_sec: run
                .elapsed_secs
                .map_or(0.0, |s| n / s.max(f64::MIN_POSITIVE)),
            latency: Summary::of_micros(run.samples_us),
            overlaps: run.overlaps,
        };
    }
    Ok(())
}

async fn postgres(
    params: &Params,
) -> Result<(BackendResult, Option<crate::pg_pooler::PgPoolerResult>)> {
    let target = harness::postgres_url_or_start().await?;
    let url = target.url().to_owned();
    // pgbouncer (transaction mode) in front of a server the harness started.
    let pooler = match target.server() {
        Some(server) => Some(
            harness::PgBouncer::start(server.addr(), harness::PgBouncerOptions::default()).await?,
        ),
        None => None,
    };
    // One connection for the sequential latencies (and session advisory locks).
    let single = PgBench::connect(&url, 1).await?;
    let pooled = PgBench::connect(&url, PG_POOL).await?;
    let server = single.version().await?;
    let (uncontended, handoff) = latencies(
        "postgres",
        params,
        single.uncontended(params.reference_every),
        (&pooled.locker, pooled.handoff_name()),
        // The store that had the waiters (its LISTEN connection is up), on the pool.
        After {
            ours: pooled.ours("after"),
            raw: pooled.raw("after"),
        },
    )
    .await?;
    let (throughput_ours, throughput_raw, hold, hold_unbatched) =
        load("postgres", &url, params, pooled.throughput()).await?;
    section("postgres", "cost per cycle");
    let cost = cost::measure(
        &cost::postgres_candidates(&pooled),
        &ServerCpu::new(target.server().and_then(|s| s.pid())),
        cost::POSTGRES_PROCESSES,
        params.tasks,
        params.cost_secs,
        params.cost_rounds,
    )
    .await?;
    let through_pooler = match &pooler {
        Some(pooler) => {
            section("postgres", "direct and through pgbouncer");
            Some(crate::pg_pooler::run(params, &url, pooler).await?)
        }
        None => None,
    };
    drop(pooler);
    drop(target);
    Ok((
        BackendResult {
            key: "postgres".into(),
            server,
            uncontended,
            handoff,
            throughput_ours,
            throughput_raw,
            hold,
            hold_unbatched,
            cost: Some(cost),
        },
        through_pooler,
    ))
}

async fn etcd(params: &Params) -> Result<BackendResult> {
    let target = harness::etcd_endpoints_or_start().await?;
    let endpoints = target.endpoints().to_vec();
    let url = endpoints.join(",");
    let bench = EtcdBench::connect(&endpoints).await?;
    let server = bench.version().await?;
    let (uncontended, handoff) = latencies(
        "etcd",
        params,
        bench.uncontended(params.reference_every),
        (&bench.locker, bench.handoff_name()),
        After {
            ours: bench.ours("after"),
            raw: bench.raw("after"),
        },
    )
    .await?;
    let (throughput_ours, throughput_raw, hold, hold_unbatched) =
        load("etcd", &url, params, bench.throughput()).await?;
    section("etcd", "cost per cycle");
    let cost = cost::measure(
        &cost::etcd_candidates(&bench),
        &ServerCpu::new(
            target
                .server()
                .into_iter()
                .flat_map(|c| c.members().iter().filter_map(|m| m.pid())),
        ),
        cost::ETCD_PROCESSES,
        params.tasks,
        params.cost_secs,
        params.cost_rounds,
    )
    .await?;
    bench.close().await?;
    drop(target);
    Ok(BackendResult {
        key: "etcd".into(),
        server,
        uncontended,
        handoff,
        throughput_ours,
        throughput_raw,
        hold,
        hold_unbatched,
        cost: Some(cost),
    })
}
