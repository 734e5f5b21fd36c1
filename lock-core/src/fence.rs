//! Fencing for downstream stores: admit a write iff its token is at least the highest accepted.
//!
//! The pattern works on any store that has a conditional write: keep a high-water mark beside
//! the data and make "compare the token, write the data, raise the mark" one atomic step.
//! In SQL: `UPDATE t SET v = $v, fence_token = $t WHERE id = $id AND fence_token <= $t`; in
//! Redis: one Lua script; in etcd: a txn comparing the stored token. Equal tokens are admitted
//! (one holder writes many times); lower ones never.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::lock;
use crate::{Error, FencingToken};

/// An in-memory fence: one high-water mark per resource.
///
/// Used in-process (guard an in-memory resource, or a store that is written only through this
/// process) and as the oracle of the conformance and fault-injection tests.
#[derive(Debug, Default)]
pub struct FenceGate {
    marks: Mutex<HashMap<String, FencingToken>>,
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
        self.write(resource, token, || ())
    }

    /// Admits `token` and runs `write` while the gate is held, so that the check, the write
    /// and the raised mark form one step. `write` runs only if the token is admitted.
    ///
    /// # Errors
    /// [`Error::StaleToken`] when `token` is below the mark; `write` is not run.
    pub fn write<T>(
        &self,
        resource: &str,
        token: FencingToken,
        write: impl FnOnce() -> T,
    ) -> Result<T, Error> {
        let mut marks = lock(&self.marks);
        if let Some(&high_water) = marks.get(resource)
            && token < high_water
        {
            crate::metrics::stale_write_rejected("memory");
            return Err(Error::StaleToken {
                resource: resource.to_owned(),
                presented: token,
                high_water,
            });
        }
        let out = write();
        marks.insert(resource.to_owned(), token);
        Ok(out)
    }

    /// The highest token admitted for `resource`.
    pub fn high_water(&self, resource: &str) -> Option<FencingToken> {
        lock(&self.marks).get(resource).copied()
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
        assert!(gate.write("r", t(2), || ran = true).is_err());
        assert!(!ran);
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
