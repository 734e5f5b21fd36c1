//! Redis behind Sentinel: a connection that asks the sentinels for the primary, and asks again
//! after it lost the one it had.
//!
//! The connection keeps one multiplexed connection to the primary the sentinels named. When a
//! request on it fails because the connection broke, timed out or the server is no longer
//! writable (`READONLY`: a demoted primary), the request fails as usual (classified by the
//! store) and the connection is dropped, so the next request finds the primary through the
//! sentinels again. Failing to find one is `MASTERDOWN` (nothing was sent: `Unavailable`).
//! Waiters poll: release announcements are not pushed behind Sentinel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fencelock_core::backend::{lock_unpoisoned, redact_url};
use fencelock_core::{Error, Operation};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};

use crate::classify::classify;
use crate::config::Settings;
use crate::diagnose::sentinel::Sentinels;
use crate::store::{RedisLeaseStore, Shared, Topology};

/// The URL scheme of a Sentinel deployment.
pub(crate) const SCHEME: &str = "redis+sentinel://";

/// A connection to the primary the sentinels name, found again after a failover; cheap to
/// clone (clones share it). What [`RedisLeaseStore::connect_sentinel`] builds.
#[derive(Clone)]
pub struct SentinelConnection {
    inner: Arc<Inner>,
}

struct Inner {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
}

impl std::fmt::Debug for SentinelConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConnection")
            .field("connected", &lock_unpoisoned(&self.inner.current).is_some())
            .finish_non_exhaustive()
    }
}

impl SentinelConnection {
    /// The connection to the current primary, found through the sentinels if there is none.
    async fn primary(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = lock_unpoisoned(&self.inner.current).clone() {
            return Ok(conn);
        }
        let mut sentinels = self.inner.sentinels.lock().await;
        // Another request may have found it while this one waited.
        if let Some(conn) = lock_unpoisoned(&self.inner.current).clone() {
            return Ok(conn);
        }
        let found = tokio::time::timeout(self.inner.connect_timeout, async {
            let client = sentinels.async_get_client().await?;
            client
                .get_multiplexed_async_connection_with_config(&self.inner.config)
                .await
        })
        .await;
        let conn = match found {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(no_primary(&e.to_string())),
            Err(_) => return Err(no_primary("the sentinels did not answer in time")),
        };
        *lock_unpoisoned(&self.inner.current) = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the connection after an error that means it may no longer reach the primary.
    fn forget_if_lost<T>(&self, result: &RedisResult<T>) {
        if let Err(e) = result
            && (e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || matches!(
                    e.kind(),
                    ErrorKind::Io | ErrorKind::Server(ServerErrorKind::ReadOnly)
                ))
        {
            *lock_unpoisoned(&self.inner.current) = None;
        }
    }
}

/// No primary could be found: `MASTERDOWN`, which the store reports as `Unavailable`.
fn no_primary(why: &str) -> RedisError {
    RedisError::from((
        ErrorKind::Server(ServerErrorKind::MasterDown),
        "no primary found through the sentinels",
        why.to_owned(),
    ))
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut conn = self.primary().await?;
            let result = conn.req_packed_command(cmd).await;
            self.forget_if_lost(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut conn = self.primary().await?;
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            self.forget_if_lost(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Whether `url` names a Sentinel deployment (`redis+sentinel://…`).
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
}

/// The sentinels (`redis://host:port`) and the primary's name of
/// `redis+sentinel://h1:p1,h2:p2,…/NAME`.
///
/// # Errors
/// `InvalidInput` for a URL that is not a Sentinel URL, names no sentinel or no primary, or
/// carries credentials (not supported yet).
pub(crate) fn parse(url: &str) -> Result<(Vec<String>, String), Error> {
    let bad =
        |why: &str| Error::invalid("redis sentinel url", format!("{}: {why}", redact_url(url)));
    if !is_sentinel_url(url) {
        return Err(bad(
            "expected redis+sentinel://host:port,host:port,…/PRIMARY_NAME",
        ));
    }
    let rest = &url[SCHEME.len()..];
    let (hosts, name) = rest.split_once('/').unwrap_or((rest, ""));
    if hosts.contains('@') {
        return Err(bad("credentials are not supported in a sentinel URL yet"));
    }
    let name = name.trim_end_matches('/');
    if name.is_empty() || name.contains(['/', '?', '#']) {
        return Err(bad(
            "name the primary after the sentinels, e.g. redis+sentinel://s1:26379,s2:26379/mymaster",
        ));
    }
    let sentinels: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{h}"))
        .collect();
    if sentinels.is_empty() {
        return Err(bad("no sentinel given"));
    }
    Ok((sentinels, name.to_owned()))
}

/// Finds the primary through the sentinels of `url` and opens a store on it.
pub(crate) async fn open(
    url: &str,
    settings: Settings,
) -> Result<RedisLeaseStore<SentinelConnection>, Error> {
    let (sentinels, name) = parse(url)?;
    let diagnosed = Sentinels::new(sentinels.clone(), name.clone(), &settings);
    let client = SentinelClient::build(sentinels, name, None, SentinelServerType::Master)
        .map_err(|e| Error::invalid("redis sentinel url", format!("{}: {e}", redact_url(url))))?;
    let conn = SentinelConnection {
        inner: Arc::new(Inner {
            sentinels: tokio::sync::Mutex::new(client),
            current: Mutex::new(None),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(settings.connect_timeout))
                .set_response_timeout(Some(settings.op_timeout)),
            connect_timeout: settings.connect_timeout,
        }),
    };
    conn.primary()
        .await
        .map_err(|e| classify(Operation::Connect, e))?;
    Ok(RedisLeaseStore::assemble(
        conn,
        Shared {
            layout: settings.layout,
            limits: settings.limits,
            target: redact_url(url),
            wakeups: None,
            topology: Topology::Sentinel(diagnosed),
            sharded: None,
            nodes: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind as Kind;

    use super::*;

    #[test]
    fn parses_sentinels_and_the_primary_name() {
        let (sentinels, name) = parse("redis+sentinel://a:1, b:2,c:3/mymaster").unwrap();
        assert_eq!(sentinels, ["redis://a:1", "redis://b:2", "redis://c:3"]);
        assert_eq!(name, "mymaster");
    }

    #[test]
    fn bad_sentinel_urls_are_invalid_input_without_the_password() {
        for bad in [
            "redis+sentinel://a:1",
            "redis+sentinel://a:1/",
            "redis+sentinel:///mymaster",
            "redis+sentinel://u:hunter2@a:1/m",
            "redis://a:1/m",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), Kind::InvalidInput, "{bad}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
