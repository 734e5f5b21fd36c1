//! BENCHMARKS.md: tables, the machine, and every target marked met or missed.

use std::fmt::Write as _;

use crate::cycle::Role;
use crate::hold::HoldReport;
use crate::notes;
use crate::run::{BackendResult, Report};
use crate::stats::{Summary, ratio};

/// Uncontended ratio targets (ours p50 / raw p50).
const RATIO_TARGETS: [(&str, f64); 3] = [("redis", 1.15), ("postgres", 1.15), ("etcd", 1.2)];
/// Hand-off target: p50 within this many raw write round trips.
const HANDOFF_RTTS: f64 = 3.0;

/// One target and how it went.
#[derive(Clone, Debug)]
pub struct Target {
    /// Key into [`notes`] for why it was missed.
    pub key: String,
    /// What is measured.
    pub what: String,
    /// The goal.
    pub goal: String,
    /// The measured value.
    pub measured: String,
    /// Met, missed, or not measured in this run.
    pub met: Option<bool>,
}

pub(crate) fn us(v: f64) -> String {
    if !v.is_finite() {
        "–".to_owned()
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v < 10.0 {
        format!("{v:.1} µs")
    } else {
        format!("{v:.0} µs")
    }
}

/// `v` rounded, with thousands separators.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub(crate) fn x(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}×")
    } else {
        "–".to_owned()
    }
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

/// A table of latency rows with their ratios to the row with [`Role::Raw`] (called `raw` in the
/// header), with the sequential ops/s column when `sequential` is set; no closing blank line.
pub(crate) fn latency_table(
    md: &mut String,
    rows: &[crate::cycle::Row],
    raw: &str,
    sequential: bool,
) {
    let floor = rows
        .iter()
        .find(|r| r.role == Role::Raw)
        .map(|r| r.latency)
        .unwrap_or_default();
    let (head, align) = if sequential {
        (" ops/s (sequential) |", "---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        md,
        "| operation | n | p50 | p99 |{head} p50 vs {raw} | p99 vs {raw} |\n|---|---:|---:|---:|{align}---:|---:|"
    );
    for r in rows {
        let l = r.latency;
        let ops = if sequential {
            format!(" {} |", num(l.sequential_ops_per_sec()))
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |{ops} {} | {} |",
            r.label,
            num(l.n as f64),
            us(l.p50_us),
            us(l.p99_us),
            x(ratio(l.p50_us, floor.p50_us)),
            x(ratio(l.p99_us, floor.p99_us)),
        );
    }
}

pub(crate) fn title(key: &str) -> &'static str {
    match key {
        "redis" => "Redis",
        "postgres" => "PostgreSQL",
        "etcd" => "etcd",
        _ => "?",
    }
}

/// The raw write round trip of a backend (the reference row "one write").
fn write_rtt(b: &BackendResult) -> Summary {
    b.row_like("one write")
        .map(|r| r.latency)
        .unwrap_or_default()
}

fn read_rtt(b: &BackendResult) -> Summary {
    b.row_like("round trip")
        .map(|r| r.latency)
        .unwrap_or_default()
}

