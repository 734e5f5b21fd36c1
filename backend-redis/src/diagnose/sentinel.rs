//! `diagnose()` behind Sentinel: the primary diagnosed as a single server would be (over the
//! store's own connection), then what the sentinels say: how many answer, the quorum, whether
//! they agree on the primary and see it up, their failure detection and failover timeouts, and
//! the replicas they could promote.

use std::collections::HashMap;
use std::time::Duration;

use fencelock_core::{Diagnosis, Error, Finding};
use redis::aio::ConnectionLike;
use redis::{AsyncConnectionConfig, RedisError};

use super::{Settings, ask};
use crate::classify::STORE;
use crate::config;

/// Where the sentinels are and how long each may take, for the diagnosis.
#[derive(Debug, Clone)]
pub(crate) struct Sentinels {
    /// `redis://host:port` of each sentinel named in the URL (never with credentials).
    urls: Vec<String>,
    /// The name they monitor the primary under.
    name: String,
    connect_timeout: Duration,
    op_timeout: Duration,
}

impl Sentinels {
    pub(crate) fn new(urls: Vec<String>, name: String, settings: &config::Settings) -> Self {
        Self {
            urls,
            name,
            connect_timeout: settings.connect_timeout,
            op_timeout: settings.op_timeout,
        }
    }
}

/// What one sentinel said about the primary (`SENTINEL MASTER`) and its replicas
/// (`SENTINEL REPLICAS`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SentinelAnswer {
    pub(crate) primary: HashMap<String, String>,
    pub(crate) replicas: Vec<HashMap<String, String>>,
}

impl SentinelAnswer {
    fn get(&self, field: &str) -> Option<&str> {
        self.primary.get(field).map(String::as_str)
    }

    fn number(&self, field: &str) -> Option<u64> {
        self.get(field)?.parse().ok()
    }
}

/// Asks the primary over `primary` (the store's connection) and every sentinel at once.
///
/// # Errors
/// When neither the primary nor any sentinel answers: the primary's error. Either one alone
/// not answering is a finding.
pub(crate) async fn diagnose<C: ConnectionLike + Send>(
    primary: &mut C,
    sentinels: &Sentinels,
) -> Result<Diagnosis, Error> {
    let asks = sentinels
        .urls
        .iter()
        .map(|url| ask_sentinel(url, sentinels));
    let (settings, answers) = futures::join!(ask_primary(primary), futures::future::join_all(asks));
    match settings {
        Err(error) if answers.iter().all(Result::is_err) => Err(error),
        settings => Ok(diagnosis(settings.map_err(|e| e.to_string()), &answers)),
    }
}

/// The primary's settings, asked once more after a failure: the connection drops a primary it
/// lost and finds the current one through the sentinels on the next request.
async fn ask_primary<C: ConnectionLike + Send>(conn: &mut C) -> Result<Settings, Error> {
    match ask(conn).await {
        Ok(settings) => Ok(settings),
        Err(_) => ask(conn).await,
    }
}

