//! Fenced writes into etcd: a put that lands only if its token is at least the highest token
//! the key has admitted, checked and raised in the same txn.

use std::fmt;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse, TxnResponse};
use fencelock_core::{Error, Fence, FencedValue, FencingToken, Operation};

use crate::EtcdLeaseStore;
use crate::classify::{STORE, classify};
use crate::rpc::Rpc;

/// The suffix of the companion key that holds a fenced key's high-water token.
pub const FENCE_TOKEN_SUFFIX: &str = ".fence-token";

/// Digits of the stored token: 2^53 − 1 has 16, and zero-padding makes etcd's byte-wise value
/// comparison a numeric one.
const TOKEN_DIGITS: usize = 16;

/// The [`Fence`] on etcd (from [`EtcdLeaseStore::fence`]): fenced puts and reads through the
/// store's client.
///
/// [`Fence::write`] is one txn: if the companion key `<key>.fence-token`
/// ([`FENCE_TOKEN_SUFFIX`]) holds a token above the presented one, it reads that mark back
/// (the write is [`Error::StaleToken`] naming both); otherwise it puts the value at `key` and
/// the token (16 zero-padded digits) at the companion key. [`Fence::read`] reads both keys in
/// one txn, so value and mark always belong together. Keys are used as given (the store's
/// lock key prefix does not apply), so the value is a plain etcd key any client can read.
///
/// For a check inside your own txn, see [`EtcdLeaseStore::owner_compare`].
///
/// ```no_run
/// # async fn demo(token: fencelock_core::FencingToken) -> Result<(), fencelock_core::Error> {
/// use fencelock_core::Fence;
/// use fencelock_etcd::EtcdLeaseStore;
///
/// let store = EtcdLeaseStore::connect(["http://127.0.0.1:2379"]).await?;
/// let fence = store.fence();
/// fence.write("reports/nightly", token, b"done").await?; // Err(StaleToken) once superseded
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdFence {
    rpc: Rpc,
}

impl EtcdLeaseStore {
    /// A handle for fenced writes into this etcd, through the store's client and with its
    /// operation timeout.
    pub fn fence(&self) -> EtcdFence {
        EtcdFence {
            rpc: self.rpc.clone(),
        }
    }
}

impl EtcdFence {
    async fn txn(&self, op: Operation, txn: Txn) -> Result<TxnResponse, Error> {
        self.rpc.txn(txn).await.map_err(|e| classify(op, e))
    }
}

#[async_trait]
impl Fence for EtcdFence {
    fn backend(&self) -> &'static str {
        STORE
    }

    /// # Errors
    /// As [`Fence::write`]; also [`Error::InvalidInput`] for an empty key, a key ending in
    /// [`FENCE_TOKEN_SUFFIX`] (it would be another key's mark) or a token above 2^53 − 1. On
    /// [`Error::OutcomeUnknown`] the write may have landed.
    async fn write(&self, key: &str, token: FencingToken, value: &[u8]) -> Result<(), Error> {
        let op = Operation::FencedWrite;
        check_key(key)?;
        let encoded = encode(token)?;
        let mark = mark_key(key);
        // etcd has no `<=`: take the stale branch on `mark > token`. A missing mark compares
        // false, so the first write lands.
        let txn = Txn::new()
            .when([Compare::value(
                mark.clone(),
                CompareOp::Greater,
                encoded.clone(),
            )])
            .and_then([TxnOp::get(mark.clone(), None)])
            .or_else([
                TxnOp::put(key, value, None),
                TxnOp::put(mark, encoded, None),
            ]);
        let resp = self.txn(op, txn).await?;
        if !resp.succeeded() {
            return Ok(());
        }
        let stored = first_value(&resp, 0);
        let high_water = stored
            .as_deref()
            .and_then(decode)
            .ok_or_else(|| bad_mark(op, key))?;
        fencelock_core::metrics::stale_write_rejected(STORE);
        Err(Error::StaleToken {
            resource: key.to_owned(),
            presented: token,
            high_water,
        })
    }

    /// # Errors
    /// The store's errors; [`Error::InvalidInput`] as for [`Fence::write`]; a `Backend` error
    /// when only one of the key and its mark exists, or the mark is not a token (the keys were
    /// written without the fence).
    async fn read(&self, key: &str) -> Result<Option<FencedValue>, Error> {
        let op = Operation::FencedRead;
        check_key(key)?;
        let txn = Txn::new().and_then([TxnOp::get(key, None), TxnOp::get(mark_key(key), None)]);
        let resp = self.txn(op, txn).await?;
        match (first_value(&resp, 0), first_value(&resp, 1)) {
            (None, None) => Ok(None),
            (Some(value), Some(mark)) => {
                let token = decode(&mark).ok_or_else(|| bad_mark(op, key))?;
                Ok(Some(FencedValue::new(value, token)))
            }
            (value, _) => Err(Error::backend(
                STORE,
                op,
                format!(
                    "`{key}` is not a fenced key: it has {} but its mark `{key}{FENCE_TOKEN_SUFFIX}` {}; it was written without the fence, so delete both or write it through the fence",
                    if value.is_some() {
                        "a value"
                    } else {
                        "no value"
                    },
                    if value.is_some() {
                        "is missing"
                    } else {
                        "exists"
                    },
                ),
            )),
        }
    }
}

