//! Semaphores on Redis: each operation one script over the semaphore's keys (see
//! [`crate::keys`] and the crate docs, "Semaphores"), all in the slot of the name's tag.
//!
//! A permit is a [`Lease`] whose [`Lease::permit_limit`] is set; the store's `renew`,
//! `renew_many` and `release` send it to [`renew_call`] and [`release_call`], which pick the
//! semaphore's scripts for a permit and the lock's for a lock.

use std::time::Duration;

use fencelock_core::backend::{granted_lease, labeled, limit_mismatch, permit, ttl_millis};
use fencelock_core::{
    Error, HolderId, Lease, LeaseInfo, LockName, Operation, OwnerLabel, PermitAttempt, PermitLimit,
    Permits,
};
use redis::Value;
use redis::aio::ConnectionLike;
use tokio::time::Instant;

use crate::classify::unexpected_reply;
use crate::grant::{Grant, holder_hex, label_suffix, value_of};
use crate::reply::{self, int, items};
use crate::scripts::{Call, SCRIPTS};
use crate::store::{RedisLeaseStore, SHARDED, Shared};

/// The renew script call for `lease`: the semaphore's for a permit, the lock's for a lock.
pub(crate) fn renew_call(shared: &Shared, lease: &Lease, ttl_ms: u64) -> Call {
    if lease.permit_limit().is_some() {
        let keys = shared.layout.permits(lease.name());
        Call::new(&SCRIPTS.permit_renew, &[&keys.permits, &keys.limit])
            .arg(value_of(lease))
            .arg(ttl_ms)
    } else {
        let key = shared.layout.lock_key(lease.name());
        Call::new(&SCRIPTS.renew, &[&key])
            .arg(value_of(lease))
            .arg(ttl_ms)
    }
}

/// The release script call for `lease`: the semaphore's for a permit (announced on the
/// semaphore's channel), the lock's for a lock.
pub(crate) fn release_call(shared: &Shared, lease: &Lease) -> Call {
    let name = lease.name();
    let mut call = if lease.permit_limit().is_some() {
        let keys = shared.layout.permits(name);
        Call::new(&SCRIPTS.permit_release, &[&keys.permits, &keys.limit])
            .arg(value_of(lease))
            .arg(shared.layout.permit_channel(name))
    } else {
        let key = shared.layout.lock_key(name);
        Call::new(&SCRIPTS.release, &[&key])
            .arg(value_of(lease))
            .arg(shared.layout.release_channel(name))
    }
    .arg(name.as_str());
    if shared.is_cluster() {
        call = call.arg(SHARDED);
    }
    call
}

/// The permit acquire script's answer.
#[derive(Debug, PartialEq, Eq)]
enum Acquired {
    Granted(Grant),
    /// Every permit is taken; the first of them expires in this much time.
    Full(Duration),
    /// The live permits hold under this limit.
    OtherLimit(PermitLimit),
}

/// `{1, member}`, `{0, µs until the first permit expires}` or `{2, limit}`.
fn acquired(value: Value) -> Result<Acquired, Error> {
    let op = Operation::Acquire;
    match items(op, value)?.as_slice() {
        [Value::Int(1), member] => Ok(Acquired::Granted(reply::grant(op, member)?)),
        [Value::Int(0), left] => {
            let micros = int(left)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| unexpected_reply(op, format!("time left {left:?}")))?;
            Ok(Acquired::Full(Duration::from_micros(micros)))
        }
        [Value::Int(2), held] => Ok(Acquired::OtherLimit(limit_of(op, held)?)),
        other => Err(unexpected_reply(op, format!("{other:?}"))),
    }
}

/// A stored limit; anything but a valid one is a foreign value.
fn limit_of(op: Operation, value: &Value) -> Result<PermitLimit, Error> {
    int(value)
        .and_then(|n| u32::try_from(n).ok())
        .and_then(|n| PermitLimit::new(n).ok())
        .ok_or_else(|| unexpected_reply(op, format!("{value:?} is not a permit limit")))
}

