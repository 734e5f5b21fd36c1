//! `check` for `redis://`: version, persistence, eviction policy, replication role.

use std::collections::HashMap;
use std::time::Duration;

use fencelock_redis::redis;

use super::{Finding, Report};
use crate::exit::{Failure, status};

pub(crate) async fn check(url: &str, timeout: Duration) -> Result<Report, Failure> {
    let failed = |e: redis::RedisError| {
        Failure::new(
            status::UNAVAILABLE,
            format!("redis check failed: {e}; check that the server is up and the URL is right"),
        )
    };
    let client =
        redis::Client::open(url).map_err(|e| Failure::usage(format!("invalid store url: {e}")))?;
    let work = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("everything")
            .query_async(&mut conn)
            .await?;
        // CONFIG may be renamed or disabled on managed services; INFO then is all we have.
        let policy: Option<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async::<HashMap<String, String>>(&mut conn)
            .await
            .ok()
            .and_then(|mut m| m.remove("maxmemory-policy"));
        Ok::<_, redis::RedisError>((parse_info(&info), policy))
    };
    let (info, policy) = tokio::time::timeout(timeout.saturating_mul(2), work)
        .await
        .map_err(|_| {
            Failure::new(
                status::UNAVAILABLE,
                "redis did not answer the check in time; check that the server is up",
            )
        })?
        .map_err(failed)?;
    Ok(report(&info, policy.as_deref()))
}

fn parse_info(info: &str) -> HashMap<String, String> {
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn report(info: &HashMap<String, String>, policy: Option<&str>) -> Report {
    let get = |k: &str| info.get(k).map(String::as_str).unwrap_or("?");
    let mut findings = Vec::new();
    let aof = get("aof_enabled") == "1";
    findings.push(if aof {
        Finding::ok(
            "persistence: appendonly yes",
            "held locks survive a restart (up to the last fsync)",
        )
    } else {
        Finding::warn(
            "persistence: no append-only file",
            "a restart forgets held locks, so a second holder can start before the first notices at its next renewal. Tokens still rise (they come from the server clock), so fenced writes stay safe. Set appendonly yes (appendfsync everysec or always)",
        )
    });
    findings.push(match policy {
        Some("noeviction") => Finding::ok(
            "maxmemory-policy = noeviction",
            "lock keys are never evicted",
        ),
        Some(other) => Finding::warn(
            format!("maxmemory-policy = {other}"),
            "under memory pressure Redis may evict lock keys (they have TTLs, so volatile-* policies pick them too), freeing locks that are still held. Use noeviction for the lock database",
        ),
        None => Finding::warn(
            "maxmemory-policy unknown",
            "CONFIG GET is not allowed here; make sure the policy is noeviction",
        ),
    });
    let role = get("role");
    findings.push(match role {
        "master" => {
            let replicas = get("connected_slaves");
            Finding::ok(
                format!("role = primary, {replicas} replica(s)"),
                "replication is asynchronous: after a failover to a replica that lagged, a held lock can be lost; tokens still rise as long as server clocks move forward",
            )
        }
        "slave" | "replica" => Finding::warn(
            "role = replica",
            "this is a read-only replica; point --store at the primary",
        ),
        other => Finding::warn(format!("role = {other}"), "unexpected replication role"),
    });
    Report {
        server: format!("Redis {}", get("redis_version")),
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_table() {
        let info = parse_info(
            "# Server\r\nredis_version:7.0.15\r\naof_enabled:1\r\nrole:master\r\nconnected_slaves:0\r\n",
        );
        let r = report(&info, Some("noeviction"));
        assert_eq!(r.server, "Redis 7.0.15");
        assert!(
            r.findings
                .iter()
                .all(|f| f.level == super::super::Level::Ok)
        );
        let info = parse_info("redis_version:7\r\naof_enabled:0\r\nrole:slave\r\n");
        let r = report(&info, Some("allkeys-lru"));
        assert_eq!(
            r.findings
                .iter()
                .filter(|f| f.level == super::super::Level::Warn)
                .count(),
            3
        );
    }
}
