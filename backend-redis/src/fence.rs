//! Fenced writes into Redis: a value that only a current (or newer) lease holder can change.

use fencelock_core::{Error, FencingToken, Operation};
use redis::aio::{ConnectionLike, ConnectionManager};

use crate::classify::classify;
use crate::reply;
use crate::scripts::{Call, SCRIPTS};

/// Fenced writes into Redis hashes.
///
/// A fenced resource is a hash with two fields: `value` and `fence_token` (the highest token
/// accepted). [`RedisFence::set`] compares the token, writes the value and raises the mark in
/// one script, so a writer whose lease was taken over can never overwrite the newer holder's
/// data. Equal tokens are admitted (one holder writes many times); lower ones never.
///
/// Resource keys are yours: they do not get the store's prefix. Read them with
/// [`RedisFence::get`] or `HGET <key> value`.
#[derive(Clone, Debug)]
pub struct RedisFence<C = ConnectionManager> {
    conn: C,
}

/// A fenced value and the token that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencedValue {
    /// The value bytes.
    pub value: Vec<u8>,
    /// The highest token accepted for the resource.
    pub token: FencingToken,
}

impl<C> RedisFence<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Fenced writes over `conn`.
    pub fn new(conn: C) -> Self {
        Self { conn }
    }

    /// Sets `key`'s value iff `token` is at least the highest token accepted for `key`, raising
    /// that mark to `token` in the same step.
    ///
    /// # Errors
    /// - [`Error::StaleToken`] naming both tokens when `token` is below the mark; nothing is
    ///   written. The writer's lease was superseded: stop writing with that token.
    /// - [`Error::InvalidInput`] for an empty key or a token above [`FencingToken::MAX_EXACT`].
    /// - A `Backend` error when `key` holds something other than a hash, and the usual
    ///   `Unavailable` / `OutcomeUnknown` for connection trouble.
    pub async fn set(
        &self,
        key: &str,
        token: FencingToken,
        value: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        check(key, token)?;
        let call = Call::new(&SCRIPTS.fenced_set, &[key])
            .arg(token.get())
            .arg(value.as_ref());
        let mut conn = self.conn.clone();
        let reply = call
            .run(&mut conn)
            .await
            .map_err(|e| classify(Operation::FencedWrite, e))?;
        match reply::fenced(reply)? {
            None => Ok(()),
            Some(high_water) => Err(Error::StaleToken {
                resource: key.to_owned(),
                presented: token,
                high_water,
            }),
        }
    }

    /// Reads `key`'s fenced value and its mark; `None` if nothing was written yet.
    ///
    /// # Errors
    /// A `Backend` error when `key` holds something other than a fenced hash, and the usual
    /// `Unavailable` / `OutcomeUnknown` for connection trouble.
    pub async fn get(&self, key: &str) -> Result<Option<FencedValue>, Error> {
        let op = Operation::FencedWrite;
        let mut conn = self.conn.clone();
        let (value, token): (Option<Vec<u8>>, Option<u64>) = redis::cmd("HMGET")
            .arg(key)
            .arg("value")
            .arg("fence_token")
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(op, e))?;
        Ok(match (value, token) {
            (Some(value), Some(token)) => Some(FencedValue {
                value,
                token: FencingToken::new(token),
            }),
            _ => None,
        })
    }
}

fn check(key: &str, token: FencingToken) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid(
            "fenced key",
            "it is empty; name the resource",
        ));
    }
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
