//! PostgreSQL: `PgLeaseStore` against the very same statements (`src/sql/acquire.sql` and
//! `release.sql` of the backend, rendered the same way) issued by hand with sqlx on the same
//! connection, sent as the store sends them by default (values inline, one simple-protocol
//! message each); for reference the same statements as sqlx's named prepared statements, the
//! store with those (`with_prepared_statements(true)`), and `pg_try_advisory_lock` + unlock.
//! The same through pgbouncer is [`crate::pg_pooler`]'s.

use std::sync::Arc;

use fencelock_core::{HolderId, Locker};
use fencelock_postgres::PgLeaseStore;
use fencelock_postgres::sqlx::{self, AssertSqlSafe, PgPool, Row, SqlSafeStr, SqlStr};

use super::{PERMIT_ROW, TTL, locker_cycle, permit_cycle, run_id, store_cycle, unexpectedly_held};
use crate::cycle::{Cycle, Role, Variant, cycle};
use crate::error::Result;

const ACQUIRE: &str = include_str!("../../../backend-postgres/src/sql/acquire.sql");
const RELEASE: &str = include_str!("../../../backend-postgres/src/sql/release.sql");
const DURABLE: &str = include_str!("../../../backend-postgres/src/sql/durable.sql");
const RTT_TABLE: &str = "CREATE TABLE IF NOT EXISTS fencelock_bench_rtt (id int PRIMARY KEY, n bigint NOT NULL); \
     INSERT INTO fencelock_bench_rtt VALUES (1, 0) ON CONFLICT DO NOTHING";

/// The backend's statement text for `table`, rendered as the backend renders it (durable
/// grants on, its default).
fn render(template: &str, table: &str) -> SqlStr {
    let sql = template
        .replace("{table}", table)
        .replace("{durable}", DURABLE.trim());
    AssertSqlSafe(Arc::<str>::from(sql.trim())).into_sql_str()
}

/// A text value as the store writes it into a statement: hex digits only.
fn text(value: &str) -> String {
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    format!("convert_from(decode('{hex}', 'hex'), 'UTF8')")
}

/// `template` with `$1…` replaced by `values` (already SQL), as the store sends it by default.
fn inline(template: &SqlStr, values: &[String]) -> String {
    values
        .iter()
        .enumerate()
        .rev()
        .fold(template.as_str().to_owned(), |sql, (i, value)| {
            sql.replace(&format!("${}", i + 1), value)
        })
}

/// The store and its pool.
#[derive(Clone, Debug)]
pub struct PgBench {
    /// Our store.
    pub store: PgLeaseStore,
    /// Our store with sqlx's named prepared statements (not made through a pooler, where they
    /// collide).
    prepared: Option<PgLeaseStore>,
    /// A locker over it.
    pub locker: Locker,
    /// The store's pool, for the raw floor.
    pub pool: PgPool,
    acquire: SqlStr,
    release: SqlStr,
    channel: String,
    prefix: String,
}

impl PgBench {
    /// Connects to `url` with a pool of at most `connections`, with a second store on named
    /// prepared statements.
    pub async fn connect(url: &str, connections: u32) -> Result<Self> {
        let mut bench = Self::connect_inline(url, connections).await?;
        bench.prepared = Some(
            PgLeaseStore::builder()
                .with_max_connections(connections)
                .with_prepared_statements(true)
                .with_url(url)
                .connect()
                .await?,
        );
        Ok(bench)
    }

    /// Connects to `url` with a pool of at most `connections`, inline statements only (what
    /// works through a transaction-mode pooler); LISTEN goes to `listen_url` when given.
    pub async fn connect_inline(url: &str, connections: u32) -> Result<Self> {
        Self::open(
            PgLeaseStore::builder()
                .with_url(url)
                .with_max_connections(connections),
        )
        .await
    }

