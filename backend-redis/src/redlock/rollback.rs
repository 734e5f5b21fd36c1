//! Undoing a write round that did not become a grant, also when the caller drops the future.

use std::sync::Arc;

use fencelock_core::Lease;

use super::release::release_everywhere;
use super::store::Inner;

/// Armed while a proposed grant may be set on some servers but is not yet handed to the
/// caller. Dropped while armed, it releases the proposal everywhere in the background.
pub(super) struct Rollback {
    armed: Option<(Arc<Inner>, Lease)>,
}

impl Rollback {
    /// Arms for `proposal`: the grant as the write round proposes it (name, holder, token and
    /// label are what the release compares).
    pub(super) fn arm(inner: Arc<Inner>, proposal: Lease) -> Self {
        Self {
            armed: Some((inner, proposal)),
        }
    }

    /// The grant was handed to the caller: keep it.
    pub(super) fn disarm(mut self) {
        self.armed = None;
    }

    /// Releases the proposal on every server now (each compares holder and token, so a newer
    /// grant is never touched).
    pub(super) async fn run_now(mut self) {
        if let Some((inner, proposal)) = self.armed.take() {
            release_everywhere(&inner, &proposal, |_| false).await;
        }
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        let Some((inner, proposal)) = self.armed.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    release_everywhere(&inner, &proposal, |_| false).await;
                });
            }
            Err(_) => tracing::warn!(
                lock = %proposal.name(),
                token = %proposal.token(),
                "an abandoned acquire could not be rolled back (no runtime); it expires with its TTL"
            ),
        }
    }
}
