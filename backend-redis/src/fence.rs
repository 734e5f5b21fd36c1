//! Fenced writes into Redis: a value that only a current (or newer) lease holder can change.
//!
//! The decoding and checks here are shared with Redlock's fence (`redlock/fence.rs`), which
//! runs the same kind of script on every server.

use std::fmt;

use async_trait::async_trait;
use fencelock_core::{Error, Fence, FencedValue, FencingToken, Operation};
use redis::Value;
use redis::aio::{ConnectionLike, ConnectionManager};

use crate::classify::{STORE, classify, unexpected_reply};
use crate::reply::{int, items};
use crate::scripts::{Call, SCRIPTS};

/// The [`Fence`] on one Redis server: fenced writes into Redis hashes.
///
/// A fenced key is a hash with two fields: `value` and `fence_token` (the high-water mark,
/// the highest token admitted). [`Fence::write`] compares the token, writes the value and
/// raises the mark in one Lua script (`fenced_set.lua`, also usable on its own as
/// [`SCRIPTS.fenced_set`](crate::scripts::Scripts::fenced_set)), so a writer whose lease was
/// taken over can never overwrite the newer holder's data. Equal tokens are admitted (one
/// holder writes many times); lower ones never.
///
/// Keys are yours: they do not get the store's prefix, and any bytes (NUL included) are
/// fine. Read them with [`Fence::read`] or `HGET <key> value`.
///
/// ```no_run
/// # async fn demo(token: fencelock_core::FencingToken) -> Result<(), fencelock_core::Error> {
/// use fencelock_core::Fence;
/// use fencelock_redis::RedisLeaseStore;
///
/// let store = RedisLeaseStore::connect("redis://127.0.0.1:6379").await?;
/// let fence = store.fence();
/// fence.write("jobs:42:state", token, b"done").await?; // Err(StaleToken) once superseded
/// let state = fence.read("jobs:42:state").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisFence<C = ConnectionManager> {
    conn: C,
}

impl<C> RedisFence<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Fenced writes over `conn` (any cloneable connection: a `ConnectionManager`, a
    /// `MultiplexedConnection`, …). [`RedisLeaseStore::fence`](crate::RedisLeaseStore::fence)
    /// gives one on the store's connection.
    pub fn new(conn: C) -> Self {
        Self { conn }
    }

    async fn run(&self, op: Operation, call: &Call) -> Result<Value, Error> {
        let mut conn = self.conn.clone();
        call.run(&mut conn).await.map_err(|e| classify(op, e))
    }
}

#[async_trait]
impl<C> Fence for RedisFence<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn backend(&self) -> &'static str {
        STORE
    }

    /// # Errors
    /// As [`Fence::write`]; also [`Error::InvalidInput`] for an empty key or a token above
    /// [`FencingToken::MAX_EXACT`] (Lua compares numbers as doubles), and a `Backend` error
    /// when `key` holds something other than a hash.
    async fn write(&self, key: &str, token: FencingToken, value: &[u8]) -> Result<(), Error> {
        check(key, token)?;
        let call = Call::new(&SCRIPTS.fenced_set, &[key])
            .arg(token.get())
            .arg(value);
        match verdict(self.run(Operation::FencedWrite, &call).await?)? {
            None => Ok(()),
            Some(high_water) => Err(stale(STORE, key, token, high_water)),
        }
    }

    /// # Errors
    /// `Unavailable` / `OutcomeUnknown` for connection trouble; `InvalidInput` for an empty
    /// key; a `Backend` error when `key` holds something other than a fenced hash.
    async fn read(&self, key: &str) -> Result<Option<FencedValue>, Error> {
        check_key(key)?;
        let call = Call::new(&SCRIPTS.fenced_get, &[key]);
        let stored = stored(self.run(Operation::FencedRead, &call).await?)?;
        Ok(stored.map(|s| s.value))
    }
}

impl<C> fmt::Debug for RedisFence<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFence").finish_non_exhaustive()
    }
}

/// What one server holds under a fenced key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) value: FencedValue,
    /// The stamp of the write that left it (Redlock); 0 when written without one.
    pub(crate) stamp: u64,
}

impl Stored {
    /// The order of writes: token first, then (among writes of one token) the stamp.
    pub(crate) fn order(&self) -> (FencingToken, u64) {
        (self.value.token, self.stamp)
    }
}

/// Rejects an empty key: a resource needs a name.
pub(crate) fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid(
            "fenced key",
            "it is empty; name the resource",
        ));
    }
    Ok(())
}