/// One sentinel's answer, or why there is none (naming the sentinel, never a password: a
/// Sentinel URL carries none).
async fn ask_sentinel(url: &str, sentinels: &Sentinels) -> Result<SentinelAnswer, String> {
    let who = url.strip_prefix("redis://").unwrap_or(url);
    let work = async {
        let client = redis::Client::open(url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(sentinels.connect_timeout))
            .set_response_timeout(Some(sentinels.op_timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let primary: HashMap<String, String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(&sentinels.name)
            .query_async(&mut conn)
            .await?;
        let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(&sentinels.name)
            .query_async(&mut conn)
            .await?;
        Ok::<_, RedisError>(SentinelAnswer { primary, replicas })
    };
    let limit = sentinels.connect_timeout + sentinels.op_timeout * 2;
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(format!("sentinel {who}: {e}")),
        Err(_) => Err(format!("sentinel {who}: no answer within {limit:?}")),
    }
}

/// The diagnosis from what the primary (or why it did not answer) and the sentinels said.
pub(crate) fn diagnosis(
    primary: Result<Settings, String>,
    sentinels: &[Result<SentinelAnswer, String>],
) -> Diagnosis {
    let server = primary
        .as_ref()
        .map_or_else(|_| Settings::default().server(), Settings::server);
    findings(&primary, sentinels)
        .into_iter()
        .fold(Diagnosis::new(STORE, server), Diagnosis::with)
}

/// The primary's findings as a single server's, then the sentinels'.
pub(crate) fn findings(
    primary: &Result<Settings, String>,
    sentinels: &[Result<SentinelAnswer, String>],
) -> Vec<Finding> {
    let mut out = match primary {
        Ok(settings) => super::findings(settings),
        Err(why) => vec![Finding::fail(
            "reachable",
            "no",
            format!(
                "the primary the sentinels name does not answer ({why}): no lock can be granted or renewed until it, or a replica promoted in its place, does"
            ),
        )],
    };
    let answers: Vec<&SentinelAnswer> = sentinels.iter().filter_map(|a| a.as_ref().ok()).collect();
    let Some(first) = answers.first() else {
        let why = sentinels
            .iter()
            .find_map(|a| a.as_ref().err())
            .map_or("no sentinel configured", String::as_str);
        out.push(Finding::fail(
            "sentinels",
            format!("0 of {} answer", sentinels.len()),
            format!(
                "{why}. Without a sentinel the store cannot find the primary again after it loses its connection, and no failover happens: check the sentinel addresses and the primary's name"
            ),
        ));
        return out;
    };
    let known = first.number("num-other-sentinels").map_or(1, |n| n + 1);
    let quorum = first.number("quorum");
    out.push(answering(answers.len(), sentinels.len(), known, quorum));
    out.push(quorum_finding(quorum, known));
    out.push(agreed_primary(&answers));
    out.extend(timing(first));
    out.push(replicas(first));
    out
}

/// Sentinels needed to replace a dead primary: `quorum` to call it down, a majority of those
/// known to elect the one that runs the failover.
fn needed(quorum: Option<u64>, known: u64) -> u64 {
    quorum.unwrap_or(0).max(known / 2 + 1)
}

fn answering(answered: usize, configured: usize, known: u64, quorum: Option<u64>) -> Finding {
    let needed = needed(quorum, known);
    let value = format!("{answered} of {configured} answer, {known} known to them");
    if (answered as u64) < needed {
        Finding::warn(
            "sentinels",
            value,
            format!(
                "replacing a dead primary needs {needed} sentinels to agree; if the ones that do not answer are down, a dead primary is not replaced and locks stop with it. Bring them back"
            ),
        )
    } else {
        Finding::ok(
            "sentinels",
            value,
            format!("enough to replace a dead primary ({needed} must agree)"),
        )
    }
}

fn quorum_finding(quorum: Option<u64>, known: u64) -> Finding {
    let Some(q) = quorum else {
        return Finding::warn(
            "quorum",
            "unknown",
            "the sentinels did not report their quorum",
        );
    };
    let value = format!("{q} of {known} sentinels");
    let majority = known / 2 + 1;
    if q > known {
        Finding::warn(
            "quorum",
            value,
            "more sentinels must agree the primary is down than there are: a dead primary is never replaced. Lower the quorum or add sentinels",
        )
    } else if known < 3 {
        Finding::warn(
            "quorum",
            value,
            "with fewer than three sentinels, losing one (or its host) leaves no majority to elect the one that runs a failover: run three or more, on separate hosts",
        )
    } else {
        Finding::ok(
            "quorum",
            value,
            format!(
                "{q} must agree the primary is down and a majority ({majority}) must elect a leader before a replica is promoted"
            ),
        )
    }
}

/// Whether the sentinels agree on the primary and see it up.
fn agreed_primary(answers: &[&SentinelAnswer]) -> Finding {
    let address = |a: &SentinelAnswer| {
        format!(
            "{}:{}",
            a.get("ip").unwrap_or("?"),
            a.get("port").unwrap_or("?")
        )
    };
    let mut named: Vec<String> = answers.iter().map(|a| address(a)).collect();
    named.sort();
    named.dedup();
    if named.len() > 1 {
        return Finding::warn(
            "primary",
            named.join(" and "),
            "the sentinels name different primaries: a failover is under way, or they are cut off from each other; locks may fail until they agree. Check again in a few seconds",
        );
    }
    let value = named.pop().unwrap_or_default();
    let flags: Vec<&str> = answers
        .iter()
        .flat_map(|a| a.get("flags").unwrap_or("").split(','))
        .collect();
    if flags.contains(&"o_down") {
        Finding::fail(
            "primary",
            format!("{value} (down)"),
            "the sentinels agree the primary is down: no lock can be granted or renewed until a replica is promoted",
        )
    } else if flags.contains(&"s_down") {
        Finding::warn(
            "primary",
            format!("{value} (down for some sentinels)"),
            "some sentinels cannot reach the primary; if that lasts, they may fail it over",
        )
    } else {
        Finding::ok(
            "primary",
            value,
            "the sentinels agree on the primary and see it up",
        )
    }
}

/// `down-after-milliseconds` and `failover-timeout`.
fn timing(answer: &SentinelAnswer) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(ms) = answer.number("down-after-milliseconds") {
        out.push(Finding::ok(
            "down-after-milliseconds",
            format!("{ms} ms"),
            "how long the primary must be unreachable before the sentinels call it down. From its death until a replica is promoted (this, plus the election and the promotion), no lock can be granted or renewed: a lease whose TTL is shorter than that is lost in every failover, and its holder is told",
        ));
    }
    if let Some(ms) = answer.number("failover-timeout") {
        out.push(Finding::ok(
            "failover-timeout",
            format!("{ms} ms"),
            "how long a failover may take before the sentinels try again (and how soon the same primary can be failed over twice); locks wait for the new primary meanwhile",
        ));
    }
    out
}

