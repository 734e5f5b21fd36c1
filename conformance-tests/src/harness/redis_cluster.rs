//! A Redis Cluster (3 primaries, a replica each) as child processes.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{HarnessError, Result, ResultExt};
use super::redis::{RedisServer, RedisServerOptions};
use super::{binaries, blocking, ports, retry_addr_in_use};

/// Primaries in a started cluster.
const PRIMARIES: usize = 3;
/// How long `redis-cli --cluster create` and the first `cluster_state:ok` may take.
const FORM_TIMEOUT: Duration = Duration::from_secs(90);
/// A cluster node's bus port is its port plus this.
const BUS_OFFSET: u16 = 10000;
/// How often the harness polls while waiting for the cluster.
const POLL: Duration = Duration::from_millis(50);

/// A Redis Cluster on 127.0.0.1: three primaries with one replica each, every node a
/// [`RedisServer`] (kill -9, pause, restart per node). `--cluster-node-timeout 1000`, so a
/// killed primary's replica is promoted within a few seconds.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Arc<Vec<RedisServer>>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node's id.
    pub id: String,
    /// Its client port.
    pub port: u16,
    /// `true` for a primary not flagged as failed.
    pub is_live_primary: bool,
    /// The id of its primary, for a replica.
    pub primary_id: Option<String>,
    /// The slot ranges it serves (inclusive).
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Start six nodes, form the cluster and wait until every node reports `cluster_state:ok`
    /// and every replica is in sync.
    pub async fn start() -> Result<Self> {
        blocking(Self::start_blocking).await
    }

    /// [`Self::start`], blocking the calling thread.
    pub fn start_blocking() -> Result<Self> {
        let mut nodes = Vec::with_capacity(PRIMARIES * 2);
        for _ in 0..PRIMARIES * 2 {
            nodes.push(retry_addr_in_use(start_node)?);
        }
        let cluster = Self {
            nodes: Arc::new(nodes),
        };
        let mut create = Command::new(binaries::find("redis-cli")?);
        create.arg("--cluster").arg("create");
        for node in cluster.nodes.iter() {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create
            .output()
            .ctx(|| "run redis-cli --cluster create".into())?;
        if !out.status.success() {
            return Err(HarnessError::new(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        cluster.wait_ok_blocking(FORM_TIMEOUT)?;
        Ok(cluster)
    }

    /// Every node, in start order (the first three start as primaries).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// `127.0.0.1:PORT` of every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…` naming every node.
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.seeds().join(","))
    }

    /// The node started on `port`.
    pub fn node(&self, port: u16) -> Option<&RedisServer> {
        self.nodes.iter().find(|n| n.port() == port)
    }

    /// `CLUSTER NODES` as seen by the first running node that answers.
    pub fn topology_blocking(&self) -> Result<Vec<ClusterNode>> {
        let mut last = HarnessError::new("no cluster node is running");
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            match node.command_blocking(&["CLUSTER", "NODES"]) {
                Ok(reply) if reply.starts_with('$') => return Ok(parse_nodes(&reply)),
                Ok(reply) => last = HarnessError::new(format!("CLUSTER NODES: {reply}")),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`, asked of a running node).
    pub fn slot_of_blocking(&self, key: &str) -> Result<u16> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .ok_or_else(|| HarnessError::new("no cluster node is running"))?;
        let reply = node.command_blocking(&["CLUSTER", "KEYSLOT", key])?;
        reply
            .trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| HarnessError::new(format!("CLUSTER KEYSLOT {key}: {reply}")))
    }

    /// The live primary serving `slot`, if the running nodes agree there is one.
    pub fn primary_of_slot_blocking(&self, slot: u16) -> Result<Option<&RedisServer>> {
        let topology = self.topology_blocking()?;
        Ok(topology
            .iter()
            .find(|n| n.is_live_primary && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .and_then(|n| self.node(n.port)))
    }

    /// The slot of `key`.
    pub async fn slot_of(&self, key: &str) -> Result<u16> {
        let (cluster, key) = (self.handle(), key.to_owned());
        blocking(move || cluster.slot_of_blocking(&key)).await
    }

    /// [`Self::wait_ok_blocking`] on tokio's blocking pool.
    pub async fn wait_ok(&self, timeout: Duration) -> Result<()> {
        let cluster = self.handle();
        blocking(move || cluster.wait_ok_blocking(timeout)).await
    }

    /// The port of the live primary serving the slot of `key`.
    pub async fn primary_of_key(&self, key: &str) -> Result<u16> {
        let (cluster, key) = (self.handle(), key.to_owned());
        blocking(move || {
            let slot = cluster.slot_of_blocking(&key)?;
            cluster
                .primary_of_slot_blocking(slot)?
                .map(RedisServer::port)
                .ok_or_else(|| HarnessError::new(format!("no live primary serves slot {slot}")))
        })
        .await
    }

    /// Wait until a live primary other than the node on `old_port` serves `slot` and every
    /// running node reports `cluster_state:ok`; returns the new primary's port.
    pub async fn wait_for_new_primary(
        &self,
        slot: u16,
        old_port: u16,
        timeout: Duration,
    ) -> Result<u16> {
        let cluster = self.handle();
        blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(p) = cluster.primary_of_slot_blocking(slot).ok().flatten()
                    && p.port() != old_port
                    && cluster.all_ok_blocking()
                {
                    return Ok(p.port());
                }
                if Instant::now() >= deadline {
                    return Err(HarnessError::new(format!(
                        "no new primary for slot {slot} within {timeout:?}: {:?}",
                        cluster.topology_blocking()
                    )));
                }
                std::thread::sleep(POLL);
            }
        })
        .await
    }

    /// Start moving `slot` from its primary to the primary on `to_port` (`CLUSTER SETSLOT …
    /// IMPORTING` on the target, `… MIGRATING` on the source); the keys stay where they are
    /// until [`Self::move_slot_keys`].
    pub async fn begin_slot_migration(&self, slot: u16, to_port: u16) -> Result<()> {
        let cluster = self.handle();
        blocking(move || {
            let (from, to) = cluster.migration_ends(slot, to_port)?;
            expect_ok(
                cluster.node_ok(to.port)?,
                &[
                    "CLUSTER",
                    "SETSLOT",
                    &slot.to_string(),
                    "IMPORTING",
                    &from.id,
                ],
            )?;
            expect_ok(
                cluster.node_ok(from.port)?,
                &["CLUSTER", "SETSLOT", &slot.to_string(), "MIGRATING", &to.id],
            )
        })
        .await
    }

    /// `MIGRATE` every key of `slot` from its (migrating) primary to the node on `to_port`;
    /// returns how many moved.
    pub async fn move_slot_keys(&self, slot: u16, to_port: u16) -> Result<usize> {
        let cluster = self.handle();
        blocking(move || {
            let (from, _) = cluster.migration_ends(slot, to_port)?;
            let source = cluster.node_ok(from.port)?;
            let reply = source.command_blocking(&[
                "CLUSTER",
                "GETKEYSINSLOT",
                &slot.to_string(),
                "1000",
            ])?;
            let keys = bulk_strings(&reply);
            if keys.is_empty() {
                return Ok(0);
            }
            let port = to_port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            expect_ok(source, &args)?;
            Ok(keys.len())
        })
        .await
    }

    /// Finish moving `slot` to the node on `to_port` (`CLUSTER SETSLOT … NODE` on the target,
    /// the source and every other primary).
    pub async fn finish_slot_migration(&self, slot: u16, to_port: u16) -> Result<()> {
        let cluster = self.handle();
        blocking(move || {
            let (from, to) = cluster.migration_ends(slot, to_port)?;
            let topology = cluster.topology_blocking()?;
            let mut order = vec![to.port, from.port];
            order.extend(
                topology
                    .iter()
                    .filter(|n| n.is_live_primary && n.port != to.port && n.port != from.port)
                    .map(|n| n.port),
            );
            for port in order {
                expect_ok(
                    cluster.node_ok(port)?,
                    &["CLUSTER", "SETSLOT", &slot.to_string(), "NODE", &to.id],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// The node currently serving `slot` (by the running nodes' view) and the node on
    /// `to_port`.
    fn migration_ends(&self, slot: u16, to_port: u16) -> Result<(ClusterNode, ClusterNode)> {
        let topology = self.topology_blocking()?;
        let from = topology
            .iter()
            .find(|n| n.is_live_primary && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .cloned()
            .ok_or_else(|| HarnessError::new(format!("no primary serves slot {slot}")))?;
        let to = topology
            .iter()
            .find(|n| n.port == to_port)
            .cloned()
            .ok_or_else(|| HarnessError::new(format!("no cluster node on port {to_port}")))?;
        Ok((from, to))
    }

    fn node_ok(&self, port: u16) -> Result<&RedisServer> {
        self.node(port)
            .ok_or_else(|| HarnessError::new(format!("no cluster node on port {port}")))
    }

    /// A second handle on the same nodes, for blocking work on another thread.
    fn handle(&self) -> Self {
        Self {
            nodes: Arc::clone(&self.nodes),
        }
    }

    /// Wait until every running node reports `cluster_state:ok` and every replica is in sync.
    pub fn wait_ok_blocking(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.all_ok_blocking() && self.replicas_in_sync_blocking() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::new(format!(
                    "cluster not ok within {timeout:?}: {:?}",
                    self.topology_blocking()
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    fn all_ok_blocking(&self) -> bool {
        self.nodes.iter().filter(|n| n.is_running()).all(|n| {
            n.command_blocking(&["CLUSTER", "INFO"])
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    }

    fn replicas_in_sync_blocking(&self) -> bool {
        self.nodes.iter().filter(|n| n.is_running()).all(|n| {
            n.command_blocking(&["INFO", "replication"])
                .is_ok_and(|info| {
                    info.contains("role:master") || info.contains("master_link_status:up")
                })
        })
    }
}

/// Send `args` to `node` and require `+OK`.
fn expect_ok(node: &RedisServer, args: &[&str]) -> Result<()> {
    let reply = node.command_blocking(args)?;
    if reply == "+OK\r\n" {
        Ok(())
    } else {
        Err(HarnessError::new(format!(
            "{args:?} on port {}: {reply}",
            node.port()
        )))
    }
}

/// The elements of a RESP array of bulk strings without line breaks in them.
fn bulk_strings(reply: &str) -> Vec<String> {
    let mut lines = reply.lines().skip(1);
    let mut out = Vec::new();
    while let (Some(header), Some(value)) = (lines.next(), lines.next()) {
        if header.starts_with('$') {
            out.push(value.to_owned());
        }
    }
    out
}

/// Start one cluster-enabled node on a port whose bus port (+10000) is free too.
fn start_node() -> Result<RedisServer> {
    let port = cluster_port()?;
    RedisServer::start_blocking(RedisServerOptions {
        port: Some(port),
        extra_args: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
            "--cluster-node-timeout",
            "1000",
            // Promote a replica however long its link was down: the tests kill primaries.
            "--cluster-replica-validity-factor",
            "0",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect(),
        ..RedisServerOptions::default()
    })
}

/// A free port ≤ 55535 whose bus port (port + 10000) is free too.
fn cluster_port() -> Result<u16> {
    for _ in 0..200 {
        let port = ports::free_port()?;
        if port <= u16::MAX - BUS_OFFSET
            && TcpListener::bind(("127.0.0.1", port + BUS_OFFSET)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(HarnessError::new("no free port pair for a cluster node"))
}

/// Parse a `CLUSTER NODES` bulk reply.
fn parse_nodes(reply: &str) -> Vec<ClusterNode> {
    reply
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, addr, flags, primary) = (
                fields.first()?,
                fields.get(1)?,
                fields.get(2)?,
                fields.get(3)?,
            );
            let port = addr
                .split(['@', ','])
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let flags: Vec<&str> = flags.split(',').collect();
            let failed = flags.iter().any(|f| f.starts_with("fail"));
            let slots = fields
                .iter()
                .skip(8)
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(ClusterNode {
                id: (*id).to_owned(),
                port,
                is_live_primary: flags.contains(&"master") && !failed,
                primary_id: (*primary != "-").then(|| (*primary).to_owned()),
                slots,
            })
        })
        .collect()
}
