//! Listing held locks: `SCAN` for lock keys, then the inspect script on each.
//!
//! Lock keys are `<prefix>{<16 hex digits>}:lock:<name>` (see [`crate::keys`]): the hash tag
//! comes before the name, so names that share a beginning do not share a key prefix, and no
//! index is kept (an index would cost every acquire and release a write). A listing scans the
//! key space with `MATCH <prefix>{????????????????}:lock:<name prefix>*`, glob characters of the
//! key prefix and the name prefix escaped (`*`, `?`, `[`, `]` and `\` match only themselves;
//! `{`, `%` and `_` mean nothing to `MATCH`); every key it returns is checked against the
//! layout again before its name is believed. On a cluster every primary is scanned. A page
//! therefore costs a walk over the whole key space (`SCAN … COUNT 1000` steps, none blocking
//! the server for long) plus one inspect per listed lock: a tool for operators, not for a hot
//! path.

use std::time::Duration;

use fencelock_core::{Error, HeldLock, LeaseInfo, ListQuery, Listing, LockName, Operation};
use redis::aio::ConnectionLike;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Value, cmd};

use crate::classify::{classify, unexpected_reply};
use crate::keys::KeyLayout;
use crate::reply::{self, Inspected};
use crate::scripts::{Call, SCRIPTS};
use crate::store::Shared;

/// Keys `SCAN` looks at per step.
const SCAN_COUNT: u64 = 1000;

/// What `inspect` reports for a grant the inspect script read.
pub(crate) fn info((grant, label, pttl): Inspected) -> LeaseInfo {
    LeaseInfo {
        token: grant.token,
        holder: Some(grant.holder),
        remaining: Duration::from_millis(pttl),
        label,
    }
}

/// `text` with the glob characters of `MATCH` escaped.
fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `MATCH` pattern of the lock keys of names starting with `prefix`.
pub(crate) fn pattern(layout: &KeyLayout, prefix: &str) -> String {
    format!(
        "{}{{{}}}:lock:{}*",
        glob_literal(layout.prefix()),
        "?".repeat(16),
        glob_literal(prefix)
    )
}

/// The lock name of a key `SCAN` returned, if it is one of this layout's lock keys.
pub(crate) fn name_of(layout: &KeyLayout, key: &[u8]) -> Option<LockName> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(layout.prefix())?.strip_prefix('{')?;
    let (tag, rest) = rest.split_at_checked(16)?;
    let name = rest.strip_prefix("}:lock:")?;
    let name = LockName::new(name).ok()?;
    // The tag is the name's: anything else was not written by this layout.
    (layout.lock_key(&name) == key && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(name)
}

/// Every name under `query`'s prefix that `SCAN` finds on one server.
async fn scan_one<C: ConnectionLike>(
    conn: &mut C,
    pattern: &str,
    layout: &KeyLayout,
    query: &ListQuery,
    names: &mut Vec<LockName>,
) -> Result<(), Error> {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await
            .map_err(|e| classify(Operation::List, e))?;
        names.extend(
            keys.iter()
                .filter_map(|k| name_of(layout, k))
                .filter(|n| query.admits(n.as_str())),
        );
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The primaries of a cluster, as `CLUSTER SLOTS` names them.
async fn primaries(
    nodes: &mut redis::cluster_async::ClusterConnection,
) -> Result<Vec<(String, u16)>, Error> {
    let slots = nodes
        .route_command(
            cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
        )
        .await
        .map_err(|e| classify(Operation::List, e))?;
    let bad = |what: &Value| unexpected_reply(Operation::List, format!("CLUSTER SLOTS {what:?}"));
    let mut found = Vec::new();
    for range in reply::items(Operation::List, slots)? {
        let Value::Array(range) = range else {
            return Err(bad(&range));
        };
        let Some(Value::Array(primary)) = range.get(2) else {
            return Err(bad(&Value::Array(range)));
        };
        let host = match primary.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => return Err(bad(&Value::Array(primary.clone()))),
        };
        let port = primary
            .get(1)
            .and_then(reply::int)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| bad(&Value::Array(primary.clone())))?;
        if !found.contains(&(host.clone(), port)) {
            found.push((host, port));
        }
    }
    Ok(found)
}

/// Every name under `query`'s prefix on the store's server, or on every primary of a cluster.
async fn scan<C: ConnectionLike + Clone>(
    conn: &C,
    shared: &Shared,
    query: &ListQuery,
) -> Result<Vec<LockName>, Error> {
    let pattern = pattern(&shared.layout, query.prefix_str());
    let mut names = Vec::new();
    match &shared.nodes {
        None => {
            scan_one(
                &mut conn.clone(),
                &pattern,
                &shared.layout,
                query,
                &mut names,
            )
            .await?
        }
        Some(nodes) => {
            let mut nodes = nodes.clone();
            for (host, port) in primaries(&mut nodes).await? {
                let mut node = OnNode {
                    conn: nodes.clone(),
                    routing: RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host,
                        port,
                    }),
                };
                scan_one(&mut node, &pattern, &shared.layout, query, &mut names).await?;
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// A cluster connection that sends every command to one node.
struct OnNode {
    conn: redis::cluster_async::ClusterConnection,
    routing: RoutingInfo,
}

impl ConnectionLike for OnNode {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        Box::pin(self.conn.route_command(cmd.clone(), self.routing.clone()))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// One page of `query`: scans, then inspects the names in order until the page is full (a
/// name whose grant ended since the scan is skipped).
pub(crate) async fn list<C>(conn: &C, shared: &Shared, query: &ListQuery) -> Result<Listing, Error>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let names = scan(conn, shared, query).await?;
    let wanted = query.limit() + 1;
    let mut held = Vec::with_capacity(wanted);
    for chunk in names.chunks(wanted) {
        let inspects = chunk.iter().map(|name| {
            let key = shared.layout.lock_key(name);
            let mut conn = conn.clone();
            async move {
                let call = Call::new(&SCRIPTS.inspect, &[&key]);
                let value = call
                    .run(&mut conn)
                    .await
                    .map_err(|e| classify(Operation::List, e))?;
                reply::inspected(value)
            }
        });
        for (name, answer) in chunk.iter().zip(futures::future::join_all(inspects).await) {
            if let Some(grant) = answer? {
                held.push(HeldLock::new(name.clone(), info(grant)));
            }
        }
        if held.len() >= wanted {
            break;
        }
    }
    Ok(query.page(held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_glob_characters_and_keys_parse_back() {
        let layout = KeyLayout::new("app*[x]:").unwrap();
        assert_eq!(
            pattern(&layout, "a*?[]\\{%_"),
            "app\\*\\[x\\]:{????????????????}:lock:a\\*\\?\\[\\]\\\\{%_*"
        );
        for name in ["a", "a*?[]\\{%_", "x}:lock:y", "ünï"] {
            let name = LockName::new(name).unwrap();
            let key = layout.lock_key(&name);
            assert_eq!(name_of(&layout, key.as_bytes()), Some(name));
        }
        let counter = layout.lock(&LockName::new("a").unwrap()).counter;
        assert_eq!(name_of(&layout, counter.as_bytes()), None);
        assert_eq!(name_of(&layout, b"app*[x]:{0123456789abcdef}:lock:a"), None);
        assert_eq!(name_of(&layout, b"other"), None);
    }
}
