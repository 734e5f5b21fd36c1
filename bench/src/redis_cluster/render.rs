//! The Redis Cluster section of BENCHMARKS.md.

use std::fmt::Write as _;

use super::NodeCpu;
use crate::report::{latency_table, num, us, x};
use crate::run::Report;
use crate::stats::ratio;

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