/// `{}` or `{limit, member, µs left, member, µs left, …}`: the live permits.
fn inspected(value: Value) -> Result<Permits, Error> {
    let op = Operation::Inspect;
    let items = items(op, value)?;
    let Some((limit, permits)) = items.split_first() else {
        return Ok(Permits::default());
    };
    let limit = limit_of(op, limit)?;
    if permits.len() % 2 != 0 {
        return Err(unexpected_reply(
            op,
            format!("{} values after the limit, not pairs", permits.len()),
        ));
    }
    let holders = permits
        .chunks_exact(2)
        .map(|permit| {
            let (grant, label) = reply::labeled_grant(op, &permit[0])?;
            let micros = int(&permit[1])
                .ok_or_else(|| unexpected_reply(op, format!("time left {:?}", permit[1])))?;
            Ok(LeaseInfo {
                token: grant.token,
                holder: Some(grant.holder),
                // A negative time left cannot come from the script (it reads live permits
                // only); report it as none rather than trust it.
                remaining: Duration::from_micros(u64::try_from(micros).unwrap_or(0)),
                label,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Permits::new(Some(limit), holders))
}

impl<C> RedisLeaseStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// [`fencelock_core::LeaseStore::try_acquire_permit_or_next_expiry`]: one
    /// `permit_acquire.lua`, which answers a refusal with the first permit's time left.
    pub(crate) async fn acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        let ttl = self.shared().limits.check(ttl)?;
        let ttl_ms = ttl_millis(ttl);
        let keys = self.shared().layout.permits(name);
        let holder = HolderId::random();
        let call = Call::new(
            &SCRIPTS.permit_acquire,
            &[&keys.permits, &keys.limit, &keys.counter],
        )
        .arg(&holder_hex(holder)[..])
        .arg(ttl_ms)
        .arg(limit.get())
        .arg(label_suffix(label));
        let sent_at = Instant::now();
        match acquired(self.run(Operation::Acquire, &call).await?)? {
            Acquired::Full(next_expiry) => Ok(PermitAttempt::Full { next_expiry }),
            Acquired::OtherLimit(held) => Err(limit_mismatch(name, held, limit)),
            Acquired::Granted(grant) if grant.holder == holder => {
                let lease = granted_lease(
                    name.clone(),
                    grant.token,
                    holder,
                    Duration::from_millis(ttl_ms),
                    sent_at,
                );
                Ok(PermitAttempt::Granted(permit(labeled(lease, label), limit)))
            }
            Acquired::Granted(other) => Err(unexpected_reply(
                Operation::Acquire,
                format!("granted holder {} instead of {holder}", other.holder),
            )),
        }
    }

    /// [`fencelock_core::LeaseStore::inspect_permits`]: one `permit_inspect.lua`.
    pub(crate) async fn permits_of(&self, name: &LockName) -> Result<Permits, Error> {
        let keys = self.shared().layout.permits(name);
        let call = Call::new(&SCRIPTS.permit_inspect, &[&keys.permits, &keys.limit]);
        inspected(self.run(Operation::Inspect, &call).await?)
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

    fn grant() -> Grant {
        Grant {
            holder: holder_id(7),
            token: FencingToken::new(42),
        }
    }

    #[test]
    fn decodes_every_acquire_answer() {
        let member = bulk(&grant().encode());
        assert_eq!(
            acquired(Value::Array(vec![Value::Int(1), member])).unwrap(),
            Acquired::Granted(grant())
        );
        assert_eq!(
            acquired(Value::Array(vec![Value::Int(0), Value::Int(1_500_000)])).unwrap(),
            Acquired::Full(Duration::from_millis(1_500))
        );
        assert_eq!(
            acquired(Value::Array(vec![Value::Int(2), bulk("3")])).unwrap(),
            Acquired::OtherLimit(PermitLimit::new(3).unwrap())
        );
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Int(2), bulk("0")]),
            Value::Array(vec![Value::Int(2), bulk("10001")]),
            Value::Array(vec![Value::Int(1), bulk("not a permit")]),
            Value::Array(vec![Value::Int(3)]),
            Value::Array(vec![Value::Int(0)]),
            Value::Array(vec![Value::Int(0), Value::Int(-1)]),
            Value::Array(vec![Value::Int(0), bulk("soon")]),
        ] {
            let err = acquired(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
        }
    }

    #[test]
    fn decodes_the_live_permits_in_token_order() {
        let later = Grant {
            holder: holder_id(9),
            token: FencingToken::new(50),
        };
        let shown = inspected(Value::Array(vec![
            bulk("2"),
            bulk(&later.encode()),
            Value::Int(1_500_000),
            bulk(&format!("{}:host:1 {{x}}", grant().encode())),
            Value::Int(900),
        ]))
        .unwrap();
        assert_eq!(shown.limit, PermitLimit::new(2).ok());
        let tokens: Vec<u64> = shown.holders.iter().map(|h| h.token.get()).collect();
        assert_eq!(tokens, [42, 50]);
        assert_eq!(shown.holders[0].remaining, Duration::from_micros(900));
        assert_eq!(
            shown.holders[0].label.as_ref().unwrap().as_str(),
            "host:1 {x}"
        );
        assert_eq!(shown.holders[1].label, None);
        assert_eq!(shown.holders[1].holder, Some(holder_id(9)));
        assert_eq!(inspected(Value::Array(vec![])).unwrap(), Permits::default());
        for bad in [
            Value::Array(vec![bulk("2"), bulk(&grant().encode())]),
            Value::Array(vec![bulk("2"), bulk("not a permit"), Value::Int(1)]),
            Value::Array(vec![Value::Nil]),
            Value::Okay,
        ] {
            let err = inspected(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
        }
    }
}
