//! Undoing a write round that did not become a grant, also when the caller drops the future.

use std::sync::Arc;

use fencelock_core::LockName;

use super::release::release_everywhere;
use super::store::Inner;
use crate::grant::Grant;

/// Armed while a proposed grant may be set on some servers but is not yet handed to the
/// caller. Dropped while armed, it releases the proposal everywhere in the background.
pub(super) struct Rollback {
    armed: Option<(Arc<Inner>, LockName, Grant)>,
}

impl Rollback {
    pub(super) fn arm(inner: Arc<Inner>, name: LockName, grant: Grant) -> Self {
        Self {
            armed: Some((inner, name, grant)),
        }
    }

    /// The grant was handed to the caller: keep it.
    pub(super) fn disarm(mut self) {
        self.armed = None;
    }

    /// Releases the proposal on every server now (each compares holder and token, so a newer
    /// grant is never touched).
    pub(super) async fn run_now(mut self) {
        if let Some((inner, name, grant)) = self.armed.take() {
            release_everywhere(&inner, &name, grant, |_| false).await;
        }
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        let Some((inner, name, grant)) = self.armed.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    release_everywhere(&inner, &name, grant, |_| false).await;
                });
            }
            Err(_) => tracing::warn!(
                lock = %name,
                token = %grant.token,
                "an abandoned acquire could not be rolled back (no runtime); it expires with its TTL"
            ),
        }
    }
}
