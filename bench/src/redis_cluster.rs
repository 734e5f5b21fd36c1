//! Redis Cluster (three primaries with a replica each, started by the harness, or
//! `FENCELOCK_REDIS_CLUSTER_URL`): the store over redis-rs's cluster connection against the raw
//! floor (`SET NX PX` + `DEL` on the same cluster connection), hand-off, and throughput with the
//! locks named to hit one primary's slots and then spread over all of them, with each
//! redis-server's CPU per cycle (`INFO cpu` deltas around every throughput slice).

use std::fmt::Write as _;
use std::time::Duration;

use fencelock_conformance::harness;
use fencelock_core::{AcquireOptions, LockName, Locker};
use fencelock_redis::redis::cluster_async::ClusterConnection;
use fencelock_redis::redis::{self, aio::MultiplexedConnection};
use fencelock_redis::{KeyLayout, RedisLeaseStore};
use serde::{Deserialize, Serialize};

use crate::backends::redis::set_nx_del;
use crate::backends::{TTL, locker_cycle, run_id, store_cycle};
use crate::cycle::{self, Cycle, Role, Row, Variant, cycle};
use crate::error::{BenchError, Result};
use crate::handoff::{self, Handoff};
use crate::params::Params;
use crate::report::{latency_table, num, us, x};
use crate::run::Report;
use crate::stats::{Summary, ratio};
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

/// A node of the cluster, from `CLUSTER NODES`.
struct Node {
    id: String,
    addr: String,
    primary: bool,
    /// The primary's id (replicas).
    replicates: Option<String>,
    /// Slot ranges (primaries).
    slots: Vec<(u16, u16)>,
    conn: MultiplexedConnection,
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

fn role(node: &Node, all: &[Node], used: &[&Node]) -> String {
    if !node.primary {
        let of = node
            .replicates
            .as_ref()
            .and_then(|id| all.iter().find(|n| &n.id == id));
        return match of {
            Some(primary) => format!("replica of {}", primary.addr),
            None => "replica".to_owned(),
        };
    }
    if used.iter().any(|u| u.addr == node.addr) {
        "primary, owns the locks".to_owned()
    } else {
        "primary, idle".to_owned()
    }
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

fn owns(node: &Node, slot: u16) -> bool {
    node.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
}

/// Every node of the cluster, from `CLUSTER NODES` asked of the URL's first seed, each with a
/// connection of its own for `INFO`.
async fn nodes(url: &str) -> Result<Vec<Node>> {
    let rest = url
        .strip_prefix("redis+cluster://")
        .ok_or_else(|| BenchError::new(format!("not a redis+cluster:// URL: {url}")))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), authority),
    };
    let seed = hosts.split(',').next().unwrap_or(hosts);
    let connect = |addr: String| {
        let url = format!("redis://{auth}{addr}");
        async move {
            let client = redis::Client::open(url)?;
            Ok::<_, BenchError>(client.get_multiplexed_async_connection().await?)
        }
    };
    let mut seed_conn = connect(seed.to_owned()).await?;
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut seed_conn)
        .await?;
    let mut nodes = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        if flags.contains("fail") || flags.contains("handshake") {
            continue;
        }
        let addr = addr.split(['@', ',']).next().unwrap_or(addr).to_owned();
        let slots = fields
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
                None => s.parse().ok().map(|one| (one, one)),
            })
            .collect();
        let primary = flags.contains("master");
        nodes.push(Node {
            conn: connect(addr.clone()).await?,
            id: fields[0].to_owned(),
            replicates: fields
                .get(3)
                .filter(|id| !primary && **id != "-")
                .map(|id| (*id).to_owned()),
            primary,
            addr,
            slots,
        });
    }
    nodes.sort_by(|a, b| (!a.primary, &a.addr).cmp(&(!b.primary, &b.addr)));
    if !nodes.iter().any(|n| n.primary && !n.slots.is_empty()) {
        return Err(BenchError::new(format!(
            "CLUSTER NODES of {seed} lists no primary with slots"
        )));
    }
    nodes.retain(|n| !n.primary || !n.slots.is_empty());
    Ok(nodes)
}

/// `field` of `INFO section`.
async fn info_field(
    conn: &mut MultiplexedConnection,
    section: &str,
    field: &str,
) -> Result<String> {
    let info: String = redis::cmd("INFO").arg(section).query_async(conn).await?;
    field_of(&info, field)
        .map(str::to_owned)
        .ok_or_else(|| BenchError::new(format!("INFO {section} has no {field}")))
}

fn field_of<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// Seconds of CPU (user + sys, one `INFO cpu` each) every node used so far.
async fn cpu(nodes: &[Node]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut node.conn.clone())
            .await?;
        let mut total = 0.0;
        for field in ["used_cpu_sys", "used_cpu_user"] {
            let value = field_of(&info, field).unwrap_or_default();
            total += value.parse::<f64>().map_err(|e| {
                BenchError::new(format!(
                    "INFO cpu of {}: {field} = {value:?}: {e}",
                    node.addr
                ))
            })?;
        }
        out.push(total);
    }
    Ok(out)
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
                },
                cpu,
            )
        })
        .collect())
}

