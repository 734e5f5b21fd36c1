//! Redis Cluster (three primaries with a replica each, started by the harness, or
//! `FENCELOCK_REDIS_CLUSTER_URL`): the store over redis-rs's cluster connection against the raw
//! floor (`SET NX PX` + `DEL` on the same cluster connection), hand-off, and throughput with the
//! locks named to hit one primary's slots and then spread over all of them, with each
//! redis-server's CPU per cycle (`INFO cpu` deltas around every throughput slice).

mod nodes;
mod render;

use std::time::Duration;

use fencelock_conformance::harness;
use fencelock_core::{AcquireOptions, LockName, Locker};
use fencelock_redis::redis::{self, aio::MultiplexedConnection, cluster_async::ClusterConnection};
use fencelock_redis::{KeyLayout, RedisLeaseStore};
use serde::{Deserialize, Serialize};

use self::nodes::{Node, cpu, info_field, nodes, owns, role};
pub use self::render::render;
use crate::backends::redis::set_nx_del;
use crate::backends::{TTL, locker_cycle, run_id, store_cycle};
use crate::cycle::{self, Cycle, Role, Row, Variant, cycle};
use crate::error::{BenchError, Result};
use crate::handoff::{self, Handoff};
use crate::params::Params;
use crate::stats::Summary;
use crate::throughput::{self, Throughput};

/// The `--backends` key of this section.
pub const KEY: &str = "redis-cluster";

/// The section's results.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClusterResult {
    /// Server version and topology.
    pub server: String,
    /// Uncontended acquire + release, ours and the raw floor.
    pub uncontended: Vec<Row>,
    /// Contended hand-off, ours.
    pub handoff: Handoff,
    /// Concurrent tasks in the throughput runs.
    pub tasks: usize,
    /// Throughput with the locks on one primary, then spread over all.
    pub shards: Vec<ShardRun>,
}

/// Throughput with the locks on `primaries` primaries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ShardRun {
    /// How many primaries own the locks' slots.
    pub primaries: usize,
    /// Ours (through `Locker`).
    pub ours: Throughput,
    /// The raw floor.
    pub raw: Throughput,
    /// Each redis-server's CPU per cycle.
    pub nodes: Vec<NodeCpu>,
}

/// One redis-server's CPU (user + sys, from `INFO cpu`) per completed cycle, in µs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeCpu {
    /// `host:port`.
    pub node: String,
    /// `primary` (with whether locks were on it) or `replica`.
    pub role: String,
    /// While ours ran.
    pub ours_us: f64,
    /// While the raw floor ran.
    pub raw_us: f64,
}

/// Runs the section against the harness's cluster (or `FENCELOCK_REDIS_CLUSTER_URL`).
pub async fn run(params: &Params) -> Result<ClusterResult> {
    let target = harness::redis_cluster_url_or_start().await?;
    let url = target.url().to_owned();
    eprintln!("[{KEY}] cluster at {url}");
    let store = RedisLeaseStore::connect_cluster(&url).await?;
    let conn = store.connection().clone();
    let locker = Locker::new(store.clone());
    let nodes = nodes(&url).await?;
    let primaries: Vec<&Node> = nodes.iter().filter(|n| n.primary).collect();
    let version = info_field(&mut nodes[0].conn.clone(), "server", "redis_version").await?;
    let server = format!(
        "Redis {version}, {} primaries, {} replicas",
        primaries.len(),
        nodes.len() - primaries.len()
    );
    let prefix = format!("bench/{}/cluster", run_id());

    eprintln!("[{KEY}] uncontended acquire + release");
    let variants = [
        Variant::new(
            "fencelock `Locker` acquire + release",
            Role::Ours,
            locker_cycle(&locker, format!("{prefix}/u")),
        ),
        Variant::new(
            "fencelock store try_acquire + release",
            Role::OursStore,
            store_cycle(&store, format!("{prefix}/s")),
        ),
        Variant::new(
            "raw: `SET NX PX` + `DEL` (redis-rs cluster client)",
            Role::Raw,
            set_nx_del(&conn, {
                let prefix = format!("{prefix}:raw");
                move |i| format!("{prefix}:{i}")
            }),
        ),
    ];
    let uncontended = cycle::interleaved(&variants, params.warmup, params.iterations).await?;

    eprintln!("[{KEY}] contended hand-off");
    let handoff = handoff::run(
        &locker,
        &format!("{prefix}/handoff"),
        params.waiters,
        params.handoff(),
        params.max_handoffs,
    )
    .await?;

    eprintln!("[{KEY}] throughput on one primary and on all");
    let layout = KeyLayout::default();
    let one = names_on(
        &nodes[0].conn,
        &layout,
        &prefix,
        "one",
        &primaries[..1],
        params.tasks,
    )
    .await?;
    let all = names_on(
        &nodes[0].conn,
        &layout,
        &prefix,
        "all",
        &primaries,
        params.tasks,
    )
    .await?;
    let lock_keys = |names: &[LockName]| -> Vec<String> {
        names
            .iter()
            .map(|n| format!("{}:raw", layout.lock_key(n)))
            .collect()
    };
    let cycles = [
        named_cycle(&locker, one.clone()),
        raw_on(&conn, lock_keys(&one)),
        named_cycle(&locker, all.clone()),
        raw_on(&conn, lock_keys(&all)),
    ];
    let measured = with_cpu(&cycles, &nodes, params).await?;
    let mut shards = Vec::new();
    for (k, used) in [(0, 1), (2, primaries.len())] {
        let (ours, ours_cpu) = &measured[k];
        let (raw, raw_cpu) = &measured[k + 1];
        let per_cycle = |cpu: f64, t: &Throughput| cpu * 1e6 / t.latency.n.max(1) as f64;
        shards.push(ShardRun {
            primaries: used,
            ours: ours.clone(),
            raw: raw.clone(),
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, node)| NodeCpu {
                    node: node.addr.clone(),
                    role: role(node, &nodes, &primaries[..used]),
                    ours_us: per_cycle(ours_cpu[i], ours),
                    raw_us: per_cycle(raw_cpu[i], raw),
                })
                .collect(),
        });
    }
    drop(target);
    Ok(ClusterResult {
        server,
        uncontended,
        handoff,
        tasks: params.tasks,
        shards,
    })
}

