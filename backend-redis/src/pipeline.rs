//! Batched renewal: the renew script for every lease of a batch in one pipeline — one write and
//! one read on the connection for N leases. Each lease is its own `EVALSHA` on its own key, so
//! the batch also works where the keys hash to different cluster slots.

use std::time::Duration;

use fencelock_core::{Error, Lease, Operation};
use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisResult, ServerErrorKind, Value};
use tokio::time::Instant;

use crate::classify::classify;
use crate::config::millis;
use crate::grant::Grant;
use crate::reply::{self, Compared};
use crate::scripts::SCRIPTS;
use crate::store::{Shared, loss};

/// [`fencelock_core::LeaseStore::renew_many`] on Redis.
pub(crate) async fn renew_many<C>(
    conn: &C,
    shared: &Shared,
    leases: &[Lease],
    ttl: Duration,
) -> Vec<Result<Lease, Error>>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let ttl_ms = match shared.limits.check(ttl) {
        Ok(ttl) => millis(ttl),
        Err(error) => return every(error, leases),
    };
    if leases.is_empty() {
        return Vec::new();
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for lease in leases {
        pipe.cmd("EVALSHA")
            .arg(SCRIPTS.renew.get_hash())
            .arg(1)
            .arg(shared.layout.lock_key(lease.name()))
            .arg(Grant::of(lease).arg())
            .arg(ttl_ms);
    }
    let mut conn = conn.clone();
    let mut sent_at = Instant::now();
    let mut answers = pipe.query_async::<Vec<RedisResult<Value>>>(&mut conn).await;
    if answers.as_ref().is_ok_and(|a| a.iter().any(is_no_script)) {
        // The server forgot the script (restart, failover, `SCRIPT FLUSH`): load it and send
        // the batch again. Renewing twice is harmless; the first pass renewed nothing.
        if let Err(e) = SCRIPTS.renew.load_async(&mut conn).await {
            return every(classify(Operation::Renew, e), leases);
        }
        sent_at = Instant::now();
        answers = pipe.query_async(&mut conn).await;
    }
    let answers = match answers {
        Ok(answers) if answers.len() == leases.len() => answers,
        Ok(answers) => {
            let what = format!("{} answers to {} renewals", answers.len(), leases.len());
            return every(
                crate::classify::unexpected_reply(Operation::Renew, what),
                leases,
            );
        }
        Err(e) => return every(classify(Operation::Renew, e), leases),
    };
    leases
        .iter()
        .zip(answers)
        .map(|(lease, answer)| {
            let value = answer.map_err(|e| classify(Operation::Renew, e))?;
            match reply::compared(Operation::Renew, value)? {
                Compared::Done => Ok(lease.renewed(Duration::from_millis(ttl_ms), sent_at)),
                Compared::Lost(current) => Err(loss(lease, current)),
            }
        })
        .collect()
}

fn is_no_script(answer: &RedisResult<Value>) -> bool {
    answer
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
}

/// The same failure for every lease of the batch.
fn every(error: Error, leases: &[Lease]) -> Vec<Result<Lease, Error>> {
    error.fan_out(leases.len()).into_iter().map(Err).collect()
}