    /// As [`connect_inline`](Self::connect_inline), its LISTEN connection straight to `direct`
    /// (as the backend's README says to deploy behind a pooler).
    pub async fn connect_pooled(url: &str, direct: &str, connections: u32) -> Result<Self> {
        Self::open(
            PgLeaseStore::builder()
                .with_url(url)
                .with_listen_url(direct)
                .with_max_connections(connections),
        )
        .await
    }

    async fn open(builder: fencelock_postgres::PgBuilder) -> Result<Self> {
        let store = builder.connect().await?;
        let pool = store.pool().clone();
        sqlx::raw_sql(RTT_TABLE).execute(&pool).await?;
        let table = store.table().quoted();
        Ok(Self {
            prepared: None,
            locker: Locker::new(store.clone()),
            acquire: render(ACQUIRE, &table),
            release: render(RELEASE, &table),
            channel: store.channel().as_str().to_owned(),
            pool,
            store,
            prefix: format!("bench/{}", run_id()),
        })
    }

    /// Ours through the store on named prepared statements, when this bench has that store.
    pub fn ours_prepared(&self, tag: &str) -> Option<Cycle> {
        self.prepared
            .as_ref()
            .map(|store| store_cycle(store, format!("{}/{tag}", self.prefix)))
    }

    /// The server's version.
    pub async fn version(&self) -> Result<String> {
        let v: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&self.pool)
            .await?;
        Ok(format!("PostgreSQL {v}"))
    }

    /// Ours through `Locker`, on a fresh name per call.
    pub fn ours(&self, tag: &str) -> Cycle {
        locker_cycle(&self.locker, format!("{}/{tag}", self.prefix))
    }

    /// Ours through the store alone.
    pub fn ours_store(&self, tag: &str) -> Cycle {
        store_cycle(&self.store, format!("{}/{tag}", self.prefix))
    }

    /// The raw floor: the backend's acquire and release statements, by hand, sent as the store
    /// sends them by default (values inline, one simple-protocol message each).
    pub fn raw(&self, tag: &str) -> Cycle {
        let (pool, acquire, release) = (
            self.pool.clone(),
            self.acquire.clone(),
            self.release.clone(),
        );
        let channel = text(&self.channel);
        let prefix = format!("{}/raw/{tag}", self.prefix);
        let ttl_us = format!("CAST({} AS bigint)", TTL.as_micros());
        cycle(move |i| {
            let (pool, acquire, release) = (pool.clone(), acquire.clone(), release.clone());
            let (channel, ttl_us) = (channel.clone(), ttl_us.clone());
            let name = text(&format!("{prefix}/{i}"));
            async move {
                let holder = text(&HolderId::random().to_string());
                // No owner label, as the store's own `try_acquire` sends it.
                let sql = inline(&acquire, &[name.clone(), holder.clone(), ttl_us, text("")]);
                let row = sqlx::raw_sql(AssertSqlSafe(sql))
                    .fetch_optional(&pool)
                    .await?
                    .ok_or_else(|| unexpectedly_held("acquire.sql"))?;
                let token: i64 = row.try_get(0)?;
                let token = format!("CAST({token} AS bigint)");
                let sql = inline(&release, &[name, holder, token, channel]);
                let row = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_one(&pool).await?;
                let released: i64 = row.try_get(0)?;
                if released != 1 {
                    return Err(unexpectedly_held("release.sql freed nothing"));
                }
                Ok(())
            }
        })
    }

    /// The same statements by hand as sqlx's named prepared statements (parsed once per
    /// connection): what a direct connection saves by `with_prepared_statements(true)`.
    pub fn raw_prepared(&self, tag: &str) -> Cycle {
        let (pool, acquire, release) = (
            self.pool.clone(),
            self.acquire.clone(),
            self.release.clone(),
        );
        let channel = self.channel.clone();
        let prefix = format!("{}/prepared/{tag}", self.prefix);
        let ttl_us = TTL.as_micros() as i64;
        cycle(move |i| {
            let (pool, acquire, release) = (pool.clone(), acquire.clone(), release.clone());
            let channel = channel.clone();
            let name = format!("{prefix}/{i}");
            async move {
                let holder = HolderId::random().to_string();
                let token: Option<i64> = sqlx::query_scalar(acquire)
                    .bind(&name)
                    .bind(&holder)
                    .bind(ttl_us)
                    .bind("")
                    .fetch_optional(&pool)
                    .await?;
                let token = token.ok_or_else(|| unexpectedly_held("acquire.sql"))?;
                let released: i64 = sqlx::query_scalar(release)
                    .bind(&name)
                    .bind(&holder)
                    .bind(token)
                    .bind(&channel)
                    .fetch_one(&pool)
                    .await?;
                if released != 1 {
                    return Err(unexpectedly_held("release.sql freed nothing"));
                }
                Ok(())
            }
        })
    }

    /// `pg_try_advisory_lock` + `pg_advisory_unlock` (session locks, so only meaningful on a
    /// pool of one connection).
    pub fn advisory(&self) -> Cycle {
        let pool = self.pool.clone();
        cycle(move |i| {
            let pool = pool.clone();
            async move {
                let key = i as i64;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&pool)
                    .await?;
                if !got {
                    return Err(unexpectedly_held("pg_try_advisory_lock"));
                }
                let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .fetch_one(&pool)
                    .await?;
                Ok(())
            }
        })
    }

    /// One round trip: `SELECT 1`.
    pub fn select1(&self) -> Cycle {
        let pool = self.pool.clone();
        cycle(move |_| {
            let pool = pool.clone();
            async move {
                let _: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
                Ok(())
            }
        })
    }

    /// One write round trip: a one-row `UPDATE` (its own transaction).
    pub fn write(&self) -> Cycle {
        let pool = self.pool.clone();
        cycle(move |_| {
            let pool = pool.clone();
            async move {
                sqlx::query("UPDATE fencelock_bench_rtt SET n = n + 1 WHERE id = 1")
                    .execute(&pool)
                    .await?;
                Ok(())
            }
        })
    }

    /// The uncontended variants, headline first.
    pub fn uncontended(&self, reference_every: usize) -> Vec<Variant> {
        let mut variants = vec![
            Variant::new(
                "fencelock `Locker` acquire + release",
                Role::Ours,
                self.ours("u"),
            ),
            Variant::new(
                "fencelock store try_acquire + release",
                Role::OursStore,
                self.ours_store("s"),
            ),
            Variant::new(
                "raw: the same INSERT … ON CONFLICT + UPDATE by hand, values inline",
                Role::Raw,
                self.raw("u"),
            ),
            Variant::new(
                "raw: the same statements as named prepared statements",
                Role::Reference,
                self.raw_prepared("u"),
            ),
            Variant::new(
                PERMIT_ROW,
                Role::Reference,
                permit_cycle(&self.locker, format!("{}/permit", self.prefix)),
            ),
        ];
        if let Some(prepared) = self.ours_prepared("named") {
            variants.push(Variant::new(
                "fencelock store, `with_prepared_statements(true)`",
                Role::Reference,
                prepared,
            ));
        }
        variants.extend([
            Variant::new(
                "`pg_try_advisory_lock` + `pg_advisory_unlock`",
                Role::Reference,
                self.advisory(),
            ),
            Variant::new(
                "one round trip (`SELECT 1`)",
                Role::Reference,
                self.select1(),
            )
            .every(reference_every),
            Variant::new(
                "one write (one-row `UPDATE`)",
                Role::Reference,
                self.write(),
            )
            .every(reference_every),
        ]);
        variants
    }

    /// Throughput cycles, ours and raw: called with the task's index, so each task keeps one name.
    pub fn throughput(&self) -> (Cycle, Cycle) {
        (self.ours("tp"), self.raw("tp"))
    }

    /// The name the hand-off waiters share.
    pub fn handoff_name(&self) -> String {
        format!("{}/handoff", self.prefix)
    }
}