/// The raw floor with task `i` on `keys[i]`.
fn raw_on(conn: &ClusterConnection, keys: Vec<String>) -> Cycle {
    set_nx_del(conn, move |i| keys[i as usize % keys.len()].clone())
}

/// Ours with task `i` on `names[i]`.
fn named_cycle(locker: &Locker, names: Vec<LockName>) -> Cycle {
    let locker = locker.clone();
    let options = AcquireOptions::new().with_ttl(TTL).with_no_wait();
    cycle(move |i| {
        let locker = locker.clone();
        let name = names[i as usize % names.len()].clone();
        let options = options.clone();
        async move {
            let guard = locker.acquire(name.as_str(), options).await?;
            guard.release().await?;
            Ok(())
        }
    })
}

/// `count` lock names whose keys' slots are owned by `owners`, dealt round-robin over them.
async fn names_on(
    conn: &MultiplexedConnection,
    layout: &KeyLayout,
    prefix: &str,
    tag: &str,
    owners: &[&Node],
    count: usize,
) -> Result<Vec<LockName>> {
    let mut per_owner: Vec<Vec<LockName>> = vec![Vec::new(); owners.len()];
    let want = count.div_ceil(owners.len().max(1));
    for k in 0..count * owners.len() * 50 {
        if per_owner.iter().all(|names| names.len() >= want) {
            break;
        }
        let name = LockName::new(format!("{prefix}/tp/{tag}/{k}"))?;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(layout.lock_key(&name))
            .query_async(&mut conn.clone())
            .await?;
        if let Some(i) = owners.iter().position(|o| owns(o, slot))
            && per_owner[i].len() < want
        {
            per_owner[i].push(name);
        }
    }
    // Dealt round-robin, so that any `count` tasks cover every owner evenly.
    let mut names = Vec::with_capacity(count);
    for j in 0..want {
        names.extend(per_owner.iter().filter_map(|v| v.get(j).cloned()));
    }
    names.truncate(count);
    if names.len() < count {
        return Err(BenchError::new(format!(
            "found only {} of {count} lock names on the chosen primaries",
            names.len()
        )));
    }
    Ok(names)
}

/// Throughput of each cycle in alternating slices (as [`throughput::alternating`]), with each
/// node's CPU seconds used during that cycle's slices.
async fn with_cpu(
    cycles: &[Cycle],
    nodes: &[Node],
    params: &Params,
) -> Result<Vec<(Throughput, Vec<f64>)>> {
    let each = params.slice();
    for c in cycles {
        throughput::slice(c, params.tasks, each.min(Duration::from_millis(200))).await?;
    }
    let rounds = (params.throughput_secs / each.as_secs_f64())
        .ceil()
        .max(1.0) as usize;
    let mut done: Vec<(usize, Vec<Duration>, Duration, Vec<f64>)> = cycles
        .iter()
        .map(|_| (0, Vec::new(), Duration::ZERO, vec![0.0; nodes.len()]))
        .collect();
    for _ in 0..rounds {
        for (c, acc) in cycles.iter().zip(done.iter_mut()) {
            let before = cpu(nodes).await?;
            let (n, samples, took) = throughput::slice(c, params.tasks, each).await?;
            let after = cpu(nodes).await?;
            acc.0 += n;
            acc.1.extend(samples);
            acc.2 += took;
            for (total, (b, a)) in acc.3.iter_mut().zip(before.iter().zip(&after)) {
                *total += (a - b).max(0.0);
            }
        }
    }
    Ok(done
        .into_iter()
        .map(|(n, samples, took, cpu)| {
            (
                Throughput {
                    ops_per_sec: n as f64 / took.as_secs_f64().max(f64::MIN_POSITIVE),
                    latency: Summary::of(&samples),
                    by_tasks: Vec::new(),
                },
                cpu,
            )
        })
        .collect())
}
