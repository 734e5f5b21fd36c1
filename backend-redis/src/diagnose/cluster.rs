//! `diagnose()` on a Redis Cluster: the cluster's state, which primaries have a replica to take
//! over, `cluster-require-full-coverage`, and every primary diagnosed as a single server would be
//! (its findings prefixed `primary HOST:PORT`).
//!
//! The topology comes from `CLUSTER NODES` (asked of any node); each primary serving slots is
//! then asked through the store's own cluster connection, routed to that node's address, so
//! credentials and timeouts are the store's.

use std::collections::HashMap;

use fencelock_core::{Diagnosis, Error, Finding, Operation};
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use super::{Settings, ask, config_get, declined_is_none, parse_info};
use crate::classify::STORE;

/// What one primary serving slots answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// What [`ask`] gets from a single server.
    pub(crate) settings: Settings,
    /// `CLUSTER INFO` as `field → value`; `None` when declined.
    pub(crate) cluster_info: Option<HashMap<String, String>>,
    /// `CONFIG GET cluster-require-full-coverage`.
    pub(crate) full_coverage: Option<String>,
}

/// A primary serving slots, as `CLUSTER NODES` lists it, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Primary {
    /// `host:port`.
    pub(crate) address: String,
    /// Its replicas not flagged as failed.
    pub(crate) replicas: usize,
    /// Its answer, or why there is none.
    pub(crate) answer: Result<Answer, String>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    id: String,
    /// The addresses to route to: the IP, then the announced hostname if there is one.
    hosts: Vec<String>,
    port: u16,
    primary: bool,
    /// Flagged `fail` (the majority of primaries agree it is down), not merely `fail?`.
    failed: bool,
    primary_id: Option<String>,
    serves_slots: bool,
}

/// Asks the cluster through `conn` (see the module docs).
///
/// # Errors
/// When no node answers `CLUSTER NODES`: the store's classification of that request. A primary
/// that does not answer is a `Warn` finding, not an error.
pub(crate) async fn diagnose(conn: &ClusterConnection) -> Result<Diagnosis, Error> {
    let reply = conn
        .clone()
        .route_command(
            redis::cmd("CLUSTER").arg("NODES").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await;
    let text: Option<String> = match declined_is_none(reply)? {
        Some(value) => Some(redis::from_redis_value(value).map_err(|e| {
            crate::classify::unexpected_reply(Operation::Diagnose, format!("CLUSTER NODES: {e}"))
        })?),
        None => None,
    };
    let Some(text) = text else {
        // No topology to walk: what the driver's own routing of INFO reaches, and a warning.
        let settings = ask(&mut conn.clone()).await?;
        return Ok(std::iter::once(Finding::warn(
            "CLUSTER NODES",
            "not allowed",
            "this user may not run CLUSTER NODES, so only one primary's settings are shown and the cluster's coverage is unknown: allow CLUSTER NODES, or check every primary by hand",
        ))
        .chain(super::findings(&settings))
        .fold(Diagnosis::new(STORE, settings.server()), Diagnosis::with));
    };
    let nodes = parse_nodes(&text);
    let asks = nodes
        .iter()
        .filter(|n| n.primary && n.serves_slots)
        .map(|node| primary(conn, node, &nodes));
    let mut primaries = futures::future::join_all(asks).await;
    primaries.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(diagnosis(&primaries))
}

/// Asks one primary (unless the cluster flags it as failed).
async fn primary(conn: &ClusterConnection, node: &Node, nodes: &[Node]) -> Primary {
    let replicas = nodes
        .iter()
        .filter(|n| n.primary_id.as_deref() == Some(node.id.as_str()) && !n.failed)
        .count();
    let address = format!(
        "{}:{}",
        node.hosts.first().map_or("", String::as_str),
        node.port
    );
    let answer = if node.failed {
        Err("the cluster flags it as failed".to_owned())
    } else {
        ask_node(conn, node).await
    };
    Primary {
        address,
        replicas,
        answer,
    }
}

/// [`ask`] and the cluster's own settings, routed to `node` (by its IP, else by its hostname).
async fn ask_node(conn: &ClusterConnection, node: &Node) -> Result<Answer, String> {
    let mut last = String::from("no address");
    for host in &node.hosts {
        let mut routed = Routed {
            conn: conn.clone(),
            host: host.clone(),
            port: node.port,
        };
        match ask_routed(&mut routed).await {
            Ok(answer) => return Ok(answer),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

async fn ask_routed(node: &mut Routed) -> Result<Answer, Error> {
    let settings = ask(node).await?;
    let info: Option<String> =
        declined_is_none(redis::cmd("CLUSTER").arg("INFO").query_async(node).await)?;
    let full_coverage = config_get(node, "cluster-require-full-coverage").await?;
    Ok(Answer {
        settings,
        cluster_info: info.as_deref().map(parse_info),
        full_coverage,
    })
}

/// The store's cluster connection with every request routed to one node.
struct Routed {
    conn: ClusterConnection,
    host: String,
    port: u16,
}

impl ConnectionLike for Routed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        });
        Box::pin(self.conn.route_command(cmd.clone(), routing))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        _pipeline: &'a Pipeline,
        _offset: usize,
        _count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async {
            Err(RedisError::from((
                ErrorKind::Client,
                "the diagnosis sends no pipelines",
            )))
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// `CLUSTER NODES` text as nodes (lines without a usable address are skipped).
fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, addr, flags, primary_id) = (
                fields.first()?,
                fields.get(1)?,
                fields.get(2)?,
                fields.get(3)?,
            );
            let (ip_port, hostname) = match addr.split_once(',') {
                Some((a, h)) => (a, Some(h)),
                None => (*addr, None),
            };
            let (ip, port) = ip_port.split('@').next()?.rsplit_once(':')?;
            let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
            let flags: Vec<&str> = flags.split(',').collect();
            let hosts = std::iter::once(ip)
                .chain(hostname)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect();
            Some(Node {
                id: (*id).to_owned(),
                hosts,
                port,
                primary: flags.contains(&"master"),
                failed: flags.contains(&"fail"),
                primary_id: (*primary_id != "-").then(|| (*primary_id).to_owned()),
                serves_slots: fields.iter().skip(8).any(|s| !s.starts_with('[')),
            })
        })
        .collect()
}