/// Every target, evaluated.
pub fn targets(report: &Report) -> Vec<Target> {
    let mut out = Vec::new();
    for (key, goal) in RATIO_TARGETS {
        let Some(b) = report.backend(key) else {
            continue;
        };
        let (Some(ours), Some(raw)) = (b.row(Role::Ours), b.row(Role::Raw)) else {
            continue;
        };
        let r = ratio(ours.latency.p50_us, raw.latency.p50_us);
        out.push(Target {
            key: format!("{key}-ratio"),
            what: format!(
                "{} uncontended acquire + release vs raw floor (p50)",
                title(key)
            ),
            goal: format!("≤ {goal:.2}×"),
            measured: format!(
                "{} ({} vs {})",
                x(r),
                us(ours.latency.p50_us),
                us(raw.latency.p50_us)
            ),
            met: Some(r <= goal),
        });
    }
    let etcd = report.backend("etcd");
    let builtin = etcd.and_then(|b| {
        Some((
            b.row(Role::Ours)?,
            b.row_like("built-in `lock` + `unlock` (one session")?,
        ))
    });
    if let Some((ours, builtin)) = builtin {
        out.push(Target {
            key: "etcd-builtin".into(),
            what: "etcd: ours vs etcd-client's built-in `lock` + `unlock` (p50)".into(),
            goal: "ours faster".into(),
            measured: format!(
                "{} vs {}",
                us(ours.latency.p50_us),
                us(builtin.latency.p50_us)
            ),
            met: Some(ours.latency.p50_us < builtin.latency.p50_us),
        });
    }
    match &report.peers {
        Some(peers) => {
            for p in &peers.peers {
                out.push(Target {
                    key: format!("peer-uncontended-{}", p.library),
                    what: format!("Redis uncontended: ours vs {} (p50)", p.library),
                    goal: "ours faster".into(),
                    measured: format!(
                        "{} vs {}",
                        us(peers.ours_uncontended.p50_us),
                        us(p.uncontended.p50_us)
                    ),
                    met: Some(peers.ours_uncontended.p50_us < p.uncontended.p50_us),
                });
                if let Some(redis) = report.backend("redis") {
                    out.push(Target {
                        key: format!("peer-handoff-{}", p.library),
                        what: format!("Redis hand-off: ours vs {} (p50)", p.library),
                        goal: "ours faster".into(),
                        measured: format!(
                            "{} vs {}",
                            us(redis.handoff.latency.p50_us),
                            us(p.handoff.latency.p50_us)
                        ),
                        met: Some(redis.handoff.latency.p50_us < p.handoff.latency.p50_us),
                    });
                }
            }
        }
        None => out.push(Target {
            key: "peers".into(),
            what: "faster than every peer".into(),
            goal: "ours faster".into(),
            measured: "peers skipped in this run".into(),
            met: None,
        }),
    }
    for b in &report.backends {
        let rtt = write_rtt(b).p50_us;
        let in_rtts = ratio(b.handoff.latency.p50_us, rtt);
        out.push(Target {
            key: format!("{}-handoff", b.key),
            what: format!("{} hand-off p50, in raw write round trips", title(&b.key)),
            goal: format!("≤ {HANDOFF_RTTS:.0} round trips"),
            measured: format!(
                "{:.1} ({} / {})",
                in_rtts,
                us(b.handoff.latency.p50_us),
                us(rtt)
            ),
            met: Some(in_rtts <= HANDOFF_RTTS),
        });
    }
    if let Some(cost) = report.backend("redis").and_then(|b| b.cost.as_ref()) {
        for (i, (what, goal, measured, met)) in
            crate::cost::redis_targets(cost).into_iter().enumerate()
        {
            out.push(Target {
                key: format!("redis-cost-{}", ["server", "client", "rslock"][i.min(2)]),
                what,
                goal,
                measured,
                met,
            });
        }
    }
    if let Some(redis) = report.backend("redis") {
        out.extend(held_lease_targets(&redis.hold));
    }
    let overlaps: u64 = report.backends.iter().map(|b| b.handoff.overlaps).sum();
    out.push(Target {
        key: "overlaps".into(),
        what: "mutual exclusion in our hand-off runs (grants while another waiter held)".into(),
        goal: "0".into(),
        measured: overlaps.to_string(),
        met: Some(overlaps == 0),
    });
    for b in &report.backends {
        out.push(Target {
            key: format!("{}-lost", b.key),
            what: format!(
                "{}: leases lost while {} are renewed",
                title(&b.key),
                held_counts(&b.hold, &b.hold_unbatched)
            ),
            goal: "0".into(),
            measured: format!("{} batched, {} alone", b.hold.lost, b.hold_unbatched.lost),
            met: Some(
                [&b.hold, &b.hold_unbatched]
                    .iter()
                    .all(|h| h.lost == 0 && h.release_failures == 0),
            ),
        });
    }
    out
}

/// How many leases the two renewal children held: one count when they held the same.
fn held_counts(batched: &HoldReport, alone: &HoldReport) -> String {
    if batched.leases == alone.leases {
        num(batched.leases as f64)
    } else {
        format!(
            "{} (batched) and {} (alone)",
            num(batched.leases as f64),
            num(alone.leases as f64)
        )
    }
}

/// Leases the held-lease targets are set for (issue 20).
const HELD_LEASES: usize = 100_000;
/// Resident memory per held lease, at most.
const HELD_BYTES: f64 = 512.0;
/// Renewal CPU while holding them, as a share of one core, at most.
const HELD_CPU: f64 = 0.05;

