//! A streaming standby of a [`PostgresServer`], and its promotion: the failover PostgreSQL
//! deployments run.
//!
//! The standby is a `pg_basebackup -R` copy of the primary (so it streams WAL from it and
//! replays it, asynchronously: the primary's commits never wait for it), started like any other
//! harness server. A failover is the caller's to stage: kill the primary
//! ([`ServerProcess::kill`](super::ServerProcess::kill), a SIGKILL), then
//! [`PostgresServer::promote`] the standby. What the primary committed but had not yet streamed
//! is lost, as in production with asynchronous replication; [`PostgresServer::wait_replayed`]
//! waits until nothing is outstanding. To make sure the standby misses the last commits,
//! stream through a [`super::TcpProxy`] ([`PostgresServer::start_standby_via`]), stall it, and
//! cut it after the kill: the held WAL is discarded. (Pausing the standby is not enough: the
//! kernel keeps receiving WAL into its socket buffer, and it is replayed on resume.)

use std::process::Command;
use std::time::{Duration, Instant};

use super::error::{HarnessError, Result};
use super::postgres::{PG_USER, binaries, run};
use super::{PostgresServer, PostgresServerOptions, binaries as find, blocking, retry_addr_in_use};

/// How long the standby may take to start streaming, or to replay what the primary wrote.
const SYNC_TIMEOUT: Duration = Duration::from_secs(90);

impl PostgresServer {
    /// Start a streaming standby of `primary` (a `pg_basebackup -R` copy, on a free port) and
    /// wait until it streams WAL from it.
    ///
    /// Replication is asynchronous (the primary has no `synchronous_standby_names`). The
    /// primary must be a harness server (its `pg_hba.conf` trusts replication from loopback).
    pub async fn start_standby(primary: &PostgresServer) -> Result<Self> {
        Self::start_standby_via(primary.port()).await
    }

    /// [`Self::start_standby`] streaming from whatever listens on 127.0.0.1:`port`: the
    /// primary, or a [`super::TcpProxy`] in front of it (the standby keeps streaming through it,
    /// so the proxy can cut replication off).
    pub async fn start_standby_via(port: u16) -> Result<Self> {
        blocking(move || Self::start_standby_blocking(port)).await
    }

    /// [`Self::start_standby_via`] the primary on `primary_port`, blocking the calling thread.
    pub fn start_standby_blocking(primary_port: u16) -> Result<Self> {
        let bins = binaries()?;
        let basebackup = find::find_sibling("pg_basebackup", &bins.postgres)?;
        let setpriv = find::find("setpriv")?;
        let standby = retry_addr_in_use(|| {
            Self::launch(&bins, &PostgresServerOptions::default(), |data| {
                run(Command::new(&setpriv)
                    .arg(format!("--reuid={PG_USER}"))
                    .arg(format!("--regid={PG_USER}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(&basebackup)
                    .args(["-h", "127.0.0.1", "-U", PG_USER, "-p"])
                    .arg(primary_port.to_string())
                    .args(["-X", "stream", "-R", "--no-sync", "-c", "fast", "-D"])
                    .arg(data))
                .map(drop)
                .map_err(|e| {
                    e.context(format!(
                        "pg_basebackup of the primary on port {primary_port}"
                    ))
                })
            })
        })?;
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            let status = standby.psql_blocking("SELECT status FROM pg_stat_wal_receiver")?;
            if status.trim() == "streaming" {
                return Ok(standby);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::new(format!(
                    "standby of port {primary_port} not streaming after {SYNC_TIMEOUT:?} (wal receiver: {status:?}); log:\n{}",
                    standby.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until this standby has replayed everything `primary` has written so far.
    pub async fn wait_replayed(&self, primary: &PostgresServer) -> Result<()> {
        let target = primary
            .psql("SELECT pg_current_wal_lsn()")
            .await?
            .trim()
            .to_owned();
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            let behind = self
                .psql(&format!(
                    "SELECT pg_last_wal_replay_lsn() < '{target}'::pg_lsn"
                ))
                .await?;
            if behind.trim() == "f" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::new(format!(
                    "standby on port {} has not replayed up to {target} after {SYNC_TIMEOUT:?}",
                    self.port()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Promote this standby to a primary (`SELECT pg_promote()`, which waits up to a minute for
    /// the promotion to finish) and wait until it accepts writes.
    pub async fn promote(&self) -> Result<()> {
        let promoted = self.psql("SELECT pg_promote(true, 60)").await?;
        if promoted.trim() != "t" {
            return Err(HarnessError::new(format!(
                "pg_promote on port {} returned {promoted:?}; log:\n{}",
                self.port(),
                self.log_tail()
            )));
        }
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            if self.psql("SELECT pg_is_in_recovery()").await?.trim() == "f" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::new(format!(
                    "server on port {} still in recovery {SYNC_TIMEOUT:?} after pg_promote",
                    self.port()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