/// The replicas the sentinels could promote.
fn replicas(answer: &SentinelAnswer) -> Finding {
    let up = answer
        .replicas
        .iter()
        .filter(|r| {
            let flags = r.get("flags").map_or("", String::as_str);
            !flags
                .split(',')
                .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
                && r.get("master-link-status").map(String::as_str) == Some("ok")
        })
        .count();
    let value = format!("{} known, {up} in sync", answer.replicas.len());
    if up == 0 {
        Finding::warn(
            "replicas",
            value,
            "the sentinels have no replica to promote: when the primary dies, no lock can be granted or renewed until it is back (and without appendonly it comes back empty). Add a replica",
        )
    } else {
        Finding::ok(
            "replicas",
            value,
            "a dead primary is replaced by one of these; what it had not replicated yet is lost (see min-replicas-to-write), tokens keep rising",
        )
    }
}

#[cfg(test)]
mod tests {
    use fencelock_core::Verdict::{self, Fail, Ok, Warn};

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sentinel(port: &str, flags: &str, others: &str, replica_flags: &[&str]) -> SentinelAnswer {
        SentinelAnswer {
            primary: map(&[
                ("ip", "10.0.0.5"),
                ("port", port),
                ("flags", flags),
                ("quorum", "2"),
                ("num-other-sentinels", others),
                ("down-after-milliseconds", "5000"),
                ("failover-timeout", "60000"),
            ]),
            replicas: replica_flags
                .iter()
                .map(|f| {
                    map(&[
                        ("flags", f),
                        (
                            "master-link-status",
                            if f.contains("down") { "err" } else { "ok" },
                        ),
                    ])
                })
                .collect(),
        }
    }

    fn primary() -> Settings {
        Settings {
            info: Some(super::super::parse_info(
                "redis_version:7.0.15\r\naof_enabled:1\r\nrole:master\r\nconnected_slaves:1\r\n",
            )),
            maxmemory_policy: Some("noeviction".to_owned()),
            appendfsync: Some("everysec".to_owned()),
            min_replicas_to_write: Some(0),
            min_replicas_max_lag: Some(10),
        }
    }

    fn verdicts(
        primary: &Result<Settings, String>,
        sentinels: &[Result<SentinelAnswer, String>],
    ) -> Vec<(String, Verdict)> {
        findings(primary, sentinels)
            .into_iter()
            .map(|f| (format!("{} = {}", f.setting, f.value), f.verdict))
            .collect()
    }

    const PRIMARY_OK: [(&str, Verdict); 6] = [
        ("version = 7.0.15", Ok),
        ("appendonly = yes", Ok),
        ("appendfsync = everysec", Ok),
        ("maxmemory-policy = noeviction", Ok),
        ("role = primary, 1 replica(s)", Ok),
        ("min-replicas-to-write = 0", Ok),
    ];