/// The Redis held-lease targets, on the batched child (the `Locker` default): evaluated only
/// when it held 100,000 leases (the CPU share grows with the count).
fn held_lease_targets(h: &HoldReport) -> Vec<Target> {
    let at_scale = h.leases >= HELD_LEASES;
    let note = |v: String| {
        if at_scale {
            format!("{v} at {} leases", num(h.leases as f64))
        } else {
            format!(
                "{v} at {} leases (targets are for {})",
                num(h.leases as f64),
                num(HELD_LEASES as f64)
            )
        }
    };
    vec![
        Target {
            key: "redis-held-bytes".into(),
            what: "Redis: resident memory per held lease".into(),
            goal: format!("≤ {HELD_BYTES:.0} bytes"),
            measured: note(format!("{:.0} bytes", h.bytes_per_lease())),
            met: at_scale.then(|| h.bytes_per_lease() <= HELD_BYTES),
        },
        Target {
            key: "redis-held-cpu".into(),
            what: "Redis: renewal CPU while holding the leases (share of one core)".into(),
            goal: format!("≤ {:.0} %", HELD_CPU * 100.0),
            measured: note(format!("{:.1} %", h.cpu_share * 100.0)),
            met: at_scale.then_some(h.cpu_share <= HELD_CPU),
        },
    ]
}

/// Renders the whole document.
pub fn render(report: &Report) -> String {
    let mut md = String::new();
    let p = &report.params;
    let m = &report.machine;
    let _ = writeln!(md, "# Benchmarks\n");
    if p.smoke {
        let _ = writeln!(
            md,
            "> **Smoke run**: tiny counts to check that the harness works. These numbers mean nothing.\n"
        );
    }
    let _ = writeln!(
        md,
        "Generated by `./scripts/bench` (which builds `fencelock-bench` in release mode and runs it; \
         the harness starts its own redis-server, postgres and etcd on loopback ports, creates the \
         Python venv for the peers and builds the rslock peer). Do not edit by hand: rerun it.\n"
    );
    let _ = writeln!(
        md,
        "Every latency is one complete cycle measured on the client: p50 / p99 over all samples. \
        \"Ours\" is `Locker::acquire` (no wait, TTL 10 s) + `LockGuard::release` — what users call, \
        watchdog included; the store row without `Locker` is shown too. Ours, the raw floor and the \
        reference rows run interleaved, operation by operation, on the same connection of the same \
        server in the same run, in an order shuffled afresh for each iteration (the operation just \
        before shifts a cycle by 10–20 µs here, so a fixed order would favour some rows). Everything \
        in-process (ours, the floors, the rslock peer) runs as a task on a runtime worker, where \
        services run their lock calls, not in `block_on` on the main thread, which pays a thread \
        wake-up after every reply.\n"
    );
    let _ = writeln!(
        md,
        "Parameters: {}. Run took {:.0} s.\n",
        p.describe(),
        report.took_secs
    );

    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| date | {} |", m.date);
    let _ = writeln!(md, "| cores (nproc) | {} |", m.nproc);
    let _ = writeln!(md, "| CPU | {} |", m.cpu);
    let _ = writeln!(md, "| memory | {} |", m.memory);
    let _ = writeln!(md, "| kernel | {} |", m.kernel);
    let _ = writeln!(md, "| OS | {} |", m.os);
    let _ = writeln!(md, "| compiler | {} |", m.rustc);
    for b in &report.backends {
        let _ = writeln!(md, "| {} server | {} |", title(&b.key), b.server);
    }
    if let Some(peers) = &report.peers {
        for peer in &peers.peers {
            let _ = writeln!(md, "| peer | {} |", peer.library);
        }
    }
    let _ = writeln!(
        md,
        "| load average (1, 5, 15 min) before / after | {} / {} |",
        report.load_before, report.load_after
    );
    let _ = writeln!(md);
    let _ = writeln!(md, "{}\n", notes::setup());
    if crate::machine::load1() > 0.0 {
        let _ = writeln!(
            md,
            "{}\n",
            notes::load(&report.load_before, &report.load_after, m.nproc)
        );
    }

    let targets = targets(report);
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | goal | measured | |\n|---|---|---|---|");
    for t in &targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.what,
            t.goal,
            t.measured,
            mark(t.met)
        );
    }
    let _ = writeln!(md);
    let missed: Vec<_> = targets.iter().filter(|t| t.met == Some(false)).collect();
    if !missed.is_empty() {
        let _ = writeln!(md, "### Missed targets: why, and what would close them\n");
        let mut seen = std::collections::BTreeSet::new();
        for t in missed {
            let note = notes::missed(&t.key, report);
            if seen.insert(note.clone()) {
                let _ = writeln!(md, "- **{}** — {}\n", t.what, note);
            }
        }
    }

    md.push_str(&crate::plots::markdown(report));
    uncontended(&mut md, report);
    peers(&mut md, report);
    handoff(&mut md, report);
    throughput(&mut md, report);
    renewal(&mut md, report);
    crate::pg_pooler::render(&mut md, report);
    crate::redis_cluster::render(&mut md, report);
    cost(&mut md, report);
    md
}

