//! The semaphores of [`PgLeaseStore`]: a row per semaphore name and a row per permit.
//!
//! A grant is one short transaction of two statements, `permit_lock.sql` then
//! `permit_grant.sql`. The first locks the semaphore's row (creating it if missing) until the
//! commit, so grants of one name run one after another; the second, with a snapshot taken after
//! that lock was granted (READ COMMITTED), sees every permit the grants before it committed,
//! deletes the expired ones, compares the limit and the count, and inserts the permit with the
//! next token. One statement could not do both: its snapshot would be taken before it waited
//! for the lock, and it would miss the permit the grant it waited for had just inserted.
//!
//! Renewals, releases and `verify` are the lock's code with the permit's statements
//! (`GrantStatements`): one statement each on the permit's own row (holder **and** token), never
//! on the semaphore row, so they do not wait for grants.

use std::time::Duration;

use fencelock_core::backend::{ReleaseWatch, granted_lease, labeled, limit_mismatch, permit};
use fencelock_core::{
    Error, HolderId, LeaseInfo, LockName, Operation, OwnerLabel, PermitAttempt, PermitLimit,
    Permits,
};
use tokio::time::Instant;

use super::{PgLeaseStore, grant_error, lease_info, micros};
use crate::classify::{STORE, classify};
use crate::statements::Arg;

/// How a grant's transaction begins: READ COMMITTED whatever the session's default, because
/// the grant statement needs a snapshot of its own, taken after the lock statement's wait.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// A row of `permit_inspect.sql`: token, holder, microseconds left, label, limit.
type PermitRow = (i64, Option<String>, i64, Option<String>, Option<i32>);

impl PgLeaseStore {
    /// [`fencelock_core::LeaseStore::try_acquire_permit_or_next_expiry`].
    pub(super) async fn grant_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        let (ttl_us, granted) = micros(self.inner.limits.check(ttl)?);
        let holder = HolderId::random();
        let holder_text = holder.to_string();
        let sql = &self.inner.sql.permits;
        let sent_at = Instant::now();
        let grant = async {
            let mut tx = self.inner.pool.begin_with(BEGIN).await?;
            sql.lock
                .execute(vec![Arg::Text(name.as_str())], &mut *tx)
                .await?;
            let row: (Option<i64>, i64, Option<i32>, Option<i64>) = sql
                .grant
                .fetch_one(
                    vec![
                        Arg::Text(name.as_str()),
                        Arg::Text(&holder_text),
                        Arg::Int(ttl_us),
                        Arg::Text(label.map_or("", OwnerLabel::as_str)),
                        Arg::Int(i64::from(limit.get())),
                    ],
                    &mut *tx,
                )
                .await?;
            // Also when nothing was granted: the expired permits it deleted stay deleted.
            tx.commit().await?;
            Ok::<_, sqlx::Error>(row)
        };
        let (token, held, held_limit, next_expiry_us) = self
            .timed(Operation::Acquire, grant)
            .await?
            .map_err(|e| grant_error(Operation::Acquire, name, e))?;
        if let Some(raw) = token {
            let token = super::token_from(Operation::Acquire, name, raw)?;
            let lease = granted_lease(name.clone(), token, holder, granted, sent_at);
            return Ok(PermitAttempt::Granted(permit(labeled(lease, label), limit)));
        }
        if held > 0
            && let Some(raw) = held_limit
        {
            let held_limit = limit_from(name, raw)?;
            if held_limit != limit {
                return Err(limit_mismatch(name, held_limit, limit));
            }
        }
        // None when the last permit expired between the statement's reads: try again now.
        let next_expiry = Duration::from_micros(next_expiry_us.map_or(0, |us| us.max(0) as u64));
        Ok(PermitAttempt::Full { next_expiry })
    }

    /// [`fencelock_core::LeaseStore::inspect_permits`].
    pub(super) async fn live_permits(&self, name: &LockName) -> Result<Permits, Error> {
        let rows: Vec<PermitRow> = self
            .timed(
                Operation::Inspect,
                self.inner
                    .sql
                    .permits
                    .inspect
                    .fetch_all(vec![Arg::Text(name.as_str())], &self.inner.pool),
            )
            .await?
            .map_err(|e| classify(Operation::Inspect, e))?;
        let mut limit = None;
        let mut holders: Vec<LeaseInfo> = Vec::with_capacity(rows.len());
        for (token, holder, remaining_us, label, raw_limit) in rows {
            if let Some(raw) = raw_limit {
                limit = Some(limit_from(name, raw)?);
            }
            holders.push(lease_info(
                Operation::Inspect,
                name,
                token,
                holder,
                remaining_us,
                label,
            )?);
        }
        Ok(Permits::new(limit, holders))
    }

    /// [`fencelock_core::LeaseStore::watch_permits`].
    pub(super) async fn watch_permit_releases(
        &self,
        name: &LockName,
    ) -> Result<Option<ReleaseWatch>, Error> {
        match &self.inner.wakeups {
            Some(wakeups) => {
                self.timed(Operation::Watch, wakeups.subscribe_permits(name))
                    .await?
            }
            None => Ok(None),
        }
    }
}

/// A limit read from the semaphore row, checked to be one a grant could have stored.
fn limit_from(name: &LockName, raw: i32) -> Result<PermitLimit, Error> {
    u32::try_from(raw)
        .ok()
        .and_then(|n| PermitLimit::new(n).ok())
        .ok_or_else(|| {
            Error::backend(
                STORE,
                Operation::Inspect,
                format!(
                    "the semaphore row of `{name}` holds a permit limit of {raw}, outside 1..={}; the table was edited by hand",
                    PermitLimit::MAX
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_out_of_range_are_backend_errors() {
        let name = LockName::new("n").unwrap();
        assert_eq!(limit_from(&name, 3).unwrap().get(), 3);
        for bad in [0, -1, 10_001, i32::MAX] {
            let err = limit_from(&name, bad).unwrap_err();
            assert_eq!(err.kind(), fencelock_core::ErrorKind::Backend, "{bad}");
        }
    }
}