/// The diagnosis of the cluster from what its primaries answered.
pub(crate) fn diagnosis(primaries: &[Primary]) -> Diagnosis {
    let server = primaries
        .iter()
        .find_map(|p| p.answer.as_ref().ok())
        .map_or_else(
            || Settings::default().server(),
            |answer| answer.settings.server(),
        );
    findings(primaries)
        .into_iter()
        .fold(Diagnosis::new(STORE, server), Diagnosis::with)
}

/// What the answers mean for locks: the cluster's state, replicas, coverage, then each primary
/// (in the given order) as a single server.
pub(crate) fn findings(primaries: &[Primary]) -> Vec<Finding> {
    let answers: Vec<&Answer> = primaries
        .iter()
        .filter_map(|p| p.answer.as_ref().ok())
        .collect();
    let mut out = vec![
        state(&answers),
        replicas(primaries),
        full_coverage(&answers),
    ];
    for primary in primaries {
        let who = format!("primary {}", primary.address);
        match &primary.answer {
            Ok(answer) => out.extend(
                super::findings(&answer.settings)
                    .into_iter()
                    .map(|f| f.of_server(&who)),
            ),
            Err(why) => out.push(
                Finding::warn(
                    "reachable",
                    "no",
                    format!(
                        "{why}; while it is down the locks of its slots can be neither granted nor renewed, until its replica takes over"
                    ),
                )
                .of_server(&who),
            ),
        }
    }
    out
}

/// `cluster_state`, with the slot counts, as the first answering primary sees it (a primary that
/// sees `fail` wins: locks on it fail).
fn state(answers: &[&Answer]) -> Finding {
    let infos: Vec<&HashMap<String, String>> = answers
        .iter()
        .filter_map(|a| a.cluster_info.as_ref())
        .collect();
    let failing = infos
        .iter()
        .find(|i| i.get("cluster_state").map(String::as_str) != Some("ok"));
    let Some(info) = failing.or(infos.first()) else {
        return Finding::warn(
            "cluster_state",
            "unknown",
            "no primary answered CLUSTER INFO; check that every slot is served (redis-cli --cluster check)",
        );
    };
    let field = |name: &str| info.get(name).map_or("?", String::as_str);
    match field("cluster_state") {
        "ok" => Finding::ok(
            "cluster_state",
            format!("ok ({} slots served)", field("cluster_slots_ok")),
            "every slot has a primary: every lock can be granted",
        ),
        other => Finding::fail(
            "cluster_state",
            format!(
                "{other} ({} of {} assigned slots failing)",
                field("cluster_slots_fail"),
                field("cluster_slots_assigned")
            ),
            "the cluster refuses commands (CLUSTERDOWN) while a slot has no primary (with cluster-require-full-coverage yes: on every slot) or this node cannot reach a majority of primaries: grants, renewals and releases fail, and holders are told their lease is lost. Bring the failed primaries back or let their replicas take over",
        ),
    }
}