fn cost(md: &mut String, report: &Report) {
    let measured: Vec<_> = report
        .backends
        .iter()
        .filter_map(|b| Some((b, b.cost.as_ref()?)))
        .collect();
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Cost per cycle\n");
    let _ = writeln!(md, "{}\n", notes::cost());
    for (b, cost) in measured {
        crate::cost::render(md, title(&b.key), &b.server, cost);
    }
}

fn uncontended(md: &mut String, report: &Report) {
    let _ = writeln!(md, "## 1. Uncontended acquire + release\n");
    let _ = writeln!(md, "### The client alone (no server)\n");
    let _ = writeln!(md, "| operation | n | p50 | p99 |\n|---|---:|---:|---:|");
    for r in &report.client_overhead {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            r.label,
            num(r.latency.n as f64),
            us(r.latency.p50_us),
            us(r.latency.p99_us)
        );
    }
    let _ = writeln!(md, "\n{}\n", notes::client_overhead());
    let _ = writeln!(
        md,
        "A fresh name every iteration, one connection, sequential. Ratios are against the raw floor's p50 / p99.\n"
    );
    for b in &report.backends {
        let _ = writeln!(md, "### {} ({})\n", title(&b.key), b.server);
        latency_table(md, &b.uncontended, "raw", true);
        let _ = writeln!(md, "\n{}\n", notes::uncontended(&b.key));
    }
}

fn peers(md: &mut String, report: &Report) {
    let _ = writeln!(md, "## 2. Peers on the same Redis\n");
    let Some(peers) = &report.peers else {
        let _ = writeln!(md, "Skipped in this run.\n");
        return;
    };
    let _ = writeln!(
        md,
        "Measured first on the fresh Redis (before any waiter subscribed). Uncontended: {} interleaved rounds — in each, ours and the raw floor run their share in-process (interleaved), then every peer runs its share as a subprocess after its own warm-up. Hand-off: the protocol of section 3 (same waiters, same 5 ms hold), each peer with its default wake-up/retry settings.\n",
        report.params.peer_rounds
    );
    let redis_handoff = report
        .backend("redis")
        .map(|b| b.handoff.clone())
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "| library | uncontended p50 | p99 | ops/s (sequential) | ours / this p50 | hand-off p50 | hand-off p99 | hand-offs/s | overlaps |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let o = peers.ours_uncontended;
    let h = &redis_handoff;
    let _ = writeln!(
        md,
        "| **fencelock `Locker`** (Rust) | {} | {} | {} | 1.00× | {} | {} | {} | {} |",
        us(o.p50_us),
        us(o.p99_us),
        num(o.sequential_ops_per_sec()),
        us(h.latency.p50_us),
        us(h.latency.p99_us),
        num(h.per_sec),
        h.overlaps
    );
    let r = peers.raw_uncontended;
    let _ = writeln!(
        md,
        "| raw `SET NX PX` + `DEL` (same rounds; no lock library) | {} | {} | {} | {} | – | – | – | – |",
        us(r.p50_us),
        us(r.p99_us),
        num(r.sequential_ops_per_sec()),
        x(ratio(o.p50_us, r.p50_us)),
    );
    for p in &peers.peers {
        let u = p.uncontended;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.library,
            us(u.p50_us),
            us(u.p99_us),
            num(u.sequential_ops_per_sec()),
            x(ratio(o.p50_us, u.p50_us)),
            us(p.handoff.latency.p50_us),
            us(p.handoff.latency.p99_us),
            num(p.handoff.per_sec),
            p.handoff.overlaps
        );
    }
    let _ = writeln!(md, "\n{}\n", notes::peers());
}

