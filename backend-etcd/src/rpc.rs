//! One etcd request: bounded by the operation timeout, and retried while it provably was not
//! sent (a dead member behind the client's balancer, an election in progress).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Error as EtcdError, Txn, TxnResponse};
use tokio::time::{Instant, sleep, timeout_at};

use crate::classify::{is_not_sent, timed_out};

/// The first pause before retrying a request that was not sent; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// A client and the time one operation may take.
///
/// The client sits behind an `Arc`: the store, its contenders, its spare pool and its keepalive
/// task each hold an `Rpc`, and cloning a whole [`Client`] clones a channel handle per etcd
/// service. Each request clones only what it sends on.
#[derive(Clone)]
pub(crate) struct Rpc {
    pub(crate) client: Arc<Client>,
    pub(crate) timeout: Duration,
}

impl Rpc {
    /// Runs `request` until it was sent or the operation timeout passes.
    ///
    /// etcd-client balances over all endpoints and does not skip dead ones, so with one member
    /// of three down about a third of all requests fail with "connection refused"; during an
    /// election followers answer "no leader". Neither reached Raft, so trying again (on
    /// whichever member the balancer picks next) is safe for every operation. A request that
    /// does not answer in time counts as sent: its outcome is unknown.
    pub(crate) async fn call<T, F, Fut>(&self, request: F) -> Result<T, EtcdError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, EtcdError>>,
    {
        self.call_on(|| Client::clone(&self.client), request).await
    }

    /// [`Rpc::call`] with the client each attempt gets made by `client`: a single service's
    /// client (one channel handle) costs less to make than the whole [`Client`] (one per
    /// service), and it is made on every request.
    pub(crate) async fn call_on<C, T, F, Fut>(
        &self,
        mut client: impl FnMut() -> C,
        mut request: F,
    ) -> Result<T, EtcdError>
    where
        F: FnMut(C) -> Fut,
        Fut: Future<Output = Result<T, EtcdError>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut pause = FIRST_PAUSE;
        loop {
            let Ok(result) = timeout_at(deadline, request(client())).await else {
                return Err(timed_out(self.timeout));
            };
            match result {
                Err(e) if is_not_sent(&e) && Instant::now() + pause < deadline => {
                    tracing::trace!(error = %e, "etcd request not sent; trying again");
                    sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                other => return other,
            }
        }
    }

    /// One txn, sent as [`Rpc::call`] sends every request.
    pub(crate) async fn txn(&self, txn: Txn) -> Result<TxnResponse, EtcdError> {
        self.call_on(
            || self.client.kv_client(),
            |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            },
        )
        .await
    }
}
