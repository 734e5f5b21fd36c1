//! Decoding what the Redlock scripts return. Anything else is a typed backend error.

use fencelock_core::{Error, FencingToken, Operation};
use redis::Value;

use crate::classify::unexpected_reply;
use crate::grant::Grant;
use crate::reply::{grant, int, items};

/// One server's answer to phase 1.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Read {
    /// The grant the server holds, if any.
    pub(crate) held: Option<Grant>,
    /// The highest token the server has seen for the name (floored at its clock when new).
    pub(crate) counter: u64,
}

/// One server's answer to phase 2.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The lock is set with our proposal.
    Set,
    /// Someone's grant holds here.
    Held(Grant),
    /// The server has seen a token at or above our proposal.
    Stale(u64),
}

fn token(op: Operation, value: &Value) -> Result<u64, Error> {
    int(value)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n <= FencingToken::MAX_EXACT)
        .ok_or_else(|| unexpected_reply(op, format!("token counter {value:?}")))
}

/// `{grant or nil, counter}`.
pub(crate) fn read(value: Value) -> Result<Read, Error> {
    let op = Operation::Acquire;
    match items(op, value)?.as_slice() {
        [Value::Nil, counter] => Ok(Read {
            held: None,
            counter: token(op, counter)?,
        }),
        [g, counter] => Ok(Read {
            held: Some(grant(op, g)?),
            counter: token(op, counter)?,
        }),
        // Lua's `false` in the first slot ends a Lua table early in some Redis versions.
        [counter] => Ok(Read {
            held: None,
            counter: token(op, counter)?,
        }),
        other => Err(unexpected_reply(op, format!("{other:?}"))),
    }
}

/// `{1}`, `{0, grant}` or `{2, counter}`.
pub(crate) fn written(value: Value) -> Result<Written, Error> {
    let op = Operation::Acquire;
    match items(op, value)?.as_slice() {
        [Value::Int(1)] => Ok(Written::Set),
        [Value::Int(0), g] => Ok(Written::Held(grant(op, g)?)),
        [Value::Int(2), counter] => Ok(Written::Stale(token(op, counter)?)),
        other => Err(unexpected_reply(op, format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use fencelock_core::ErrorKind;
    use fencelock_core::backend::holder_id;

    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_both_phases() {
        let g = Grant {
            holder: holder_id(9),
            token: FencingToken::new(77),
        };
        assert_eq!(
            read(Value::Array(vec![Value::Nil, bulk("1700000000000000")])).unwrap(),
            Read {
                held: None,
                counter: 1_700_000_000_000_000
            }
        );
        assert_eq!(
            read(Value::Array(vec![bulk(&g.encode()), bulk("77")])).unwrap(),
            Read {
                held: Some(g),
                counter: 77
            }
        );
        assert_eq!(
            written(Value::Array(vec![Value::Int(1)])).unwrap(),
            Written::Set
        );
        assert_eq!(
            written(Value::Array(vec![Value::Int(0), bulk(&g.encode())])).unwrap(),
            Written::Held(g)
        );
        assert_eq!(
            written(Value::Array(vec![Value::Int(2), bulk("80")])).unwrap(),
            Written::Stale(80)
        );
    }

    #[test]
    fn foreign_shapes_are_backend_errors() {
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Nil, bulk("-1")]),
            Value::Array(vec![Value::Nil, bulk("9007199254740992")]),
            Value::Array(vec![bulk("not a grant"), bulk("1")]),
        ] {
            assert_eq!(read(bad).unwrap_err().kind(), ErrorKind::Backend);
        }
        for bad in [Value::Array(vec![Value::Int(3)]), Value::Okay] {
            assert_eq!(written(bad).unwrap_err().kind(), ErrorKind::Backend);
        }
    }
}