/// Checks the key and that Lua can compare `token` exactly.
pub(crate) fn check(key: &str, token: FencingToken) -> Result<(), Error> {
    check_key(key)?;
    if token.get() > FencingToken::MAX_EXACT {
        return Err(Error::invalid(
            "fencing token",
            format!(
                "{token} is above 2^53 - 1, which Lua cannot compare exactly; tokens from fencelock never are"
            ),
        ));
    }
    Ok(())
}

/// The stale-token error (counted in the metrics).
pub(crate) fn stale(
    backend: &'static str,
    key: &str,
    presented: FencingToken,
    high_water: FencingToken,
) -> Error {
    fencelock_core::metrics::stale_write_rejected(backend);
    Error::StaleToken {
        resource: key.to_owned(),
        presented,
        high_water,
    }
}

/// A fenced write's answer, `{1}` or `{0, high-water mark}`: `None` when admitted,
/// `Some(mark)` when stale.
pub(crate) fn verdict(value: Value) -> Result<Option<FencingToken>, Error> {
    let op = Operation::FencedWrite;
    match items(op, value)?.as_slice() {
        [Value::Int(1)] => Ok(None),
        [Value::Int(0), mark] => token(op, mark).map(Some),
        other => Err(unexpected_reply(op, format!("{other:?}"))),
    }
}

/// A fenced read's answer, `{value, fence_token, fence_stamp}` with missing fields nil:
/// `None` when the key holds nothing.
pub(crate) fn stored(value: Value) -> Result<Option<Stored>, Error> {
    let op = Operation::FencedRead;
    let fields = items(op, value)?;
    let field = |i: usize| fields.get(i).filter(|v| !matches!(v, Value::Nil));
    match (field(0), field(1), field(2)) {
        (None, None, None) => Ok(None),
        (Some(Value::BulkString(bytes)), Some(mark), stamp) => Ok(Some(Stored {
            value: FencedValue::new(bytes.clone(), token(op, mark)?),
            stamp: stamp.map_or(Ok(0), |s| token(op, s).map(FencingToken::get))?,
        })),
        _ => Err(unexpected_reply(
            op,
            format!("{fields:?} is not a fenced hash (fields `value` and `fence_token`)"),
        )),
    }
}

/// A token (or stamp) the server returned: a non-negative integer.
fn token(op: Operation, value: &Value) -> Result<FencingToken, Error> {
    int(value)
        .and_then(|n| u64::try_from(n).ok())
        .map(FencingToken::new)
        .ok_or_else(|| unexpected_reply(op, format!("fence token {value:?}")))
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;

    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_the_fence_scripts() {
        assert_eq!(verdict(Value::Array(vec![Value::Int(1)])).unwrap(), None);
        assert_eq!(
            verdict(Value::Array(vec![Value::Int(0), bulk("9")])).unwrap(),
            Some(FencingToken::new(9))
        );
        assert_eq!(
            stored(Value::Array(vec![Value::Nil, Value::Nil, Value::Nil])).unwrap(),
            None
        );
        assert_eq!(stored(Value::Array(vec![])).unwrap(), None);
        let plain = stored(Value::Array(vec![bulk("v\0"), bulk("7"), Value::Nil])).unwrap();
        assert_eq!(
            plain,
            Some(Stored {
                value: FencedValue::new(b"v\0".to_vec(), FencingToken::new(7)),
                stamp: 0
            })
        );
        let stamped = stored(Value::Array(vec![bulk(""), bulk("7"), bulk("12")])).unwrap();
        assert_eq!(stamped.map(|s| s.order()), Some((FencingToken::new(7), 12)));
    }

    #[test]
    fn foreign_shapes_are_backend_errors() {
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Int(2)]),
            Value::Array(vec![Value::Int(0), bulk("-1")]),
        ] {
            assert_eq!(verdict(bad).unwrap_err().kind(), ErrorKind::Backend);
        }
        for bad in [
            Value::Array(vec![bulk("v"), Value::Nil, Value::Nil]),
            Value::Array(vec![Value::Nil, bulk("3"), Value::Nil]),
            Value::Array(vec![bulk("v"), bulk("x"), Value::Nil]),
            Value::Okay,
        ] {
            assert_eq!(stored(bad).unwrap_err().kind(), ErrorKind::Backend);
        }
    }

    #[test]
    fn bad_input_is_refused_before_sending() {
        let t = FencingToken::new(1);
        assert_eq!(check("", t).unwrap_err().kind(), ErrorKind::InvalidInput);
        let huge = FencingToken::new(FencingToken::MAX_EXACT + 1);
        assert_eq!(
            check("k", huge).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(check("k\0with NUL", t).is_ok());
    }
}
