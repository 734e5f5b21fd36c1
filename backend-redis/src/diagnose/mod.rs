//! What a Redis server says about itself (`INFO`, `CONFIG GET`), and what that means for locks.
//!
//! Asking ([`ask`]) runs over the store's own connection; judging ([`findings`]) is a pure
//! mapping from the answers, shared by [`crate::RedisLeaseStore`] on one server, every primary
//! of a cluster ([`cluster`]), the primary behind Sentinel ([`sentinel`]) and every server of a
//! [`crate::RedlockLeaseStore`]. Only chosen values are reported, never a raw `INFO` field
//! (it names files and paths) and never a URL.

pub(crate) mod cluster;
pub(crate) mod sentinel;

use std::collections::HashMap;

use fencelock_core::{Diagnosis, Error, Finding, Operation};
use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError};

use crate::classify::{STORE, classify};

/// The oldest Redis that runs fencelock's scripts: they read `TIME` and then write, which needs
/// effects replication (`redis.replicate_commands`, Redis 3.2; always on from Redis 5).
const OLDEST: (u32, u32) = (3, 2);

/// What one server answered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `INFO` as `field → value`; `None` when the server declined `INFO` (an ACL).
    pub(crate) info: Option<HashMap<String, String>>,
    /// `CONFIG GET maxmemory-policy`; `None` when `CONFIG` is declined (managed services).
    pub(crate) maxmemory_policy: Option<String>,
    /// `CONFIG GET appendfsync`.
    pub(crate) appendfsync: Option<String>,
    /// `CONFIG GET min-replicas-to-write`.
    pub(crate) min_replicas_to_write: Option<u64>,
    /// `CONFIG GET min-replicas-max-lag` (seconds).
    pub(crate) min_replicas_max_lag: Option<u64>,
}

impl Settings {
    fn get(&self, field: &str) -> Option<&str> {
        self.info.as_ref()?.get(field).map(String::as_str)
    }

    /// The server as it names itself: `Redis 7.0.15` (or `Valkey 8.0.1`, which also reports a
    /// compatible `redis_version`).
    pub(crate) fn server(&self) -> String {
        match (self.get("valkey_version"), self.get("redis_version")) {
            (Some(v), _) => format!("Valkey {v}"),
            (None, Some(v)) => format!("Redis {v}"),
            (None, None) => "Redis (version unknown)".to_owned(),
        }
    }
}

/// Asks the server over `conn`, within the connection's own response timeout.
///
/// # Errors
/// The store's classification of a request that failed ([`Operation::Diagnose`]). A server
/// that declines `INFO` or `CONFIG` (ACLs, renamed commands) is not an error: those settings
/// are reported as unknown.
pub(crate) async fn ask<C: ConnectionLike + Send>(conn: &mut C) -> Result<Settings, Error> {
    let info: Option<redis::Value> = declined_is_none(redis::cmd("INFO").query_async(conn).await)?;
    let info = info.and_then(first_text);
    let maxmemory_policy = config_get(conn, "maxmemory-policy").await?;
    let appendfsync = config_get(conn, "appendfsync").await?;
    let min_replicas_to_write = config_get(conn, "min-replicas-to-write")
        .await?
        .and_then(|v| v.parse().ok());
    let min_replicas_max_lag = config_get(conn, "min-replicas-max-lag")
        .await?
        .and_then(|v| v.parse().ok());
    Ok(Settings {
        info: info.as_deref().map(parse_info),
        maxmemory_policy,
        appendfsync,
        min_replicas_to_write,
        min_replicas_max_lag,
    })
}

/// The text of an `INFO` reply: one server's string, or (a cluster connection asks every
/// primary and answers with a map of node to text) the first primary's.
fn first_text(reply: redis::Value) -> Option<String> {
    match reply {
        redis::Value::Map(nodes) => nodes.into_iter().find_map(|(_, text)| first_text(text)),
        other => redis::from_redis_value(other).ok(),
    }
}

/// One `CONFIG GET` (one parameter per call: Redis before 7 takes only one).
pub(crate) async fn config_get<C: ConnectionLike + Send>(
    conn: &mut C,
    name: &str,
) -> Result<Option<String>, Error> {
    let reply: Option<HashMap<String, String>> = declined_is_none(
        redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(conn)
            .await,
    )?;
    Ok(reply.and_then(|mut pairs| pairs.remove(name)))
}

