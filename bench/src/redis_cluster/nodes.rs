//! The cluster's redis-servers: who they are (`CLUSTER NODES`), which slots they own, and the
//! CPU each has used (`INFO cpu`).

use fencelock_redis::redis::{self, aio::MultiplexedConnection};

use crate::error::{BenchError, Result};

/// A node of the cluster, from `CLUSTER NODES`.
pub(super) struct Node {
    pub(super) id: String,
    pub(super) addr: String,
    pub(super) primary: bool,
    /// The primary's id (replicas).
    pub(super) replicates: Option<String>,
    /// Slot ranges (primaries).
    pub(super) slots: Vec<(u16, u16)>,
    pub(super) conn: MultiplexedConnection,
}

/// What `node` is in a run whose locks are on `used`: a primary owning them or idle, or the
/// replica of which primary.
pub(super) fn role(node: &Node, all: &[Node], used: &[&Node]) -> String {
    if !node.primary {
        let of = node
            .replicates
            .as_ref()
            .and_then(|id| all.iter().find(|n| &n.id == id));
        return match of {
            Some(primary) => format!("replica of {}", primary.addr),
            None => "replica".to_owned(),
        };
    }
    if used.iter().any(|u| u.addr == node.addr) {
        "primary, owns the locks".to_owned()
    } else {
        "primary, idle".to_owned()
    }
}

/// Whether `node` owns `slot`.
pub(super) fn owns(node: &Node, slot: u16) -> bool {
    node.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
}

/// Every node of the cluster, from `CLUSTER NODES` asked of the URL's first seed, each with a
/// connection of its own for `INFO`.
pub(super) async fn nodes(url: &str) -> Result<Vec<Node>> {
    let rest = url
        .strip_prefix("redis+cluster://")
        .ok_or_else(|| BenchError::new(format!("not a redis+cluster:// URL: {url}")))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), authority),
    };
    let seed = hosts.split(',').next().unwrap_or(hosts);
    let connect = |addr: String| {
        let url = format!("redis://{auth}{addr}");
        async move {
            let client = redis::Client::open(url)?;
            Ok::<_, BenchError>(client.get_multiplexed_async_connection().await?)
        }
    };
    let mut seed_conn = connect(seed.to_owned()).await?;
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut seed_conn)
        .await?;
    let mut nodes = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        if flags.contains("fail") || flags.contains("handshake") {
            continue;
        }
        let addr = addr.split(['@', ',']).next().unwrap_or(addr).to_owned();
        let slots = fields
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
                None => s.parse().ok().map(|one| (one, one)),
            })
            .collect();
        let primary = flags.contains("master");
        nodes.push(Node {
            conn: connect(addr.clone()).await?,
            id: fields[0].to_owned(),
            replicates: fields
                .get(3)
                .filter(|id| !primary && **id != "-")
                .map(|id| (*id).to_owned()),
            primary,
            addr,
            slots,
        });
    }
    nodes.sort_by(|a, b| (!a.primary, &a.addr).cmp(&(!b.primary, &b.addr)));
    if !nodes.iter().any(|n| n.primary && !n.slots.is_empty()) {
        return Err(BenchError::new(format!(
            "CLUSTER NODES of {seed} lists no primary with slots"
        )));
    }
    nodes.retain(|n| !n.primary || !n.slots.is_empty());
    Ok(nodes)
}

/// `field` of `INFO section`.
pub(super) async fn info_field(
    conn: &mut MultiplexedConnection,
    section: &str,
    field: &str,
) -> Result<String> {
    let info: String = redis::cmd("INFO").arg(section).query_async(conn).await?;
    field_of(&info, field)
        .map(str::to_owned)
        .ok_or_else(|| BenchError::new(format!("INFO {section} has no {field}")))
}

fn field_of<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// Seconds of CPU (user + sys, one `INFO cpu` each) every node used so far.
pub(super) async fn cpu(nodes: &[Node]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut node.conn.clone())
            .await?;
        let mut total = 0.0;
        for field in ["used_cpu_sys", "used_cpu_user"] {
            let value = field_of(&info, field).unwrap_or_default();
            total += value.parse::<f64>().map_err(|e| {
                BenchError::new(format!(
                    "INFO cpu of {}: {field} = {value:?}: {e}",
                    node.addr
                ))
            })?;
        }
        out.push(total);
    }
    Ok(out)
}
