//! Push wake-ups from every server: a release announces itself on each server it freed, and any
//! announcement wakes the waiter.

use std::sync::Arc;

use fencelock_core::backend::ReleaseWatch;
use fencelock_core::{Error, LockName};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::quorum::quorum;
use super::store::Inner;

/// A watch on `name` once a majority of the servers' subscribers are confirmed; `Ok(None)`
/// (the waiter polls) when fewer could subscribe.
///
/// A release that frees a grant frees it on a majority, and any two majorities share a server,
/// so a waiter subscribed on a majority hears of every release. Subscribing runs in background
/// tasks, so a silent server neither delays the waiter nor loses its attempt.
pub(super) async fn watch_released(
    inner: &Arc<Inner>,
    name: &LockName,
) -> Result<Option<ReleaseWatch>, Error> {
    let subscribers: Vec<_> = inner
        .instances
        .iter()
        .filter_map(|i| i.wakeups.clone())
        .collect();
    if subscribers.is_empty() {
        return Ok(None);
    }
    let q = quorum(inner.instances.len());
    // Register the waiter before any subscriber can deliver (or sweep its channel away).
    let watch = inner.waiters.subscribe(name);
    let mut pending: FuturesUnordered<_> = subscribers
        .into_iter()
        .map(|w| {
            let name = name.clone();
            tokio::spawn(async move { w.ensure_subscribed(&name).await })
        })
        .collect();
    let mut live = 0;
    while let Some(result) = pending.next().await {
        match result {
            Ok(Ok(true)) => live += 1,
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "a server's release announcements are unavailable")
            }
            Err(error) => tracing::debug!(%error, "a subscriber task failed"),
        }
        if live >= q {
            return Ok(Some(watch));
        }
    }
    tracing::debug!(lock = %name, live, "too few servers announce releases; waiters poll");
    Ok(None)
}