impl fmt::Debug for EtcdFence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds credentials; never print it.
        f.debug_struct("EtcdFence")
            .field("op_timeout", &self.rpc.timeout)
            .finish_non_exhaustive()
    }
}

/// A fenced key must be named, and must not be (what looks like) another key's mark.
fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid(
            "fenced key",
            "it is empty; name the resource",
        ));
    }
    if key.ends_with(FENCE_TOKEN_SUFFIX) {
        return Err(Error::invalid(
            "fenced key",
            format!(
                "`{key}` ends in `{FENCE_TOKEN_SUFFIX}`, the suffix of the keys holding marks; choose another name"
            ),
        ));
    }
    Ok(())
}

fn mark_key(key: &str) -> String {
    format!("{key}{FENCE_TOKEN_SUFFIX}")
}

/// The value of the first key the `i`-th get of the txn found.
fn first_value(resp: &TxnResponse, i: usize) -> Option<Vec<u8>> {
    match resp.op_responses().get(i) {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    }
}

fn bad_mark(op: Operation, key: &str) -> Error {
    Error::backend(
        STORE,
        op,
        format!(
            "the fence mark of `{key}` is not a token; fix or delete `{key}{FENCE_TOKEN_SUFFIX}`"
        ),
    )
}

fn encode(token: FencingToken) -> Result<String, Error> {
    if token.get() > FencingToken::MAX_EXACT {
        return Err(Error::invalid(
            "fencing token",
            format!("{token} is above 2^53-1, which no fencelock store grants"),
        ));
    }
    Ok(format!("{:0width$}", token.get(), width = TOKEN_DIGITS))
}

fn decode(stored: &[u8]) -> Option<FencingToken> {
    std::str::from_utf8(stored)
        .ok()?
        .parse::<u64>()
        .ok()
        .map(FencingToken::new)
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;

    use super::*;

    #[test]
    fn encoding_orders_like_numbers() {
        let tokens = [0, 1, 9, 10, 99, 12_345, FencingToken::MAX_EXACT];
        let encoded: Vec<String> = tokens
            .iter()
            .map(|t| encode(FencingToken::new(*t)).unwrap())
            .collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "{encoded:?}");
        assert!(encoded.iter().all(|e| e.len() == TOKEN_DIGITS));
        for (t, e) in tokens.iter().zip(&encoded) {
            assert_eq!(decode(e.as_bytes()), Some(FencingToken::new(*t)));
        }
        assert!(encode(FencingToken::new(FencingToken::MAX_EXACT + 1)).is_err());
        assert_eq!(decode(b"nope"), None);
    }

    #[test]
    fn keys_that_cannot_be_fenced_are_invalid_input() {
        for key in ["", "a.fence-token", ".fence-token"] {
            assert_eq!(
                check_key(key).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{key:?}"
            );
        }
        for key in ["a", "a.fence-token/b", "nul\0key", "a.fence-tokens"] {
            assert!(check_key(key).is_ok(), "{key:?}");
        }
    }
}
