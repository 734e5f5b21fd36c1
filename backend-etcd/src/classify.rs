//! The one place where etcd-client errors become fencelock errors.
//!
//! | driver error | kind |
//! | --- | --- |
//! | connection refused / could not connect (request never sent) | `Unavailable` |
//! | the TLS handshake refused the server's certificate | `Unavailable` |
//! | `etcdserver: no leader`, `too many requests` (rejected before Raft) | `Unavailable` |
//! | deadline exceeded, cancelled, our own op timeout | `OutcomeUnknown` |
//! | `etcdserver: request timed out…`, `leader changed` (may be committed) | `OutcomeUnknown` |
//! | connection reset / closed after sending, stream ended | `OutcomeUnknown` |
//! | `requested lease not found`, keepalive TTL 0 — for a lease we hold | `LeaseLost` |
//! | invalid endpoint URI / arguments while connecting | `InvalidInput` |
//! | anything else (auth, permission, compaction, …) | `Backend` |

use std::error::Error as _;

use etcd_client::Error as EtcdError;
use fencelock_core::backend::lost_or_superseded;
use fencelock_core::{Error, Lease, Operation};
use tonic::Code;

/// The store name in errors and logs.
pub(crate) const STORE: &str = "etcd";

/// Classifies a driver error from `op`.
pub(crate) fn classify(op: Operation, err: EtcdError) -> Error {
    match verdict(&err) {
        Verdict::NotSent => Error::unavailable(STORE, op, err),
        Verdict::Unknown => Error::outcome_unknown(STORE, op, err),
        Verdict::BadInput if op == Operation::Connect => {
            Error::invalid("etcd endpoint", err.to_string())
        }
        Verdict::BadInput | Verdict::LeaseGone | Verdict::Other => Error::backend(STORE, op, err),
    }
}

/// Classifies a driver error from an operation on `lease`'s own etcd lease: a lease etcd no
/// longer knows is [`Error::LeaseLost`].
pub(crate) fn classify_for(lease: &Lease, op: Operation, err: EtcdError) -> Error {
    if is_lease_gone(&err) {
        return lost_or_superseded(lease, None);
    }
    classify(op, err)
}

/// Whether the error says the lease does not exist (expired or revoked).
pub(crate) fn is_lease_gone(err: &EtcdError) -> bool {
    verdict(err) == Verdict::LeaseGone
}

/// Whether the request provably never reached Raft, so sending it again is safe.
pub(crate) fn is_not_sent(err: &EtcdError) -> bool {
    verdict(err) == Verdict::NotSent
}

/// Our own per-operation timeout, shaped like the driver's: the request was sent.
pub(crate) fn timed_out(after: std::time::Duration) -> EtcdError {
    EtcdError::GRpcStatus(tonic::Status::deadline_exceeded(format!(
        "no answer from etcd within {after:?}"
    )))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    NotSent,
    Unknown,
    LeaseGone,
    BadInput,
    Other,
}

fn verdict(err: &EtcdError) -> Verdict {
    match err {
        EtcdError::GRpcStatus(status) => status_verdict(status),
        EtcdError::TransportError(_) => text_verdict(&chain(err)),
        EtcdError::IoError(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::AddrNotAvailable
            | std::io::ErrorKind::NotConnected => Verdict::NotSent,
            _ => Verdict::Unknown,
        },
        EtcdError::LeaseKeepAliveError(msg) if msg.contains("lease not found") => {
            Verdict::LeaseGone
        }
        // The keepalive or watch stream closed: a request may have been in flight.
        EtcdError::LeaseKeepAliveError(_) | EtcdError::WatchError(_) => Verdict::Unknown,
        EtcdError::InvalidArgs(_) | EtcdError::InvalidUri(_) | EtcdError::EndpointError(_) => {
            Verdict::BadInput
        }
        _ => Verdict::Other,
    }
}

fn status_verdict(status: &tonic::Status) -> Verdict {
    let msg = status.message();
    let from_etcd = msg.starts_with("etcdserver:");
    match status.code() {
        Code::NotFound if msg.contains("lease not found") => Verdict::LeaseGone,
        Code::DeadlineExceeded | Code::Cancelled => Verdict::Unknown,
        Code::ResourceExhausted if msg.contains("too many requests") => Verdict::NotSent,
        // Refused before anything was proposed to Raft.
        Code::Unavailable
            if [
                "no leader",
                "not leader",
                "not capable",
                "unhealthy cluster",
            ]
            .iter()
            .any(|s| msg.contains(s)) =>
        {
            Verdict::NotSent
        }
        // `request timed out…`, `leader changed`, `server stopped`: perhaps committed.
        Code::Unavailable if from_etcd => Verdict::Unknown,
        Code::Unknown | Code::Internal if from_etcd => Verdict::Other,
        Code::Unavailable | Code::Unknown | Code::Internal => {
            let mut text = msg.to_owned();
            let mut source = status.source();
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text_verdict(&text)
        }
        _ => Verdict::Other,
    }
}

