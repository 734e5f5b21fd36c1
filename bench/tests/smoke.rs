//! CI's check of the benchmark harness: the real binary, in smoke mode, against servers it
//! starts through the harness (a missing server binary fails this test).

use std::process::Command;

#[test]
fn smoke_run_writes_every_section_with_targets_marked() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("BENCHMARKS.md");
    let run = Command::new(env!("CARGO_BIN_EXE_fencelock-bench"))
        .arg("--smoke")
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "smoke run failed: {stderr}");
    let doc = std::fs::read_to_string(&output).unwrap();
    for section in [
        "## Machine",
        "## Targets",
        "## 1. Uncontended acquire + release",
        "## 2. Peers on the same Redis",
        "## 3. Contended hand-off",
        "## 4. Throughput",
        "## 5. Renewal at scale",
        "## 6. Memory",
        "## Cost per cycle",
        "### Redis (Redis ",
        "### PostgreSQL (PostgreSQL ",
        "### etcd (etcd ",
        "| Redis server CPU per `Locker` cycle (64 tasks) | ≤ 11 µs |",
        "| Redis: resident memory per held lease | ≤ 512 bytes |",
    ] {
        assert!(doc.contains(section), "missing {section} in:\n{doc}");
    }
    for server in [
        "| Redis server | Redis ",
        "| PostgreSQL server | PostgreSQL ",
        "| etcd server | etcd ",
    ] {
        assert!(doc.contains(server), "missing `{server}` in:\n{doc}");
    }
    assert!(doc.contains("Smoke run"), "smoke runs must say so");
    assert!(
        doc.contains("**met**") || doc.contains("**missed**"),
        "no target marked in:\n{doc}"
    );
    // Both renewal children (batched, alone) held their leases without losing any.
    for backend in ["Redis", "PostgreSQL", "etcd"] {
        let lost = format!(
            "| {backend}: leases lost while 50 are renewed | 0 | 0 batched, 0 alone | **met** |"
        );
        assert!(doc.contains(&lost), "missing `{lost}` in:\n{doc}");
        // Each child's row in section 5 and in section 6 says how many leases it held.
        for mode in ["batched", "alone"] {
            let row = format!("| {backend} | {mode} | 50 | ");
            assert_eq!(doc.matches(&row).count(), 2, "`{row}` twice in:\n{doc}");
        }
    }
    // PostgreSQL through pgbouncer: every route measured, and named statements through the
    // harness's pgbouncer (Debian's 1.18) said to be unsupported rather than given a number.
    assert!(doc.contains("## PostgreSQL through pgbouncer"), "{doc}");
    for row in [
        "| fencelock store, inline statements (default) — direct | ",
        "| fencelock store, inline statements (default) — through pgbouncer | ",
        "| raw floor: the same statements by hand, inline — direct | ",
        "| raw floor: the same statements by hand, inline — through pgbouncer | ",
        "| fencelock store, named prepared statements (`with_prepared_statements(true)`) — direct | ",
    ] {
        assert!(doc.contains(row), "missing `{row}` in:\n{doc}");
    }
    assert!(
        doc.contains("— through pgbouncer | — | not supported by this pooler |")
            || doc.contains(
                "| fencelock store, named prepared statements (`with_prepared_statements(true)`) — through pgbouncer | "
            ),
        "named statements through the pooler: neither measured nor said unsupported in:\n{doc}"
    );
    // Redis Cluster: the floor, hand-off, and throughput on one primary and on three, with a
    // CPU row per redis-server for each.
    assert!(doc.contains("## Redis Cluster"), "{doc}");
    for row in [
        "| raw: `SET NX PX` + `DEL` (redis-rs cluster client) | ",
        "### Contended hand-off",
        "\n| 1 | ",
        "\n| 3 | ",
    ] {
        assert!(doc.contains(row), "missing `{row}` in:\n{doc}");
    }
    // The harness's cluster: three primaries with a replica each.
    for (primaries, servers) in [(1, 6), (3, 6)] {
        let rows = doc
            .lines()
            .filter(|l| l.starts_with(&format!("| {primaries} | 127.0.0.1:")))
            .count();
        assert_eq!(
            rows, servers,
            "CPU rows for {primaries} primaries in:\n{doc}"
        );
    }
    // Every backend's cost table measured its server (the harness started them all here).
    for mode in ["fencelock `Locker`", "fencelock store", "raw"] {
        let cost = doc.split("## Cost per cycle").nth(1).unwrap_or_default();
        let rows = cost
            .lines()
            .filter(|l| l.starts_with(&format!("| {mode}")))
            .filter(|l| {
                l.split('|')
                    .nth(4)
                    .is_some_and(|server| server.trim() != "–")
            })
            .count();
        assert!(
            rows >= 3,
            "{mode}: server CPU missing in a cost table:\n{doc}"
        );
    }
    // The run's data is saved next to the report, and rendering it again gives the same report.
    let saved = output.with_extension("json");
    assert!(saved.exists(), "no saved run at {}", saved.display());
    let again = dir.path().join("again.md");
    let render = Command::new(env!("CARGO_BIN_EXE_fencelock-bench"))
        .arg("--render")
        .arg(&saved)
        .arg("--output")
        .arg(&again)
        .output()
        .unwrap();
    assert!(
        render.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&render.stderr)
    );
    assert_eq!(std::fs::read_to_string(&again).unwrap(), doc);
    // The pictures, drawn from the same data, sit next to the report and it embeds them.
    for backend in ["redis", "postgres", "etcd"] {
        let link = format!("](docs/bench/{backend}.svg)");
        assert!(doc.contains(&link), "missing `{link}` in:\n{doc}");
        let svg =
            std::fs::read_to_string(dir.path().join(format!("docs/bench/{backend}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && !svg.contains("<script"));
        // A latency distribution was drawn (not the "no distribution" note), and throughput.
        assert!(!svg.contains("saved no latency distribution"), "{backend}");
        assert!(
            svg.contains("throughput against concurrent tasks"),
            "{backend}"
        );
    }
}