fn handoff(md: &mut String, report: &Report) {
    let _ = writeln!(md, "## 3. Contended hand-off\n");
    let _ = writeln!(
        md,
        "{} waiters on one name. Each holder keeps the lock {} ms, then releases; a sample is the time from its `release()` call to the next holder's `acquire()` returning. After releasing, a waiter queues again only once someone else got the lock, so at every release {} waiters have been waiting for at least the hold time, and the releaser never races them. Overlaps count grants while another waiter still held the lock (mutual exclusion, checked on the side). Round trips are the server's raw ones from section 1 (p50).\n",
        report.params.waiters,
        crate::handoff::HOLD.as_millis(),
        report.params.waiters.saturating_sub(1)
    );
    let _ = writeln!(
        md,
        "| backend | p50 | p99 | hand-offs/s | overlaps | raw read RTT | raw write RTT | p50 in write RTTs | p50 in read RTTs |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for b in &report.backends {
        let (r, w) = (read_rtt(b).p50_us, write_rtt(b).p50_us);
        let h = &b.handoff;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            title(&b.key),
            us(h.latency.p50_us),
            us(h.latency.p99_us),
            num(h.per_sec),
            h.overlaps,
            us(r),
            us(w),
            ratio(h.latency.p50_us, w),
            ratio(h.latency.p50_us, r)
        );
    }
    let _ = writeln!(md, "\n{}\n", notes::handoff());
}

fn throughput(md: &mut String, report: &Report) {
    let _ = writeln!(md, "## 4. Throughput\n");
    let p = &report.params;
    let _ = writeln!(
        md,
        "{} tasks on {} distinct names, each looping acquire + release; ours and the raw floor alternate in {} s slices until each ran {} s. Redis: one multiplexed connection; PostgreSQL: a pool of 10 connections (the backend's default); etcd: one gRPC channel.\n",
        p.tasks, p.tasks, p.slice_secs, p.throughput_secs
    );
    let _ = writeln!(
        md,
        "| backend | ours ops/s | raw ops/s | ours / raw | ours p50 / p99 | raw p50 / p99 |\n|---|---:|---:|---:|---:|---:|"
    );
    for b in &report.backends {
        let (o, r) = (&b.throughput_ours, &b.throughput_raw);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} / {} | {} / {} |",
            title(&b.key),
            num(o.ops_per_sec),
            num(r.ops_per_sec),
            x(ratio(o.ops_per_sec, r.ops_per_sec)),
            us(o.latency.p50_us),
            us(o.latency.p99_us),
            us(r.latency.p50_us),
            us(r.latency.p99_us)
        );
    }
    let _ = writeln!(md, "\n{}\n", notes::throughput());
}

