//! Decoding what the scripts return. Anything else is a typed backend error, never a panic.

use fencelock_core::{Error, Operation, OwnerLabel};
use redis::Value;

use crate::classify::unexpected_reply;
use crate::grant::Grant;

/// The acquire script's answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The name was free and is now ours.
    Granted(Grant),
    /// Someone holds the name.
    Held,
}

/// The answer of a script that compared a grant before acting (renew, release).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Compared {
    /// The grant still held; the script acted.
    Done,
    /// The grant no longer holds; the current one, if any.
    Lost(Option<Grant>),
}

pub(crate) fn items(op: Operation, value: Value) -> Result<Vec<Value>, Error> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(unexpected_reply(op, format!("{other:?}"))),
    }
}

pub(crate) fn grant(op: Operation, value: &Value) -> Result<Grant, Error> {
    labeled_grant(op, value).map(|(grant, _)| grant)
}

/// A stored grant value and its owner label.
pub(crate) fn labeled_grant(
    op: Operation,
    value: &Value,
) -> Result<(Grant, Option<OwnerLabel>), Error> {
    let text = match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s.as_str()),
        _ => None,
    };
    text.and_then(|t| Some((Grant::parse(t)?, crate::grant::label_of(t))))
        .ok_or_else(|| {
            unexpected_reply(
                op,
                format!("{value:?} is not a \"<holder>:<token>[:<label>]\" grant"),
            )
        })
}

pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

/// `{1, grant}` or `{0, pttl}`.
pub(crate) fn acquired(value: Value) -> Result<Acquired, Error> {
    let op = Operation::Acquire;
    match items(op, value)?.as_slice() {
        [Value::Int(1), g] => Ok(Acquired::Granted(grant(op, g)?)),
        [Value::Int(0), _] => Ok(Acquired::Held),
        other => Err(unexpected_reply(op, format!("{other:?}"))),
    }
}

/// `{1}` or `{0, current grant or nil}`.
pub(crate) fn compared(op: Operation, value: Value) -> Result<Compared, Error> {
    match items(op, value)?.as_slice() {
        [Value::Int(1)] => Ok(Compared::Done),
        [Value::Int(0)] | [Value::Int(0), Value::Nil] => Ok(Compared::Lost(None)),
        [Value::Int(0), g] => Ok(Compared::Lost(Some(grant(op, g)?))),
        other => Err(unexpected_reply(op, format!("{other:?}"))),
    }
}

/// A grant as `inspect` reads it: the grant, its owner label, its remaining milliseconds.
pub(crate) type Inspected = (Grant, Option<OwnerLabel>, u64);

/// `{grant, pttl}` or `{}`; the remaining time in milliseconds.
pub(crate) fn inspected(value: Value) -> Result<Option<Inspected>, Error> {
    let op = Operation::Inspect;
    match items(op, value)?.as_slice() {
        [] => Ok(None),
        [g, pttl] => {
            let (grant, label) = labeled_grant(op, g)?;
            let pttl = int(pttl).ok_or_else(|| unexpected_reply(op, format!("PTTL {pttl:?}")))?;
            // -1 (no expiry) cannot come from our scripts; report it as "no time left"
            // rather than as forever, so tools never trust a grant without a TTL.
            Ok(Some((grant, label, u64::try_from(pttl).unwrap_or(0))))
        }
        other => Err(unexpected_reply(op, format!("{other:?}"))),
    }
}

/// `{grant}` or `{}`.
pub(crate) fn broken(value: Value) -> Result<Option<Grant>, Error> {
    let op = Operation::ForceRelease;
    match items(op, value)?.as_slice() {
        [] => Ok(None),
        [g] => Ok(Some(grant(op, g)?)),
        other => Err(unexpected_reply(op, format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use fencelock_core::backend::holder_id;
    use fencelock_core::{ErrorKind, FencingToken};

    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_every_script_shape() {
        let g = Grant {
            holder: holder_id(7),
            token: FencingToken::new(42),
        };
        let enc = bulk(&g.encode());
        assert_eq!(
            acquired(Value::Array(vec![Value::Int(1), enc.clone()])).unwrap(),
            Acquired::Granted(g)
        );
        assert_eq!(
            acquired(Value::Array(vec![Value::Int(0), Value::Int(900)])).unwrap(),
            Acquired::Held
        );
        let op = Operation::Renew;
        assert_eq!(
            compared(op, Value::Array(vec![Value::Int(1)])).unwrap(),
            Compared::Done
        );
        assert_eq!(
            compared(op, Value::Array(vec![Value::Int(0)])).unwrap(),
            Compared::Lost(None)
        );
        assert_eq!(
            compared(op, Value::Array(vec![Value::Int(0), enc.clone()])).unwrap(),
            Compared::Lost(Some(g))
        );
        assert_eq!(inspected(Value::Array(vec![])).unwrap(), None);
        assert_eq!(
            inspected(Value::Array(vec![enc.clone(), Value::Int(1500)])).unwrap(),
            Some((g, None, 1500))
        );
        assert_eq!(broken(Value::Array(vec![enc])).unwrap(), Some(g));
    }

    #[test]
    fn foreign_shapes_are_backend_errors() {
        for bad in [
            Value::Nil,
            Value::Okay,
            Value::Array(vec![Value::Int(1), bulk("not a grant")]),
            Value::Array(vec![Value::Int(2)]),
        ] {
            let err = acquired(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
        }
    }
}
