//! Renewing a batch of grants in one statement: the locks of a `renew_many` batch by
//! `renew_many.sql`, its permits by `permit_renew_many.sql`.

use std::collections::HashSet;

use fencelock_core::{Error, HolderId, Lease, Operation};

use super::{PgLeaseStore, holder_from};
use crate::classify::classify;
use crate::statements::{Arg, Statement};

/// A renewed grant as a batch renewal answers it: name, token, holder.
pub(super) type Renewed = (String, i64, Option<HolderId>);

/// The key of `lease` (with its token as the table holds it) among the [`Renewed`] ones.
pub(super) fn renewed_key(lease: &Lease, token: i64) -> Renewed {
    (
        lease.name().as_str().to_owned(),
        token,
        Some(lease.holder()),
    )
}

/// Renews with `statement` (`renew_many.sql` or `permit_renew_many.sql`) every lease of
/// `batch` (with its token as the table holds it): each one extended, by name, token **and**
/// holder (a forged lease beside the real one shares its name and token, not its holder).
pub(super) async fn renew_batch(
    store: &PgLeaseStore,
    statement: &Statement,
    batch: &[(&Lease, i64)],
    ttl_us: i64,
) -> Result<HashSet<Renewed>, Error> {
    if batch.is_empty() {
        return Ok(HashSet::new());
    }
    let names: Vec<&str> = batch.iter().map(|(l, _)| l.name().as_str()).collect();
    let holders: Vec<String> = batch.iter().map(|(l, _)| l.holder().to_string()).collect();
    let tokens: Vec<i64> = batch.iter().map(|(_, t)| *t).collect();
    let rows = store
        .timed(
            Operation::Renew,
            statement.fetch_all::<(String, i64, String), _>(
                vec![
                    Arg::Texts(names),
                    Arg::Texts(holders.iter().map(String::as_str).collect()),
                    Arg::Ints(tokens),
                    Arg::Int(ttl_us),
                ],
                &store.inner.pool,
            ),
        )
        .await?
        .map_err(|e| classify(Operation::Renew, e))?;
    Ok(rows
        .into_iter()
        .map(|(name, token, holder)| (name, token, holder_from(Some(&holder))))
        .collect())
}
