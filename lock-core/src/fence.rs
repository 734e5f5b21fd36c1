//! Fencing for downstream stores: admit a write iff its token is at least the highest accepted.
//!
//! The pattern works on any store that has a conditional write: keep a high-water mark beside
//! the data and make "compare the token, write the data, raise the mark" one atomic step.
//! In SQL: `UPDATE t SET v = $v, fence_token = $t WHERE id = $id AND fence_token <= $t`; in
//! Redis: one Lua script; in etcd: a txn comparing the stored token. Equal tokens are admitted
//! (one holder writes many times); lower ones never.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::lock;
use crate::{Error, FencingToken};

/// What a fenced read returns: the value last admitted under a key, and the key's high-water
/// mark (the highest token admitted, which wrote that value).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencedValue {
    /// The value of the last admitted write.
    pub value: Vec<u8>,
    /// The high-water mark: the highest token admitted for the key.
    pub token: FencingToken,
}

impl FencedValue {
    /// A value with its mark.
    pub fn new(value: impl Into<Vec<u8>>, token: FencingToken) -> Self {
        Self {
            value: value.into(),
            token,
        }
    }
}

/// A downstream store that rejects stale writes: the same two verbs on every backend
/// ([`FenceGate`] in memory, `RedisFence`, `PgFence`, `EtcdFence`), in the same argument order.
///
/// A write carries the writer's fencing token and is admitted iff the token is at least the
/// key's high-water mark; admitting it stores the value and raises the mark **in one atomic
/// step** on the store, so no lower token can land after a higher one. Equal tokens are
/// admitted (one holder writes many times with its token); lower ones never. Every `# Behavior`
/// bullet is a case of `fencelock-conformance`'s `fence_suite!` of the same name.
#[async_trait]
pub trait Fence: Send + Sync + fmt::Debug {
    /// A short name of the store for errors and metrics (`"memory"`, `"redis"`, …).
    fn backend(&self) -> &'static str;

    /// Writes `value` under `key` iff `token` is at least the key's high-water mark, raising
    /// the mark to `token` in the same atomic step.
    ///
    /// # Errors
    /// [`Error::StaleToken`] naming both tokens when `token` is below the mark (nothing is
    /// written); [`Error::InvalidInput`] for a key or value the store cannot hold (nothing is
    /// sent); `Unavailable` / `OutcomeUnknown` when the store cannot be reached or did not
    /// answer — never `Ok` for a write that was not admitted.
    ///
    /// # Behavior
    /// - `fence_equal_token_admitted`: a second write with the same token is admitted and
    ///   replaces the value.
    /// - `fence_lower_token_rejected`: a lower token is `StaleToken` naming both tokens, and
    ///   neither the value nor the mark changes.
    /// - `fence_higher_token_raises_mark`: a higher token is admitted and becomes the mark, so
    ///   the previous token is now stale.
    /// - `fence_concurrent_writers_never_regress`: of concurrent writers with interleaved
    ///   tokens, no write is admitted with a token below one already admitted, and the value
    ///   left is the highest token's.
    /// - `fence_hostile_keys_and_values`: keys with quotes, Lua and SQL breakers, hash-tag
    ///   braces, control characters and non-ASCII text, and values from empty to 1 MiB of
    ///   arbitrary bytes round-trip exactly (or are `InvalidInput`), each key its own.
    /// - `fence_dead_store_never_accepted`: with the store down, a write is `Unavailable` or
    ///   `OutcomeUnknown`, never `Ok`.
    async fn write(&self, key: &str, token: FencingToken, value: &[u8]) -> Result<(), Error>;

    /// The value and high-water mark of `key`; `None` if nothing was ever admitted under it.
    ///
    /// # Behavior
    /// - `fence_read_after_rejected_write_returns_accepted`: after a rejected write, the read
    ///   returns the value and token of the last admitted one; a key never written is `None`.
    async fn read(&self, key: &str) -> Result<Option<FencedValue>, Error>;
}

/// An in-memory fence: one high-water mark (and the last admitted value) per resource.
///
/// Used in-process (guard an in-memory resource, or a store that is written only through this
/// process) and as the oracle of the conformance and fault-injection tests. It is a [`Fence`];
/// [`FenceGate::admit`] and [`FenceGate::admit_with`] fence writes that go elsewhere.
#[derive(Debug, Default)]
pub struct FenceGate {
    marks: Mutex<HashMap<String, Mark>>,
}

#[derive(Debug)]
struct Mark {
    token: FencingToken,
    value: Vec<u8>,
}

impl FenceGate {
    /// A gate that has admitted nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits `token` for `resource` iff it is ≥ the resource's mark, raising the mark in the
    /// same step.
    ///
    /// # Errors
    /// [`Error::StaleToken`] naming both tokens when `token` is below the mark.
    pub fn admit(&self, resource: &str, token: FencingToken) -> Result<(), Error> {
        self.admit_with(resource, token, || ())
    }

