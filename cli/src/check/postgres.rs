//! `check` for `postgres://`: version, durability settings, primary or standby.

use std::time::Duration;

use fencelock_postgres::sqlx::{self, Row, postgres::PgPoolOptions};

use super::{Finding, Report};
use crate::exit::{Failure, status};

pub(crate) async fn check(url: &str, timeout: Duration) -> Result<Report, Failure> {
    let unavailable = |e: sqlx::Error| {
        let kind = match &e {
            sqlx::Error::Configuration(_) => status::USAGE,
            _ => status::UNAVAILABLE,
        };
        Failure::new(kind, format!("postgres check failed: {e}"))
    };
    let work = async {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .connect(url)
            .await?;
        let row = sqlx::query(
            "SELECT version(), current_setting('server_version'), \
             current_setting('synchronous_commit'), current_setting('fsync'), \
             current_setting('synchronous_standby_names'), pg_is_in_recovery()",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok::<_, sqlx::Error>(Settings {
            version: row.try_get(1)?,
            synchronous_commit: row.try_get(2)?,
            fsync: row.try_get(3)?,
            sync_standbys: row.try_get(4)?,
            in_recovery: row.try_get(5)?,
        })
    };
    let settings = tokio::time::timeout(timeout.saturating_mul(2), work)
        .await
        .map_err(|_| {
            Failure::new(
                status::UNAVAILABLE,
                "postgres did not answer the check in time; check that the server is up",
            )
        })?
        .map_err(unavailable)?;
    Ok(settings.report())
}

struct Settings {
    version: String,
    synchronous_commit: String,
    fsync: String,
    sync_standbys: String,
    in_recovery: bool,
}

impl Settings {
    fn report(&self) -> Report {
        let mut findings = Vec::new();
        findings.push(if self.in_recovery {
            Finding::warn(
                "role",
                "this server is a read-only standby; locks cannot be taken here. Point --store at the primary",
            )
        } else {
            Finding::ok("role", "primary (accepts writes)")
        });
        findings.push(if self.fsync == "on" {
            Finding::ok("fsync = on", "committed grants survive a server crash")
        } else {
            Finding::warn(
                format!("fsync = {}", self.fsync),
                "a crash of the server or machine can lose recent grants, and a token could be handed out twice. Turn fsync on outside tests",
            )
        });
        let sc = self.synchronous_commit.as_str();
        findings.push(match sc {
            "on" | "remote_apply" | "remote_write" => Finding::ok(
                format!("synchronous_commit = {sc}"),
                "grants are durable before they are reported",
            ),
            "off" => Finding::ok(
                "synchronous_commit = off",
                "fencelock turns it on for its own grants and renewals (durable grants, the default); keep that option on",
            ),
            other => Finding::warn(
                format!("synchronous_commit = {other}"),
                "grants are flushed locally but not waited for on standbys: a failover can lose the latest grants and re-issue their tokens. Use on or remote_apply with synchronous standbys",
            ),
        });
        findings.push(Finding::ok(
            "replication",
            if self.sync_standbys.is_empty() {
                "no synchronous standbys: fine for one server; after a failover to an asynchronous standby recent grants can be lost, so fail over only to standbys that were in sync"
            } else {
                "synchronous standbys are configured"
            },
        ));
        Report {
            server: format!("PostgreSQL {}", self.version),
            findings,
        }
    }
}
