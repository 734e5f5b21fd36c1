//! Fenced writes into etcd: a put that lands only if its token is at least the highest token
//! the resource has accepted, checked and raised in the same txn.

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use fencelock_core::{Error, FencingToken, Operation};

use crate::EtcdLeaseStore;
use crate::classify::{STORE, classify};

/// The suffix of the companion key that holds a fenced key's high-water token.
pub const FENCE_TOKEN_SUFFIX: &str = ".fence-token";

/// Digits of the stored token: 2^53 − 1 has 16, and zero-padding makes etcd's byte-wise value
/// comparison a numeric one.
const TOKEN_DIGITS: usize = 16;

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

impl EtcdLeaseStore {
    /// Puts `value` at `key` iff `token` is at least the token of the last accepted write to
    /// `key`, and records `token` as the new high-water mark — one etcd txn.
    ///
    /// The mark lives in the companion key `<key>.fence-token` ([`FENCE_TOKEN_SUFFIX`]) as a
    /// 16-digit decimal. Equal tokens are admitted (one holder writes many times); lower ones
    /// never. `key` is used as given: the store's lock key prefix does not apply.
    ///
    /// # Errors
    /// [`Error::StaleToken`] naming both tokens when a newer holder already wrote;
    /// [`Error::InvalidInput`] for a token above 2^53 − 1; the store's errors otherwise
    /// (on [`Error::OutcomeUnknown`] the write may have landed).
    pub async fn fenced_put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        token: FencingToken,
    ) -> Result<(), Error> {
        let key = key.into();
        let encoded = encode(token)?;
        let mut mark = key.clone();
        mark.extend_from_slice(FENCE_TOKEN_SUFFIX.as_bytes());
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
                TxnOp::put(key.clone(), value, None),
                TxnOp::put(mark, encoded, None),
            ]);
        let resp = self
            .rpc
            .txn(txn)
            .await
            .map_err(|e| classify(Operation::FencedWrite, e))?;
        if !resp.succeeded() {
            return Ok(());
        }
        let stored = match resp.op_responses().first() {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        };
        let high_water = stored.as_deref().and_then(decode).ok_or_else(|| {
            Error::backend(
                STORE,
                Operation::FencedWrite,
                format!(
                    "the fence mark of `{}` is not a token; fix or delete `{}{FENCE_TOKEN_SUFFIX}`",
                    String::from_utf8_lossy(&key),
                    String::from_utf8_lossy(&key)
                ),
            )
        })?;
        Err(Error::StaleToken {
            resource: String::from_utf8_lossy(&key).into_owned(),
            presented: token,
            high_water,
        })
    }

    /// The value at a fenced `key` and the token of the write that put it, if any.
    ///
    /// # Errors
    /// The store's errors.
    pub async fn fenced_get(
        &self,
        key: impl Into<Vec<u8>>,
    ) -> Result<Option<(Vec<u8>, FencingToken)>, Error> {
        let key = key.into();
        let mut mark = key.clone();
        mark.extend_from_slice(FENCE_TOKEN_SUFFIX.as_bytes());
        let txn = Txn::new().and_then([TxnOp::get(key, None), TxnOp::get(mark, None)]);
        let resp = self
            .rpc
            .txn(txn)
            .await
            .map_err(|e| classify(Operation::Inspect, e))?;
        let ops = resp.op_responses();
        let first_value = |i: usize| match ops.get(i) {
            Some(TxnOpResponse::Get(get)) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        };
        Ok(first_value(0).zip(first_value(1).as_deref().and_then(decode)))
    }
}

#[cfg(test)]
mod tests {
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
}