    /// Admits `token` and runs `write` while the gate is held, so that the check, the write
    /// and the raised mark form one step. `write` runs only if the token is admitted.
    ///
    /// # Errors
    /// [`Error::StaleToken`] when `token` is below the mark; `write` is not run.
    pub fn admit_with<T>(
        &self,
        resource: &str,
        token: FencingToken,
        write: impl FnOnce() -> T,
    ) -> Result<T, Error> {
        self.admit_then(resource, token, |_| write())
    }

    /// The one admission step: check, run `write` on the stored value, raise the mark.
    fn admit_then<T>(
        &self,
        resource: &str,
        token: FencingToken,
        write: impl FnOnce(&mut Vec<u8>) -> T,
    ) -> Result<T, Error> {
        let mut marks = lock(&self.marks);
        if let Some(mark) = marks.get(resource)
            && token < mark.token
        {
            crate::metrics::stale_write_rejected("memory");
            return Err(Error::StaleToken {
                resource: resource.to_owned(),
                presented: token,
                high_water: mark.token,
            });
        }
        let mark = marks.entry(resource.to_owned()).or_insert(Mark {
            token,
            value: Vec::new(),
        });
        mark.token = token;
        Ok(write(&mut mark.value))
    }

    /// The highest token admitted for `resource`.
    pub fn high_water(&self, resource: &str) -> Option<FencingToken> {
        lock(&self.marks).get(resource).map(|mark| mark.token)
    }
}

#[async_trait]
impl Fence for FenceGate {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn write(&self, key: &str, token: FencingToken, value: &[u8]) -> Result<(), Error> {
        self.admit_then(key, token, |stored| {
            stored.clear();
            stored.extend_from_slice(value);
        })
    }

    async fn read(&self, key: &str) -> Result<Option<FencedValue>, Error> {
        Ok(lock(&self.marks)
            .get(key)
            .map(|mark| FencedValue::new(mark.value.clone(), mark.token)))
    }
}

/// A value guarded by its own fence: writes carry a token and stale ones are rejected.
#[derive(Debug, Default)]
pub struct Fenced<T> {
    inner: Mutex<(Option<FencingToken>, T)>,
}

impl<T> Fenced<T> {
    /// Wraps `value`; no token has been accepted yet.
    pub fn new(value: T) -> Self {
        Self {
            inner: Mutex::new((None, value)),
        }
    }

    /// Runs `update` on the value iff `token` ≥ the highest token accepted so far.
    ///
    /// # Errors
    /// [`Error::StaleToken`] when `token` is stale; the value is untouched.
    pub fn write<R>(
        &self,
        token: FencingToken,
        update: impl FnOnce(&mut T) -> R,
    ) -> Result<R, Error> {
        let mut inner = lock(&self.inner);
        if let Some(high_water) = inner.0
            && token < high_water
        {
            crate::metrics::stale_write_rejected("memory");
            return Err(Error::StaleToken {
                resource: std::any::type_name::<T>().to_owned(),
                presented: token,
                high_water,
            });
        }
        inner.0 = Some(token);
        Ok(update(&mut inner.1))
    }

    /// Reads the value.
    pub fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(&lock(&self.inner).1)
    }

    /// The highest token accepted.
    pub fn high_water(&self) -> Option<FencingToken> {
        lock(&self.inner).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn t(n: u64) -> FencingToken {
        FencingToken::new(n)
    }

    #[test]
    fn admits_equal_and_higher_rejects_lower() {
        let gate = FenceGate::new();
        gate.admit("r", t(5)).unwrap();
        gate.admit("r", t(5)).unwrap();
        gate.admit("r", t(7)).unwrap();
        let err = gate.admit("r", t(6)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StaleToken);
        assert!(
            err.to_string()
                .contains("token 6 is below the accepted token 7"),
            "{err}"
        );
        assert_eq!(gate.high_water("r"), Some(t(7)));
        // Resources are independent.
        gate.admit("other", t(1)).unwrap();
    }

    #[test]
    fn rejected_write_does_not_run() {
        let gate = FenceGate::new();
        gate.admit("r", t(3)).unwrap();
        let mut ran = false;
        assert!(gate.admit_with("r", t(2), || ran = true).is_err());
        assert!(!ran);
    }

    #[tokio::test]
    async fn the_gate_is_a_fence() {
        let gate = FenceGate::new();
        assert_eq!(Fence::read(&gate, "k").await.unwrap(), None);
        Fence::write(&gate, "k", t(4), b"first").await.unwrap();
        let err = Fence::write(&gate, "k", t(3), b"stale").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StaleToken);
        assert_eq!(
            Fence::read(&gate, "k").await.unwrap(),
            Some(FencedValue::new(b"first".to_vec(), t(4)))
        );
        gate.admit("k", t(5)).unwrap();
        assert_eq!(
            Fence::read(&gate, "k").await.unwrap(),
            Some(FencedValue::new(b"first".to_vec(), t(5))),
            "admit raises the mark and keeps the value"
        );
    }

    #[test]
    fn fenced_value_rejects_stale_updates() {
        let v = Fenced::new(0u64);
        v.write(t(2), |x| *x += 1).unwrap();
        assert!(v.write(t(1), |x| *x += 100).is_err());
        assert_eq!(v.read(|x| *x), 1);
        assert_eq!(v.high_water(), Some(t(2)));
    }
}