/// The section in BENCHMARKS.md (nothing when it was not run).
pub fn render(md: &mut String, report: &Report) {
    let Some(c) = &report.redis_cluster else {
        return;
    };
    let _ = writeln!(md, "## Redis Cluster\n");
    let _ = writeln!(
        md,
        "{}, on loopback, started by the harness (`redis-server --cluster-enabled yes`, replicas asynchronous). The store over redis-rs's async cluster connection (scripts routed to each lock's slot owner; waiters woken by sharded pub/sub), against the raw floor `SET NX PX` + `DEL` on the same cluster connection.\n",
        c.server
    );
    let _ = writeln!(md, "### Uncontended acquire + release\n");
    latency_table(md, &c.uncontended, "raw", false);
    let h = &c.handoff;
    let _ = writeln!(md, "\n### Contended hand-off\n");
    let _ = writeln!(
        md,
        "| release → next grant p50 | p99 | hand-offs/s | overlaps |\n|---:|---:|---:|---:|\n| {} | {} | {} | {} |\n",
        us(h.latency.p50_us),
        us(h.latency.p99_us),
        num(h.per_sec),
        h.overlaps
    );
    let _ = writeln!(md, "### Throughput on one primary and on all\n");
    let _ = writeln!(
        md,
        "{} tasks, each looping acquire + release on its own lock; the lock names are chosen so that their slots are owned by one primary, then dealt evenly over every primary. Ours and the raw floor alternate in slices, in the same run; CPU is each redis-server's `used_cpu_user` + `used_cpu_sys` (`INFO cpu`) over its slices, divided by the cycles completed in them.\n",
        c.tasks
    );
    let _ = writeln!(
        md,
        "| primaries with locks | ours ops/s | raw ops/s | ours / raw | ours p50 / p99 | raw p50 / p99 |\n|---:|---:|---:|---:|---:|---:|"
    );
    for s in &c.shards {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} / {} | {} / {} |",
            s.primaries,
            num(s.ours.ops_per_sec),
            num(s.raw.ops_per_sec),
            x(ratio(s.ours.ops_per_sec, s.raw.ops_per_sec)),
            us(s.ours.latency.p50_us),
            us(s.ours.latency.p99_us),
            us(s.raw.latency.p50_us),
            us(s.raw.latency.p99_us),
        );
    }
    let _ = writeln!(
        md,
        "\n| primaries with locks | redis-server | role | CPU per cycle, ours | CPU per cycle, raw |\n|---:|---|---|---:|---:|"
    );
    for s in &c.shards {
        for n in &s.nodes {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                s.primaries,
                n.node,
                n.role,
                us(n.ours_us),
                us(n.raw_us)
            );
        }
        let _ = writeln!(
            md,
            "| {} | all | sum | {} | {} |",
            s.primaries,
            us(s.nodes.iter().map(|n| n.ours_us).sum()),
            us(s.nodes.iter().map(|n| n.raw_us).sum())
        );
    }
    let _ = writeln!(
        md,
        "\nThe ceiling these CPU costs put on ops/s with a core for every redis-server: one second over the busiest server's CPU per cycle (a redis-server runs commands on one thread). Measured at this run's load: a busier server handles more commands per event-loop turn, so its cost per cycle falls, and the real ceiling is higher.\n"
    );
    let _ = writeln!(
        md,
        "| primaries with locks | busiest server, ours | ceiling, ours | busiest server, raw | ceiling, raw |\n|---:|---:|---:|---:|---:|"
    );
    for s in &c.shards {
        let busiest = |f: fn(&NodeCpu) -> f64| s.nodes.iter().map(f).fold(0.0, f64::max);
        let (ours, raw) = (busiest(|n| n.ours_us), busiest(|n| n.raw_us));
        let ceiling = |cpu: f64| {
            if cpu > 0.0 {
                num(1e6 / cpu)
            } else {
                "—".to_owned()
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} ops/s | {} | {} ops/s |",
            s.primaries,
            us(ours),
            ceiling(ours),
            us(raw),
            ceiling(raw)
        );
    }
    let _ = writeln!(
        md,
        "\nWhat 2 shared cores can show: where the servers' work goes, and what it costs. With the locks on one primary, that primary (and its replica, applying the replication stream) does all of it; dealt over every primary, each does a share. The sum says whether spreading costs extra work per cycle (a server with fewer commands per event-loop turn batches fewer of them per system call), and the ceilings say what the busiest server allows: that is what grows with the primaries, as long as each has a core of its own and the lock names spread over the slots (fencelock hashes each lock's keys into one slot by its name). What they cannot show: that growth in measured ops/s. Here the client, six redis-servers and everything else on the machine share 2 cores, so the run on three primaries is bound by the same cores as the run on one, and its ops/s say little about scaling.\n"
    );
}
