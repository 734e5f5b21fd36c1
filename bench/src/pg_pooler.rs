//! PostgreSQL through pgbouncer in transaction mode: the store's acquire + release straight to
//! the server and through the pooler, each with the default inline statements and with named
//! prepared statements (`with_prepared_statements(true)`), against the raw floor (the same
//! statements by hand) both ways, on the same server in the same interleaved run.
//!
//! Named statements are measured through the pooler only where the pooler supports them: fresh
//! clients (as `fencelock run` makes them) first try them there, and if any collides ("prepared
//! statement … already exists", pgbouncer before 1.21 or without `max_prepared_statements`),
//! the row says "not supported by this pooler" with the error instead of a number.

use std::fmt::Write as _;
use std::time::Duration;

use fencelock_conformance::harness::PgBouncer;
use fencelock_core::{LeaseStore, LockName};
use fencelock_postgres::PgLeaseStore;
use serde::{Deserialize, Serialize};

use crate::backends::TTL;
use crate::backends::postgres::PgBench;
use crate::cycle::{self, Role, Row, Variant};
use crate::error::Result;
use crate::params::Params;
use crate::report::{latency_table, us};
use crate::run::Report;

/// Fresh clients that try named statements through the pooler before they are measured there.
const TRIES: usize = 20;

/// A row that could not be measured, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unsupported {
    /// Row label.
    pub label: String,
    /// Why (the error, as the store reported it).
    pub why: String,
}

/// The section's results.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PgPoolerResult {
    /// The pooler (`SHOW VERSION`) and how it is configured.
    pub pooler: String,
    /// Measured rows; the direct raw floor is the one with [`Role::Raw`].
    pub rows: Vec<Row>,
    /// Rows that this pooler cannot run.
    pub unsupported: Vec<Unsupported>,
}

const RAW_POOLED: &str = "raw floor: the same statements by hand, inline — through pgbouncer";
const NAMED_POOLED: &str = "fencelock store, named prepared statements (`with_prepared_statements(true)`) — through pgbouncer";

/// Measures the section on the server at `direct`, through `pooler` in front of it.
pub async fn run(params: &Params, direct: &str, pooler: &PgBouncer) -> Result<PgPoolerResult> {
    let pooled_url = pooler.url();
    let version = pooler
        .admin("SHOW VERSION")
        .await
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|e| format!("pgbouncer (version unknown: {e})"));
    // One client connection each, sequential: the latency of one cycle on each route.
    let straight = PgBench::connect(direct, 1).await?;
    let pooled = PgBench::connect_pooled(&pooled_url, direct, 1).await?;
    let mut variants = vec![
        Variant::new(
            "fencelock store, inline statements (default) — direct",
            Role::OursStore,
            straight.ours_store("pooler/direct"),
        ),
        Variant::new(
            "fencelock store, inline statements (default) — through pgbouncer",
            Role::OursStore,
            pooled.ours_store("pooler/pooled"),
        ),
        Variant::new(
            "raw floor: the same statements by hand, inline — direct",
            Role::Raw,
            straight.raw("pooler/direct"),
        ),
        Variant::new(RAW_POOLED, Role::Reference, pooled.raw("pooler/pooled")),
        Variant::new(
            "raw: the same statements as named prepared statements — direct",
            Role::Reference,
            straight.raw_prepared("pooler/direct"),
        ),
    ];
    if let Some(named) = straight.ours_prepared("pooler/named") {
        variants.push(Variant::new(
            "fencelock store, named prepared statements (`with_prepared_statements(true)`) — direct",
            Role::Reference,
            named,
        ));
    }
    let mut unsupported = Vec::new();
    match named_through_pooler(&pooled_url).await? {
        Ok(store) => variants.push(Variant::new(
            NAMED_POOLED,
            Role::Reference,
            crate::backends::store_cycle(
                &store,
                format!("bench/{}/pooler/named", crate::backends::run_id()),
            ),
        )),
        Err(why) => unsupported.push(Unsupported {
            label: NAMED_POOLED.to_owned(),
            why,
        }),
    }
    let rows = cycle::interleaved(&variants, params.warmup, params.iterations).await?;
    Ok(PgPoolerResult {
        pooler: format!(
            "{version}, transaction mode, default_pool_size = 2 (the test harness's configuration)"
        ),
        rows,
        unsupported,
    })
}

/// Fresh clients with named statements through the pooler, one after another, each acquiring
/// and releasing once (as `fencelock run` does): a store to measure if none failed, else why
/// this pooler cannot run them. Failures of any other kind end the benchmark.
async fn named_through_pooler(url: &str) -> Result<std::result::Result<PgLeaseStore, String>> {
    let name = LockName::new(format!("bench/{}/pooler/try", crate::backends::run_id()))?;
    let mut failed = 0;
    let mut first_error = None;
    for _ in 0..TRIES {
        let attempt = async {
            let store = named_store(url).await?;
            if let Some(lease) = store.try_acquire(&name, TTL).await? {
                store.release(&lease).await?;
            }
            Ok::<_, fencelock_core::Error>(store)
        };
        match attempt.await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("prepared statement") => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(error) = first_error {
        return Ok(Err(format!(
            "{failed} of {TRIES} fresh clients failed: {error}"
        )));
    }
    Ok(Ok(named_store(url).await?))
}

/// A fresh client on named prepared statements, one connection, polling waiters (the table
/// exists already).
async fn named_store(url: &str) -> std::result::Result<PgLeaseStore, fencelock_core::Error> {
    PgLeaseStore::builder()
        .with_url(url)
        .with_max_connections(1)
        .with_push_wakeups(false)
        .with_migrate_on_connect(false)
        .with_prepared_statements(true)
        .with_op_timeout(Duration::from_secs(10))
        .connect()
        .await
}

/// The section in BENCHMARKS.md (nothing when it was not run).
pub fn render(md: &mut String, report: &Report) {
    let Some(result) = &report.pg_pooler else {
        return;
    };
    let _ = writeln!(md, "## PostgreSQL through pgbouncer\n");
    let _ = writeln!(
        md,
        "{}. One client connection per route, sequential, a fresh name every iteration, all rows interleaved on the same server in the same run. Ratios are against the direct raw floor's p50 / p99.\n",
        result.pooler
    );
    latency_table(md, &result.rows, "raw direct", false);
    for u in &result.unsupported {
        let _ = writeln!(
            md,
            "| {} | — | not supported by this pooler | — | — | — |",
            u.label
        );
    }
    let _ = writeln!(md);
    for u in &result.unsupported {
        let _ = writeln!(md, "- {}: {}\n", u.label, u.why.replace('|', "\\|"));
    }
    let raw = result
        .rows
        .iter()
        .find(|r| r.role == Role::Raw)
        .map(|r| r.latency)
        .unwrap_or_default();
    let hop = result
        .rows
        .iter()
        .find(|r| r.label == RAW_POOLED)
        .map(|r| r.latency.p50_us - raw.p50_us);
    let _ = writeln!(
        md,
        "The store sends every statement with its values inline as one simple-protocol message by default, so it works through any pooler; the server then parses and plans each statement, which named prepared statements (parsed once per connection) save. Through a transaction-mode pooler, named statements need pgbouncer 1.21+ with `max_prepared_statements` above 0: before that, fresh clients collide on sqlx's `sqlx_s_1`, as the row above shows for this pooler. The pooler adds a hop and its own work to each statement: the two raw floors send the same statements, and differ by {} at p50 here (two statements per cycle, on loopback).\n",
        hop.map_or_else(|| "—".to_owned(), us)
    );
}
