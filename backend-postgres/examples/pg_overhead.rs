//! Measures what the store adds over hand-written SQL: p50/p99 of acquire+release through
//! `PgLeaseStore` versus the same two statements run directly with sqlx, in the same run.
//!
//! ```sh
//! FENCELOCK_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --release -p fencelock-postgres --example pg_overhead
//! ```

use std::time::{Duration, Instant};

use fencelock_core::{HolderId, LeaseStore, LockName};
use fencelock_postgres::PgLeaseStore;
use fencelock_postgres::sqlx::{self, PgPool};

const ROUNDS: usize = 2_000;

const RAW_ACQUIRE: &str = "INSERT INTO \"public\".\"fencelock_leases\" AS lease (name, holder, token, expires_at) \
    SELECT $1, $2::uuid, floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint, \
           clock_timestamp() + $3::bigint * interval '1 microsecond' \
    ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, \
        token = greatest(lease.token + 1, EXCLUDED.token), expires_at = EXCLUDED.expires_at \
    WHERE lease.expires_at <= clock_timestamp() RETURNING token";
const RAW_RELEASE: &str = "WITH released AS (UPDATE \"public\".\"fencelock_leases\" \
    SET holder = NULL, expires_at = '-infinity' \
    WHERE name = $1 AND holder = $2::uuid AND token = $3 AND expires_at > clock_timestamp() \
    RETURNING name) SELECT count(*) FROM released CROSS JOIN LATERAL pg_notify($4, released.name)";

fn report(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    println!(
        "{label:<34} p50 {:>6} µs   p99 {:>6} µs",
        p50.as_micros(),
        p99.as_micros()
    );
    p50
}

async fn raw(pool: &PgPool, name: &str) -> Result<Vec<Duration>, sqlx::Error> {
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let holder = HolderId::random().to_string();
        let start = Instant::now();
        let token: i64 = sqlx::query_scalar(RAW_ACQUIRE)
            .bind(name)
            .bind(&holder)
            .bind(30_000_000_i64)
            .fetch_one(pool)
            .await?;
        let _: i64 = sqlx::query_scalar(RAW_RELEASE)
            .bind(name)
            .bind(&holder)
            .bind(token)
            .bind("fencelock_leases")
            .fetch_one(pool)
            .await?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

async fn store(
    store: &PgLeaseStore,
    name: &LockName,
) -> Result<Vec<Duration>, fencelock_core::Error> {
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let lease = store
            .try_acquire(name, Duration::from_secs(30))
            .await?
            .ok_or_else(|| fencelock_core::Error::invalid("bench", "lock unexpectedly held"))?;
        store.release(&lease).await?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("FENCELOCK_POSTGRES_URL")
        .map_err(|_| "set FENCELOCK_POSTGRES_URL=postgres://user@host:port/db")?;
    let durable = PgLeaseStore::connect(&url).await?;
    let fast = PgLeaseStore::builder()
        .with_url(&url)
        .with_durable_grants(false)
        .connect()
        .await?;
    let pool = durable.pool().clone();
    let mut select = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let _: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
        select.push(start.elapsed());
    }
    let name = LockName::new(format!("bench/{}", HolderId::random()))?;
    // Warm up every path, then interleave, so drift hits all alike.
    raw(&pool, name.as_str()).await?;
    store(&durable, &name).await?;
    store(&fast, &name).await?;
    let mut raws = Vec::new();
    let mut durables = Vec::new();
    let mut fasts = Vec::new();
    for _ in 0..3 {
        raws.extend(raw(&pool, name.as_str()).await?);
        durables.extend(store(&durable, &name).await?);
        fasts.extend(store(&fast, &name).await?);
    }
    report("SELECT 1", select);
    let raw_p50 = report("raw acquire+release (sqlx)", raws);
    let fast_p50 = report("store, durable grants off", fasts);
    let durable_p50 = report("store, durable grants on", durables);
    println!(
        "store/raw: {:.3} (durable off), {:.3} (durable on)",
        fast_p50.as_secs_f64() / raw_p50.as_secs_f64(),
        durable_p50.as_secs_f64() / raw_p50.as_secs_f64()
    );
    Ok(())
}