fn renewal(md: &mut String, report: &Report) {
    let p = &report.params;
    let _ = writeln!(md, "## 5. Renewal at scale\n");
    let _ = writeln!(
        md,
        "One `Locker` in a child process acquires {} leases (TTL {} s, {} acquires in flight), holds them {} s while each guard's watchdog renews every TTL/3, then releases them; then a second child does the same with renewal batching off{}. Renewals and the store calls carrying them are counted by a wrapper around the store; CPU is the child's user + system time (getrusage) during the hold window. The \"leases\" column says how many each child held; compare the children by CPU per 1,000 renewals, not by share of a core.\n",
        num(p.leases as f64),
        p.renew_ttl_secs,
        report
            .backends
            .first()
            .map_or(crate::hold::IN_FLIGHT, |b| b.hold.in_flight),
        p.hold_secs,
        if p.alone_leases == p.leases {
            String::new()
        } else {
            format!(
                ", on {} leases (one store call per renewal at {} would be {} calls/s, more than PostgreSQL and etcd serve on 2 cores)",
                num(p.alone_leases as f64),
                num(p.leases as f64),
                num(p.leases as f64 * 3.0 / p.renew_ttl_secs.max(1) as f64)
            )
        }
    );
    let _ = writeln!(
        md,
        "| backend | renewals | leases | renewals/s | expected (leases ÷ TTL/3) | store calls/s | leases per call | failed renew calls | leases lost | failed releases | client CPU (share of one core) | CPU per 1,000 renewals | time to acquire all | time to release all |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (head, h) in hold_rows(report) {
        let per_call = if h.renew_calls_per_sec > 0.0 {
            h.renews_per_sec / h.renew_calls_per_sec
        } else {
            0.0
        };
        let _ = writeln!(
            md,
            "{head} {} | {} | {} | {:.1} | {} | {} | {} | {:.1} % | {:.1} ms | {:.1} s | {} |",
            num(h.renews_per_sec),
            num(h.expected_renews_per_sec),
            num(h.renew_calls_per_sec),
            per_call,
            h.renew_failures,
            h.lost,
            h.release_failures,
            h.cpu_share * 100.0,
            h.cpu_ms_per_1k_renews,
            h.acquire_secs,
            if h.release_secs > 0.0 {
                format!("{:.1} s", h.release_secs)
            } else {
                "–".to_owned()
            }
        );
    }
    let _ = writeln!(md, "\n{}\n", notes::renewal(report));
    let _ = writeln!(md, "## 6. Memory\n");
    let _ = writeln!(
        md,
        "Resident memory of the same two child processes (`/proc/self/status`): after connecting, while holding their leases (the \"leases\" column), and the peak (VmHWM). Per held lease is (RSS holding − RSS connected) ÷ leases; the batched child's Redis row is the one the target is for.\n"
    );
    let _ = writeln!(
        md,
        "| backend | renewals | leases | RSS connected | RSS holding | peak RSS (VmHWM) | per held lease |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for (head, h) in hold_rows(report) {
        let _ = writeln!(
            md,
            "{head} {:.1} MiB | {:.1} MiB | {:.1} MiB | {} bytes |",
            h.rss_before_kib as f64 / 1024.0,
            h.rss_held_kib as f64 / 1024.0,
            h.peak_rss_kib as f64 / 1024.0,
            num(h.bytes_per_lease())
        );
    }
    let _ = writeln!(md);
}

/// Each renewal child of each backend (batched, then alone), with the start of its row in
/// sections 5 and 6: `| backend | batched or alone | leases |`.
fn hold_rows(report: &Report) -> impl Iterator<Item = (String, &HoldReport)> {
    report.backends.iter().flat_map(|b| {
        [&b.hold, &b.hold_unbatched].map(|h| {
            let mode = if h.batching { "batched" } else { "alone" };
            let head = format!("| {} | {mode} | {} |", title(&b.key), num(h.leases as f64));
            (head, h)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(leases: usize, batching: bool) -> HoldReport {
        HoldReport {
            leases,
            batching,
            rss_before_kib: 10_000,
            // 400 bytes per lease at 100,000.
            rss_held_kib: 10_000 + 400 * leases as u64 / 1024,
            cpu_share: 0.04,
            ..HoldReport::default()
        }
    }

    #[test]
    fn held_counts_names_both_children_only_when_they_differ() {
        assert_eq!(held_counts(&held(50, true), &held(50, false)), "50");
        assert_eq!(
            held_counts(&held(100_000, true), &held(10_000, false)),
            "100,000 (batched) and 10,000 (alone)"
        );
    }

    #[test]
    fn held_lease_targets_are_marked_only_at_100_000() {
        let at_scale = held_lease_targets(&held(100_000, true));
        assert_eq!(at_scale[0].met, Some(true), "{:?}", at_scale[0]);
        assert_eq!(at_scale[0].measured, "400 bytes at 100,000 leases");
        assert_eq!(at_scale[1].met, Some(true));
        let mut missed = held(100_000, true);
        missed.cpu_share = 0.11;
        missed.rss_held_kib = missed.rss_before_kib + 1_000 * 100_000 / 1024;
        let missed = held_lease_targets(&missed);
        assert_eq!(missed[0].met, Some(false));
        assert_eq!(missed[1].met, Some(false));
        let small = held_lease_targets(&held(10_000, true));
        assert!(small.iter().all(|t| t.met.is_none()), "{small:?}");
        assert!(small[0].measured.ends_with("(targets are for 100,000)"));
    }
}