/// A reply, `None` when the server answered with an error (the command is not allowed or
/// unknown here), an error when the request itself failed.
pub(crate) fn declined_is_none<T>(reply: Result<T, RedisError>) -> Result<Option<T>, Error> {
    match reply {
        Ok(value) => Ok(Some(value)),
        Err(e) if matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) => Ok(None),
        Err(e) => Err(classify(Operation::Diagnose, e)),
    }
}

/// `INFO` text (`# Section` headers, `field:value` lines) as a map.
pub(crate) fn parse_info(info: &str) -> HashMap<String, String> {
    info.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The diagnosis of a single server.
pub(crate) fn diagnosis(settings: &Settings) -> Diagnosis {
    findings(settings)
        .into_iter()
        .fold(Diagnosis::new(STORE, settings.server()), Diagnosis::with)
}

/// What the answers mean for locks, in a fixed order: version, persistence, eviction,
/// replication.
pub(crate) fn findings(settings: &Settings) -> Vec<Finding> {
    let mut out = Vec::new();
    if settings.info.is_some() {
        out.push(version(settings.get("redis_version")));
        out.extend(persistence(
            settings.get("aof_enabled"),
            settings.appendfsync.as_deref(),
        ));
    } else {
        out.push(Finding::warn(
            "INFO",
            "not allowed",
            "this user may not run INFO, so the version, persistence and replication role are unknown: check them by hand, or allow INFO for this user",
        ));
    }
    out.push(eviction(settings.maxmemory_policy.as_deref()));
    if settings.info.is_some() {
        out.extend(replication(settings));
    }
    out
}

fn version(reported: Option<&str>) -> Finding {
    let parsed = reported.and_then(|v| {
        let mut parts = v.split('.').map(str::parse::<u32>);
        Some((parts.next()?.ok()?, parts.next()?.ok()?))
    });
    match (reported, parsed) {
        (Some(v), Some(found)) if found < OLDEST => Finding::fail(
            "version",
            v,
            "fencelock's scripts read the server clock and then write, which Redis refuses before 3.2: every grant fails. Upgrade Redis",
        ),
        (Some(v), Some(_)) => Finding::ok("version", v, "runs fencelock's scripts (3.2 or later)"),
        (v, _) => Finding::warn(
            "version",
            v.unwrap_or("unknown"),
            "the server did not report a version fencelock understands; fencelock's scripts need Redis 3.2 or later",
        ),
    }
}

fn persistence(aof_enabled: Option<&str>, appendfsync: Option<&str>) -> Vec<Finding> {
    if aof_enabled != Some("1") {
        return vec![Finding::warn(
            "appendonly",
            "no",
            "a restart forgets held locks (RDB snapshots alone keep only what existed at the last snapshot), so a second holder can start before the first notices at its next renewal. Tokens still rise (they come from the server clock), so fenced writes stay safe. Set appendonly yes (appendfsync everysec or always)",
        )];
    }
    let mut out = vec![Finding::ok(
        "appendonly",
        "yes",
        "held locks survive a restart (up to the last fsync)",
    )];
    out.extend(appendfsync.map(|policy| match policy {
        "always" => Finding::ok(
            "appendfsync",
            policy,
            "every grant is on disk before it is acknowledged",
        ),
        "everysec" => Finding::ok(
            "appendfsync",
            policy,
            "a crash of the machine loses at most about the last second of grants",
        ),
        _ => Finding::warn(
            "appendfsync",
            policy,
            "the kernel decides when the file reaches the disk (often 30 s later): a crash of the machine can forget the grants of that time. Use everysec or always",
        ),
    }));
    out
}

fn eviction(policy: Option<&str>) -> Finding {
    match policy {
        Some(p @ "noeviction") => Finding::ok("maxmemory-policy", p, "lock keys are never evicted"),
        Some(other) => Finding::warn(
            "maxmemory-policy",
            other,
            "under memory pressure Redis may evict lock keys (they have TTLs, so volatile-* policies pick them too), freeing locks that are still held. Use noeviction for the lock database",
        ),
        None => Finding::warn(
            "maxmemory-policy",
            "unknown",
            "CONFIG GET is not allowed here; make sure the policy is noeviction",
        ),
    }
}

fn replication(settings: &Settings) -> Vec<Finding> {
    let role = settings.get("role").unwrap_or("unknown");
    let replicas: u64 = settings
        .get("connected_slaves")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let role = match role {
        "master" if replicas == 0 => Finding::ok(
            "role",
            "primary, no replicas",
            "while this server is down no lock can be taken or renewed (with appendonly, held locks survive the restart)",
        ),
        "master" => Finding::ok(
            "role",
            format!("primary, {replicas} replica(s)"),
            "replication is asynchronous: after a failover to a replica that lagged, a held lock can be lost; tokens still rise as long as server clocks move forward",
        ),
        "slave" | "replica" => Finding::fail(
            "role",
            "replica",
            "this is a read-only replica: every grant fails (READONLY). Point the store at the primary",
        ),
        other => Finding::warn("role", other, "an unexpected replication role"),
    };
    let mut out = vec![role];
    if settings.get("role") == Some("master") {
        out.extend(min_replicas(settings, replicas));
    }
    out
}

/// `min-replicas-to-write` (with `min-replicas-max-lag`): it bounds what a promoted replica can
/// have missed, and it refuses every write while too few replicas are in sync.
fn min_replicas(settings: &Settings, replicas: u64) -> Option<Finding> {
    match settings.min_replicas_to_write {
        Some(min) if min > 0 => {
            // Reported by INFO only while the option is set.
            let good: u64 = settings
                .get("min_slaves_good_slaves")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let lag = settings
                .min_replicas_max_lag
                .map_or_else(String::new, |lag| format!(", max lag {lag} s"));
            let value = format!("{min} ({good} in sync{lag})");
            Some(if good < min {
                Finding::fail(
                    "min-replicas-to-write",
                    value,
                    "Redis refuses every write while fewer replicas are in sync: grants, renewals and releases all fail (NOREPLICAS). Bring the replicas back or lower min-replicas-to-write",
                )
            } else {
                Finding::ok(
                    "min-replicas-to-write",
                    value,
                    "writes are refused while fewer replicas acknowledged replication within min-replicas-max-lag, which bounds how many grants a promoted replica can have missed (replication stays asynchronous: the last grants before a failover can still be lost; tokens still rise and fenced writes of the old holder are still rejected)",
                )
            })
        }
        Some(_) if replicas > 0 => Some(Finding::ok("min-replicas-to-write", "0", FAILOVER_LOSS)),
        _ => None,
    }
}

/// What a failover to a replica can cost, with no write quorum to narrow it.
const FAILOVER_LOSS: &str = "writes are acknowledged before any replica has them: a grant acknowledged by a primary that dies before replicating it is lost in a failover, so a second holder can be granted while the first still works. Its token is higher (tokens are floored at the server clock), so fenced writes of the old holder are rejected. min-replicas-to-write 1 with min-replicas-max-lag 10 narrows the window, at the price of refusing writes while no replica keeps up";

#[cfg(test)]
mod tests {
    use fencelock_core::Verdict::{self, Fail, Ok, Warn};

    use super::*;

    fn settings(info: &str, policy: Option<&str>, fsync: Option<&str>, min: u64) -> Settings {
        Settings {
            info: Some(parse_info(info)),
            maxmemory_policy: policy.map(str::to_owned),
            appendfsync: fsync.map(str::to_owned),
            min_replicas_to_write: Some(min),
            min_replicas_max_lag: Some(10),
        }
    }

    /// A case: what it shows, the answers, and the expected `setting = value` and verdicts.
    type Case = (&'static str, Settings, Vec<(&'static str, Verdict)>);

    fn verdicts(s: &Settings) -> Vec<(String, Verdict)> {
        findings(s)
            .into_iter()
            .map(|f| (format!("{} = {}", f.setting, f.value), f.verdict))
            .collect()
    }

    const GOOD: &str = "# Server\r\nredis_version:7.0.15\r\n# Persistence\r\naof_enabled:1\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n";

    #[test]
    fn settings_to_findings() {
        let s = |info: &str, policy, fsync, min| settings(info, policy, fsync, min);
        let cases: Vec<Case> = vec![
            (
                "well configured",
                s(GOOD, Some("noeviction"), Some("everysec"), 0),
                vec![
                    ("version = 7.0.15", Ok),
                    ("appendonly = yes", Ok),
                    ("appendfsync = everysec", Ok),
                    ("maxmemory-policy = noeviction", Ok),
                    ("role = primary, no replicas", Ok),
                ],
            ),
            (
                "defaults",
                s(
                    "redis_version:7.0.15\r\naof_enabled:0\r\nrole:master\r\nconnected_slaves:0\r\n",
                    Some("noeviction"),
                    Some("everysec"),
                    0,
                ),
                vec![
                    ("version = 7.0.15", Ok),
                    ("appendonly = no", Warn),
                    ("maxmemory-policy = noeviction", Ok),
                    ("role = primary, no replicas", Ok),
                ],
            ),
            (
                "evicting replica, lazy fsync, ancient",
                s(
                    "redis_version:3.0.7\r\naof_enabled:1\r\nrole:slave\r\n",
                    Some("allkeys-lru"),
                    Some("no"),
                    0,
                ),
                vec![
                    ("version = 3.0.7", Fail),
                    ("appendonly = yes", Ok),
                    ("appendfsync = no", Warn),
                    ("maxmemory-policy = allkeys-lru", Warn),
                    ("role = replica", Fail),
                ],
            ),
            (
                "replicas, writes need one in sync",
                s(
                    "redis_version:6.2.0\r\naof_enabled:1\r\nrole:master\r\nconnected_slaves:2\r\nmin_slaves_good_slaves:2\r\n",
                    Some("noeviction"),
                    Some("always"),
                    1,
                ),
                vec![
                    ("version = 6.2.0", Ok),
                    ("appendonly = yes", Ok),
                    ("appendfsync = always", Ok),
                    ("maxmemory-policy = noeviction", Ok),
                    ("role = primary, 2 replica(s)", Ok),
                    ("min-replicas-to-write = 1 (2 in sync, max lag 10 s)", Ok),
                ],
            ),
            (
                "replicas, none required",
                s(
                    "redis_version:7.2.4\r\naof_enabled:1\r\nrole:master\r\nconnected_slaves:1\r\n",
                    Some("noeviction"),
                    None,
                    0,
                ),
                vec![
                    ("version = 7.2.4", Ok),
                    ("appendonly = yes", Ok),
                    ("maxmemory-policy = noeviction", Ok),
                    ("role = primary, 1 replica(s)", Ok),
                    ("min-replicas-to-write = 0", Ok),
                ],
            ),
            (
                "too few replicas in sync refuses writes",
                s(
                    "redis_version:7.0.0\r\naof_enabled:1\r\nrole:master\r\nconnected_slaves:0\r\nmin_slaves_good_slaves:0\r\n",
                    Some("noeviction"),
                    Some("everysec"),
                    1,
                ),
                vec![
                    ("version = 7.0.0", Ok),
                    ("appendonly = yes", Ok),
                    ("appendfsync = everysec", Ok),
                    ("maxmemory-policy = noeviction", Ok),
                    ("role = primary, no replicas", Ok),
                    ("min-replicas-to-write = 1 (0 in sync, max lag 10 s)", Fail),
                ],
            ),
            (
                "INFO and CONFIG declined",
                Settings::default(),
                vec![
                    ("INFO = not allowed", Warn),
                    ("maxmemory-policy = unknown", Warn),
                ],
            ),
            (
                "odd version text",
                s(
                    "redis_version:banana\r\naof_enabled:1\r\nrole:sentinel\r\n",
                    Some("noeviction"),
                    None,
                    0,
                ),
                vec![
                    ("version = banana", Warn),
                    ("appendonly = yes", Ok),
                    ("maxmemory-policy = noeviction", Ok),
                    ("role = sentinel", Warn),
                ],
            ),
        ];
        for (what, settings, expected) in cases {
            let expected: Vec<(String, Verdict)> = expected
                .into_iter()
                .map(|(f, v)| (f.to_owned(), v))
                .collect();
            assert_eq!(verdicts(&settings), expected, "{what}");
            for finding in findings(&settings) {
                assert!(!finding.advice.is_empty(), "{what}: {finding:?}");
            }
        }
    }

    #[test]
    fn names_the_server() {
        let s = settings(GOOD, None, None, 0);
        assert_eq!(diagnosis(&s).server, "Redis 7.0.15");
        assert_eq!(diagnosis(&s).backend, "redis");
        let valkey = settings(
            "redis_version:7.2.4\r\nvalkey_version:8.0.1\r\n",
            None,
            None,
            0,
        );
        assert_eq!(valkey.server(), "Valkey 8.0.1");
        assert_eq!(Settings::default().server(), "Redis (version unknown)");
    }

    #[test]
    fn info_parsing_skips_headers_and_blank_lines() {
        let info =
            parse_info("# Server\r\nredis_version:7.0.15\r\n\r\nexecutable:/usr/bin/x:y\r\n");
        assert_eq!(
            info.get("redis_version").map(String::as_str),
            Some("7.0.15")
        );
        assert_eq!(
            info.get("executable").map(String::as_str),
            Some("/usr/bin/x:y")
        );
        assert_eq!(info.len(), 2);
    }
}
