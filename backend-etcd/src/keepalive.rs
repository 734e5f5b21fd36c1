//! One long-lived keepalive stream per store, shared by every renewal and every waiting
//! contender, instead of a new gRPC stream per keepalive.
//!
//! A background task owns the stream. Callers hand it a lease id and a reply slot; the task
//! sends `LeaseKeepAliveRequest { id }` on the stream (etcd-client's `pub-response-field`
//! feature makes the keeper's `id` settable, so one keeper sends for every lease) and, since etcd answers one stream's
//! requests in order, matches the answers to a FIFO of pending replies (checking the id too).
//! An answer with TTL ≤ 0 means etcd no longer knows the lease: the same "lease not found"
//! error a one-shot keepalive gives, so [`crate::classify::is_lease_gone`] holds for it. If the
//! stream breaks, ends, answers out of order, or leaves its oldest request unanswered for the
//! operation timeout, every pending request fails (outcome unknown) and the stream is reopened
//! on the next request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use etcd_client::{Error as EtcdError, LeaseKeepAliveStream, LeaseKeeper};
use fencelock_core::backend::lock_unpoisoned;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::classify::timed_out;
use crate::rpc::Rpc;

/// The answer to one keepalive: `Ok` iff etcd confirmed the lease is alive.
type Reply = oneshot::Sender<Result<(), EtcdError>>;

struct Request {
    id: i64,
    reply: Reply,
}

/// A handle on the store's keepalive stream; clones share it.
#[derive(Clone)]
pub(crate) struct KeepAlives {
    rpc: Rpc,
    /// The running task's inbox; replaced when the task is gone.
    inbox: Arc<Mutex<Option<mpsc::UnboundedSender<Request>>>>,
}

impl KeepAlives {
    pub(crate) fn new(rpc: Rpc) -> Self {
        Self {
            rpc,
            inbox: Arc::new(Mutex::new(None)),
        }
    }

    /// Sends one keepalive for lease `id` and waits (at most the op timeout) for etcd's answer.
    /// Take the send instant *before* calling: the lease lives at least that + its TTL.
    pub(crate) async fn keep_alive(&self, id: i64) -> Result<(), EtcdError> {
        let deadline = Instant::now() + self.rpc.timeout;
        let (reply, answer) = oneshot::channel();
        self.submit(Request { id, reply });
        match timeout_at(deadline, answer).await {
            Err(_) => Err(timed_out(self.rpc.timeout)),
            Ok(Err(_)) => Err(stream_ended()),
            Ok(Ok(result)) => result,
        }
    }

    fn submit(&self, request: Request) {
        let mut inbox = lock_unpoisoned(&self.inbox);
        let request = match inbox.as_ref() {
            Some(tx) => match tx.send(request) {
                Ok(()) => return,
                Err(mpsc::error::SendError(request)) => request,
            },
            None => request,
        };
        // No task yet, or it is gone (its runtime shut down): start one.
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(self.rpc.clone(), rx));
        // The receiver is alive, so this cannot fail; if it did, the caller's reply slot is
        // dropped and it sees "stream ended".
        let _ = tx.send(request);
        *inbox = Some(tx);
    }
}

fn stream_ended() -> EtcdError {
    EtcdError::LeaseKeepAliveError("the keepalive stream ended".into())
}

/// An open stream and the requests sent on it, oldest first.
struct Open {
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    pending: VecDeque<(Instant, Request)>,
}

impl Open {
    /// Fails every pending request with `err` (built per request: the errors are not `Clone`).
    fn fail_all(self, err: impl Fn() -> EtcdError) {
        for (_, request) in self.pending {
            let _ = request.reply.send(Err(err()));
        }
    }
}

async fn run(rpc: Rpc, mut inbox: mpsc::UnboundedReceiver<Request>) {
    let mut open: Option<Open> = None;
    loop {
        let Some(mut current) = open.take() else {
            // Lazily (re)open with the next request: opening sends its keepalive and reads
            // the answer, a TTL-0 answer failing as "lease not found".
            let Some(request) = inbox.recv().await else {
                return;
            };
            if request.reply.is_closed() {
                continue;
            }
            let id = request.id;
            match rpc
                .call(|mut c| async move { c.lease_keep_alive(id).await })
                .await
            {
                Ok((keeper, stream)) => {
                    let _ = request.reply.send(Ok(()));
                    open = Some(Open {
                        keeper,
                        stream,
                        pending: VecDeque::new(),
                    });
                }
                Err(e) => {
                    let _ = request.reply.send(Err(e));
                }
            }
            continue;
        };
        let oldest = current.pending.front().map(|(sent, _)| *sent + rpc.timeout);
        tokio::select! {
            request = inbox.recv() => {
                let Some(request) = request else { return };
                let sent = Instant::now();
                current.keeper.id = request.id;
                match timeout_at(sent + rpc.timeout, current.keeper.keep_alive()).await {
                    Ok(Ok(())) => {
                        current.pending.push_back((sent, request));
                        open = Some(current);
                    }
                    Ok(Err(_)) => {
                        let _ = request.reply.send(Err(stream_ended()));
                        current.fail_all(stream_ended);
                    }
                    Err(_) => {
                        let _ = request.reply.send(Err(timed_out(rpc.timeout)));
                        current.fail_all(|| timed_out(rpc.timeout));
                    }
                }
            }
            answer = current.stream.message() => match answer {
                Ok(Some(resp)) => match current.pending.pop_front() {
                    Some((_, request)) if request.id == resp.id() => {
                        let result = if resp.ttl() > 0 {
                            Ok(())
                        } else {
                            Err(EtcdError::LeaseKeepAliveError("lease not found".into()))
                        };
                        let _ = request.reply.send(result);
                        open = Some(current);
                    }
                    unexpected => {
                        tracing::warn!(
                            lease = resp.id(),
                            "etcd answered a keepalive nobody was waiting for; reopening the stream"
                        );
                        if let Some((_, request)) = unexpected {
                            let _ = request.reply.send(Err(stream_ended()));
                        }
                        current.fail_all(stream_ended);
                    }
                },
                Ok(None) => current.fail_all(stream_ended),
                Err(e) => {
                    tracing::debug!(error = %e, "the keepalive stream broke; reopening on demand");
                    let text = e.to_string();
                    current.fail_all(|| broke(&text));
                }
            },
            () = until(oldest) => current.fail_all(|| timed_out(rpc.timeout)),
        }
    }
}

/// A stream that broke after requests were sent on it: their outcome is unknown (never "not
/// sent", whatever the transport said, and never "lease not found").
fn broke(why: &str) -> EtcdError {
    EtcdError::GRpcStatus(tonic::Status::cancelled(format!(
        "the keepalive stream broke: {why}"
    )))
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