/// Whether every primary has a replica to promote.
fn replicas(primaries: &[Primary]) -> Finding {
    let without: Vec<&str> = primaries
        .iter()
        .filter(|p| p.replicas == 0)
        .map(|p| p.address.as_str())
        .collect();
    let n = primaries.len();
    if without.is_empty() {
        Finding::ok(
            "replicas",
            format!("{n} primaries, each with a replica"),
            "a dead primary's replica is promoted after cluster-node-timeout. Replication is asynchronous: a grant acknowledged by a primary that dies before replicating it is lost, so a second holder can be granted while the first still works; its token is higher (tokens are floored at the server clock), so fenced writes of the old holder are rejected. min-replicas-to-write narrows that window",
        )
    } else {
        Finding::warn(
            "replicas",
            format!(
                "{n} primaries, {} without a replica ({})",
                without.len(),
                without.join(", ")
            ),
            "when a primary without a replica dies, the locks of its slots can be neither granted nor renewed until it is back (with cluster-require-full-coverage yes, no lock anywhere), and without appendonly it comes back empty. Give every primary a replica",
        )
    }
}

/// `cluster-require-full-coverage`: whether one slot without a primary stops every lock.
fn full_coverage(answers: &[&Answer]) -> Finding {
    let mut values: Vec<&str> = answers
        .iter()
        .filter_map(|a| a.full_coverage.as_deref())
        .collect();
    values.sort_unstable();
    values.dedup();
    match values.as_slice() {
        ["yes"] => Finding::ok(
            "cluster-require-full-coverage",
            "yes",
            "while any slot has no primary, the whole cluster refuses commands: locks on healthy slots can be neither granted nor renewed either, and their holders are told their lease is lost (safe, fails closed). With no, only the locks of the uncovered slots fail",
        ),
        ["no"] => Finding::ok(
            "cluster-require-full-coverage",
            "no",
            "while a slot has no primary, only the locks whose names hash to it fail (CLUSTERDOWN); locks on the other slots keep working",
        ),
        [] => Finding::warn(
            "cluster-require-full-coverage",
            "unknown",
            "CONFIG GET is not allowed here; with yes (the default) one slot without a primary stops every lock, with no only that slot's",
        ),
        mixed => Finding::warn(
            "cluster-require-full-coverage",
            mixed.join(" and "),
            "the primaries disagree, so a slot without a primary stops every lock on some nodes and only its own on others: set the same value on every node",
        ),
    }
}

#[cfg(test)]
mod tests {
    use fencelock_core::Verdict::{self, Fail, Ok, Warn};

    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,replica-4.example slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
a1b2 :0@0 master,noaddr - 0 0 0 disconnected
";

