//! Redis Cluster: the store over redis-rs's async cluster connection.
//!
//! Every script touches only the keys of one lock, and those share one hash slot (see
//! [`crate::keys`]), so the driver routes each `EVALSHA` to the slot's primary and follows
//! `MOVED`/`ASK` itself. A `NOSCRIPT` reply loads the script on every node (the driver routes
//! `SCRIPT LOAD` to all of them), so a replica promoted later has it already. Renewal batches
//! are sent key by key, concurrently: a pipeline may not span slots. Waiters are woken by
//! sharded pub/sub ([`crate::cluster_wakeups`]).

use fencelock_core::backend::redact_url;
use fencelock_core::{Error, Operation};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use crate::classify::classify;
use crate::cluster_wakeups::ClusterWakeups;
use crate::config::Settings;
use crate::store::{RedisLeaseStore, Shared, Topology};

/// The URL scheme of a cluster's seed nodes.
pub(crate) const SCHEME: &str = "redis+cluster://";

/// Retries of one request, more than fit in any op timeout at [`MAX_RETRY_WAIT_MS`] apart.
const MAX_RETRIES: u32 = 1000;
/// Least wait before the driver retries a request (after `TRYAGAIN`, `CLUSTERDOWN`, a
/// connection lost to a failed primary): short, because the whole request, retries included,
/// must fit in the op timeout.
const MIN_RETRY_WAIT_MS: u64 = 10;
/// Most wait between two retries.
const MAX_RETRY_WAIT_MS: u64 = 200;

/// Whether `url` names a cluster (`redis+cluster://…`).
pub(crate) fn is_cluster_url(url: &str) -> bool {
    url.get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
}

/// The seed nodes of `redis+cluster://[user[:password]@]h1:p1,h2:p2,…`, each as a `redis://`
/// URL carrying the credentials.
///
/// # Errors
/// `InvalidInput` when the URL is not a cluster URL, names no node, or has a path other than `/`
/// (a cluster has only database 0).
pub(crate) fn seeds(url: &str) -> Result<Vec<String>, Error> {
    let bad =
        |why: &str| Error::invalid("redis cluster url", format!("{}: {why}", redact_url(url)));
    if !is_cluster_url(url) {
        return Err(bad("expected redis+cluster://host:port,host:port,…"));
    }
    let rest = &url[SCHEME.len()..];
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() {
        return Err(bad("a cluster has only database 0; drop the path"));
    }
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), authority),
    };
    let seeds: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{auth}{h}"))
        .collect();
    if seeds.is_empty() {
        return Err(bad("no node given"));
    }
    Ok(seeds)
}

/// Opens a cluster connection to the seed nodes of `url` with `settings`' timeouts.
pub(crate) async fn open(
    url: &str,
    settings: Settings,
) -> Result<RedisLeaseStore<ClusterConnection>, Error> {
    let seeds = seeds(url)?;
    let client = builder(&seeds, &settings)
        .build()
        .map_err(|e| Error::invalid("redis cluster url", format!("{}: {e}", redact_url(url))))?;
    let conn = client
        .get_async_connection()
        .await
        .map_err(|e| classify(Operation::Connect, e))?;
    let topology = Topology::Cluster(conn.clone());
    // Without a subscriber (switched off, or it failed to open) waiters poll.
    let sharded = if settings.push_wakeups {
        ClusterWakeups::open(
            builder(&seeds, &settings),
            settings.layout.clone(),
            settings.connect_timeout,
        )
        .await
        .inspect_err(|error| tracing::warn!(%error, "no release subscriber; waiters poll"))
        .ok()
    } else {
        None
    };
    Ok(RedisLeaseStore::assemble(
        conn.clone(),
        Shared {
            layout: settings.layout,
            limits: settings.limits,
            target: redact_url(url),
            wakeups: None,
            topology,
            sharded,
            nodes: Some(conn),
        },
    ))
}

/// The cluster client options of `settings` (the store and its subscriber use the same).
fn builder(seeds: &[String], settings: &Settings) -> ClusterClientBuilder {
    ClusterClientBuilder::new(seeds.iter().map(String::as_str))
        .connection_timeout(settings.connect_timeout)
        // Bounds every request as a whole, retries and redirections included.
        .response_timeout(settings.op_timeout)
        // Retries (after a lost node, `TRYAGAIN`, `CLUSTERDOWN`) are bounded by the op timeout,
        // not by a count: a failover takes seconds.
        .retries(MAX_RETRIES)
        .min_retry_wait(MIN_RETRY_WAIT_MS)
        .max_retry_wait(MAX_RETRY_WAIT_MS)
        .retry_wait_formula(MIN_RETRY_WAIT_MS, 2)
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;

    use super::*;

    #[test]
    fn seeds_carry_the_credentials_to_every_node() {
        assert_eq!(
            seeds("redis+cluster://a:1,b:2, c:3").unwrap(),
            ["redis://a:1", "redis://b:2", "redis://c:3"]
        );
        assert_eq!(
            seeds("REDIS+CLUSTER://u:pw@a:1,b:2/").unwrap(),
            ["redis://u:pw@a:1", "redis://u:pw@b:2"]
        );
    }

    #[test]
    fn bad_cluster_urls_are_invalid_input_without_the_password() {
        for bad in [
            "redis+cluster://",
            "redis+cluster://u:hunter2@",
            "redis+cluster://a:1/3",
            "redis://a:1",
        ] {
            let err = seeds(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
