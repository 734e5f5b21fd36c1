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
        for mode in ["batched", "alone"] {
            let row = format!("| {backend} | {mode} | ");
            assert!(doc.contains(&row), "missing `{row}` in:\n{doc}");
        }
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
}