    #[test]
    fn nodes_parse_with_hostnames_failures_and_migrating_slots() {
        let nodes = parse_nodes(NODES);
        assert_eq!(nodes.len(), 6, "the node without an address is skipped");
        let replica = &nodes[0];
        assert_eq!(replica.hosts, ["127.0.0.1", "replica-4.example"]);
        assert!(!replica.primary && !replica.serves_slots && !replica.failed);
        assert_eq!(
            replica.primary_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert!(nodes[3].failed);
        let me = &nodes[5];
        assert!(me.primary && me.serves_slots && me.port == 30001);
        assert_eq!(me.primary_id, None);
    }

    fn answer(coverage: Option<&str>, state: &str) -> Answer {
        Answer {
            settings: Settings {
                info: Some(parse_info(
                    "redis_version:7.0.15\r\naof_enabled:1\r\nrole:master\r\nconnected_slaves:1\r\n",
                )),
                maxmemory_policy: Some("noeviction".to_owned()),
                appendfsync: Some("everysec".to_owned()),
                min_replicas_to_write: Some(0),
                min_replicas_max_lag: Some(10),
            },
            cluster_info: Some(parse_info(&format!(
                "cluster_state:{state}\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:{}\r\ncluster_slots_fail:{}\r\n",
                if state == "ok" { 16384 } else { 10923 },
                if state == "ok" { 0 } else { 5461 },
            ))),
            full_coverage: coverage.map(str::to_owned),
        }
    }

    fn primary(port: u16, replicas: usize, answer: Result<Answer, &str>) -> Primary {
        Primary {
            address: format!("127.0.0.1:{port}"),
            replicas,
            answer: answer.map_err(str::to_owned),
        }
    }

    /// The cluster-level findings (the per-primary ones are the single server's, tested there).
    fn cluster_verdicts(primaries: &[Primary]) -> Vec<(String, Verdict)> {
        findings(primaries)
            .into_iter()
            .filter(|f| !f.setting.starts_with("primary "))
            .map(|f| (format!("{} = {}", f.setting, f.value), f.verdict))
            .collect()
    }

    #[test]
    fn answers_to_findings() {
        type Case = (&'static str, Vec<Primary>, Vec<(&'static str, Verdict)>);
        let cases: Vec<Case> = vec![
            (
                "healthy, full coverage required",
                vec![
                    primary(1, 1, Result::Ok(answer(Some("yes"), "ok"))),
                    primary(2, 1, Result::Ok(answer(Some("yes"), "ok"))),
                ],
                vec![
                    ("cluster_state = ok (16384 slots served)", Ok),
                    ("replicas = 2 primaries, each with a replica", Ok),
                    ("cluster-require-full-coverage = yes", Ok),
                ],
            ),
            (
                "a primary failed, its slots uncovered, another without replica",
                vec![
                    primary(1, 0, Result::Ok(answer(Some("no"), "fail"))),
                    primary(2, 1, Err("the cluster flags it as failed")),
                ],
                vec![
                    (
                        "cluster_state = fail (5461 of 16384 assigned slots failing)",
                        Fail,
                    ),
                    (
                        "replicas = 2 primaries, 1 without a replica (127.0.0.1:1)",
                        Warn,
                    ),
                    ("cluster-require-full-coverage = no", Ok),
                ],
            ),
            (
                "primaries disagree on coverage; CONFIG and CLUSTER INFO declined on one",
                vec![
                    primary(1, 1, Result::Ok(answer(Some("no"), "ok"))),
                    primary(2, 1, Result::Ok(answer(Some("yes"), "ok"))),
                    primary(
                        3,
                        1,
                        Result::Ok(Answer {
                            cluster_info: None,
                            ..answer(None, "ok")
                        }),
                    ),
                ],
                vec![
                    ("cluster_state = ok (16384 slots served)", Ok),
                    ("replicas = 3 primaries, each with a replica", Ok),
                    ("cluster-require-full-coverage = no and yes", Warn),
                ],
            ),
            (
                "nobody answers",
                vec![primary(1, 1, Err("connection refused"))],
                vec![
                    ("cluster_state = unknown", Warn),
                    ("replicas = 1 primaries, each with a replica", Ok),
                    ("cluster-require-full-coverage = unknown", Warn),
                ],
            ),
        ];
        for (what, primaries, expected) in cases {
            let expected: Vec<(String, Verdict)> = expected
                .into_iter()
                .map(|(f, v)| (f.to_owned(), v))
                .collect();
            assert_eq!(cluster_verdicts(&primaries), expected, "{what}");
            for finding in findings(&primaries) {
                assert!(!finding.advice.is_empty(), "{what}: {finding:?}");
            }
        }
    }

    #[test]
    fn each_primary_is_judged_as_a_single_server() {
        let primaries = [
            primary(1, 1, Result::Ok(answer(Some("yes"), "ok"))),
            primary(2, 1, Err("connection refused")),
        ];
        let d = diagnosis(&primaries);
        assert_eq!(d.server, "Redis 7.0.15");
        let per_primary: Vec<(String, Verdict)> = d
            .findings
            .iter()
            .filter(|f| f.setting.starts_with("primary "))
            .map(|f| (format!("{} = {}", f.setting, f.value), f.verdict))
            .collect();
        let expected = [
            ("primary 127.0.0.1:1: version = 7.0.15", Ok),
            ("primary 127.0.0.1:1: appendonly = yes", Ok),
            ("primary 127.0.0.1:1: appendfsync = everysec", Ok),
            ("primary 127.0.0.1:1: maxmemory-policy = noeviction", Ok),
            ("primary 127.0.0.1:1: role = primary, 1 replica(s)", Ok),
            ("primary 127.0.0.1:1: min-replicas-to-write = 0", Ok),
            ("primary 127.0.0.1:2: reachable = no", Warn),
        ]
        .map(|(f, v)| (f.to_owned(), v));
        assert_eq!(per_primary, expected);
    }
}