/// Transport failures: could the request have left this process?
fn text_verdict(text: &str) -> Verdict {
    let text = text.to_ascii_lowercase();
    let not_sent = [
        "connection refused",
        "tcp connect error",
        "error trying to connect",
        "dns error",
        "failed to lookup address",
        "no route to host",
        // The TLS handshake refused the server's certificate: no request went out.
        "invalid peer certificate",
    ];
    if not_sent.iter().any(|s| text.contains(s)) {
        Verdict::NotSent
    } else {
        // Reset, broken pipe, GOAWAY, "connection closed before message completed", …
        Verdict::Unknown
    }
}

fn chain(err: &EtcdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fencelock_core::backend::{granted_lease, holder_id};
    use fencelock_core::{ErrorKind, FencingToken, LockName};
    use tokio::time::Instant;

    use super::*;

    fn status(code: Code, msg: &str) -> EtcdError {
        EtcdError::GRpcStatus(tonic::Status::new(code, msg))
    }

    #[test]
    fn classification_table() {
        use ErrorKind::*;
        let io = |kind| EtcdError::IoError(std::io::Error::new(kind, "io"));
        let table: Vec<(EtcdError, Operation, ErrorKind)> = vec![
            (
                status(
                    Code::Unavailable,
                    "error trying to connect: tcp connect error: Connection refused (os error 111)",
                ),
                Operation::Acquire,
                Unavailable,
            ),
            (
                status(Code::Unavailable, "etcdserver: no leader"),
                Operation::Renew,
                Unavailable,
            ),
            (
                status(Code::Unavailable, "invalid peer certificate: UnknownIssuer"),
                Operation::Inspect,
                Unavailable,
            ),
            (
                status(Code::ResourceExhausted, "etcdserver: too many requests"),
                Operation::Acquire,
                Unavailable,
            ),
            (
                io(std::io::ErrorKind::ConnectionRefused),
                Operation::Acquire,
                Unavailable,
            ),
            (
                status(Code::Unavailable, "etcdserver: request timed out"),
                Operation::Acquire,
                OutcomeUnknown,
            ),
            (
                status(
                    Code::Unavailable,
                    "etcdserver: request timed out, possibly due to previous leader failure",
                ),
                Operation::Release,
                OutcomeUnknown,
            ),
            (
                status(Code::Unavailable, "etcdserver: leader changed"),
                Operation::Renew,
                OutcomeUnknown,
            ),
            (
                status(
                    Code::Unknown,
                    "error reading a body from connection: connection reset",
                ),
                Operation::Release,
                OutcomeUnknown,
            ),
            (
                status(
                    Code::Unavailable,
                    "connection closed before message completed",
                ),
                Operation::Acquire,
                OutcomeUnknown,
            ),
            (
                status(Code::DeadlineExceeded, "deadline"),
                Operation::Acquire,
                OutcomeUnknown,
            ),
            (
                status(Code::Cancelled, "Timeout expired"),
                Operation::Renew,
                OutcomeUnknown,
            ),
            (
                timed_out(Duration::from_secs(5)),
                Operation::Inspect,
                OutcomeUnknown,
            ),
            (
                io(std::io::ErrorKind::ConnectionReset),
                Operation::Renew,
                OutcomeUnknown,
            ),
            (
                EtcdError::WatchError("failed to create lease keeper".into()),
                Operation::Renew,
                OutcomeUnknown,
            ),
            (
                EtcdError::InvalidArgs("empty endpoints".into()),
                Operation::Connect,
                InvalidInput,
            ),
            (
                status(Code::NotFound, "etcdserver: requested lease not found"),
                Operation::ForceRelease,
                Backend,
            ),
            (
                status(
                    Code::OutOfRange,
                    "etcdserver: mvcc: required revision has been compacted",
                ),
                Operation::Watch,
                Backend,
            ),
            (
                status(Code::PermissionDenied, "etcdserver: permission denied"),
                Operation::Acquire,
                Backend,
            ),
            (
                status(Code::InvalidArgument, "etcdserver: user name is empty"),
                Operation::Connect,
                Backend,
            ),
        ];
        for (err, op, kind) in table {
            let text = err.to_string();
            let got = classify(op, err);
            assert_eq!(got.kind(), kind, "{op}: {text} → {got}");
        }
    }

    #[test]
    fn lease_gone_is_lost_for_its_holder() {
        let lease = granted_lease(
            LockName::new("n").unwrap(),
            FencingToken::new(5),
            holder_id(9),
            Duration::from_secs(1),
            Instant::now(),
        );
        for err in [
            status(Code::NotFound, "etcdserver: requested lease not found"),
            EtcdError::LeaseKeepAliveError("lease not found".into()),
        ] {
            let got = classify_for(&lease, Operation::Renew, err);
            assert_eq!(got.kind(), ErrorKind::LeaseLost, "{got}");
        }
        let other = classify_for(
            &lease,
            Operation::Renew,
            status(Code::Unavailable, "etcdserver: no leader"),
        );
        assert_eq!(other.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn keeps_the_driver_error_as_source() {
        let err = classify(Operation::Acquire, status(Code::PermissionDenied, "denied"));
        assert!(err.source().unwrap().to_string().contains("denied"));
    }
}