    #[test]
    fn answers_to_findings() {
        type Case = (
            &'static str,
            Result<Settings, String>,
            Vec<Result<SentinelAnswer, String>>,
            Vec<(&'static str, Verdict)>,
        );
        let healthy = || sentinel("6379", "master", "2", &["slave"]);
        let cases: Vec<Case> = vec![
            (
                "three sentinels, a replica in sync",
                Result::Ok(primary()),
                vec![
                    Result::Ok(healthy()),
                    Result::Ok(healthy()),
                    Result::Ok(healthy()),
                ],
                vec![
                    ("sentinels = 3 of 3 answer, 3 known to them", Ok),
                    ("quorum = 2 of 3 sentinels", Ok),
                    ("primary = 10.0.0.5:6379", Ok),
                    ("down-after-milliseconds = 5000 ms", Ok),
                    ("failover-timeout = 60000 ms", Ok),
                    ("replicas = 1 known, 1 in sync", Ok),
                ],
            ),
            (
                "one sentinel answers, the replica is down, the primary suspected",
                Result::Ok(primary()),
                vec![
                    Result::Ok(sentinel("6379", "master,s_down", "2", &["slave,s_down"])),
                    Err("sentinel a:1: refused".to_owned()),
                    Err("sentinel b:2: refused".to_owned()),
                ],
                vec![
                    ("sentinels = 1 of 3 answer, 3 known to them", Warn),
                    ("quorum = 2 of 3 sentinels", Ok),
                    ("primary = 10.0.0.5:6379 (down for some sentinels)", Warn),
                    ("down-after-milliseconds = 5000 ms", Ok),
                    ("failover-timeout = 60000 ms", Ok),
                    ("replicas = 1 known, 0 in sync", Warn),
                ],
            ),
            (
                "mid-failover: the sentinels disagree; two sentinels only",
                Result::Ok(primary()),
                vec![
                    Result::Ok(sentinel("6379", "master", "1", &["slave"])),
                    Result::Ok(sentinel("6380", "master", "1", &["slave"])),
                ],
                vec![
                    ("sentinels = 2 of 2 answer, 2 known to them", Ok),
                    ("quorum = 2 of 2 sentinels", Warn),
                    ("primary = 10.0.0.5:6379 and 10.0.0.5:6380", Warn),
                    ("down-after-milliseconds = 5000 ms", Ok),
                    ("failover-timeout = 60000 ms", Ok),
                    ("replicas = 1 known, 1 in sync", Ok),
                ],
            ),
            (
                "the primary is down and the sentinels know it",
                Err("connection refused".to_owned()),
                vec![Result::Ok(sentinel(
                    "6379",
                    "master,s_down,o_down",
                    "2",
                    &[],
                ))],
                vec![
                    ("reachable = no", Fail),
                    ("sentinels = 1 of 1 answer, 3 known to them", Warn),
                    ("quorum = 2 of 3 sentinels", Ok),
                    ("primary = 10.0.0.5:6379 (down)", Fail),
                    ("down-after-milliseconds = 5000 ms", Ok),
                    ("failover-timeout = 60000 ms", Ok),
                    ("replicas = 0 known, 0 in sync", Warn),
                ],
            ),
            (
                "no sentinel answers",
                Result::Ok(primary()),
                vec![Err("sentinel a:1: refused".to_owned())],
                vec![("sentinels = 0 of 1 answer", Fail)],
            ),
        ];
        for (what, primary_settings, sentinels, expected) in cases {
            let mut want: Vec<(String, Verdict)> = Vec::new();
            if primary_settings.is_ok() {
                want.extend(PRIMARY_OK.iter().map(|(f, v)| ((*f).to_owned(), *v)));
            }
            want.extend(expected.into_iter().map(|(f, v)| (f.to_owned(), v)));
            assert_eq!(verdicts(&primary_settings, &sentinels), want, "{what}");
            for finding in findings(&primary_settings, &sentinels) {
                assert!(!finding.advice.is_empty(), "{what}: {finding:?}");
            }
        }
    }

    #[test]
    fn a_quorum_larger_than_the_sentinels_never_fails_over() {
        let f = quorum_finding(Some(4), 3);
        assert_eq!(f.verdict, Warn);
        assert_eq!(f.value, "4 of 3 sentinels");
        assert_eq!(needed(Some(4), 3), 4);
        assert_eq!(needed(Some(1), 5), 3);
    }

    #[test]
    fn names_the_primary_or_says_it_is_unknown() {
        let d = diagnosis(Result::Ok(primary()), &[]);
        assert_eq!(d.server, "Redis 7.0.15");
        let d = diagnosis(Err("down".to_owned()), &[]);
        assert_eq!(d.server, "Redis (version unknown)");
        assert_eq!(d.verdict(), Fail);
    }
}
