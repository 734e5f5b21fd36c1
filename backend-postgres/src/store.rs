//! `PgLeaseStore`: leases as rows, judged by the database clock.

mod batch;
mod permits;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fencelock_core::backend::{
    ReleaseWatch, fail_each, granted_lease, labeled, lost_or_superseded, renewed_lease,
    stored_label,
};
use fencelock_core::{
    Diagnosis, Error, FencingToken, HeldLock, HolderId, Lease, LeaseInfo, LeaseStore, ListQuery,
    Listing, LockName, Operation, OwnerLabel, PermitAttempt, PermitLimit, Permits, TtlLimits,
};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::time::Instant;

use crate::classify::{STORE, classify, sqlstate};
use crate::config::Settings;
use crate::pooler::{Listen, Pooling};
use crate::statements::{Arg, GrantStatements, Protocol, Statements};
use crate::wakeups::Wakeups;
use crate::{Ident, PgBuilder, PgConfig, TableName, migrate};

/// A [`LeaseStore`] on a PostgreSQL table: one row per lock name.
///
/// Every operation is one statement on a pooled connection (a permit's grant: one transaction
/// of two); nothing is session-scoped, so it works behind transaction-mode poolers. Expiry is
/// judged by `clock_timestamp()` on the server. Semaphores live in two tables beside the lease
/// table ([`PgLeaseStore::semaphore_table`], [`PgLeaseStore::permit_table`]). Clones share
/// the pool and the wake-up listener.
#[derive(Clone)]
pub struct PgLeaseStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    table: TableName,
    channel: Ident,
    sql: Statements,
    protocol: Protocol,
    limits: TtlLimits,
    op_timeout: Duration,
    durable_grants: bool,
    wakeups: Option<Wakeups>,
    /// Whether the LISTEN connection has a URL of its own (`listen_url`).
    listen_own_url: bool,
}

impl fmt::Debug for PgLeaseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pool's options hold the password, so they are not shown.
        f.debug_struct("PgLeaseStore")
            .field("table", &self.inner.table)
            .field("channel", &self.inner.channel)
            .field("limits", &self.inner.limits)
            .field("op_timeout", &self.inner.op_timeout)
            .field("durable_grants", &self.inner.durable_grants)
            .field("wakeups", &self.inner.wakeups)
            .finish_non_exhaustive()
    }
}

impl PgLeaseStore {
    /// Options for a store (table, TTL limit, pool size, …).
    pub fn builder() -> PgBuilder {
        PgBuilder::new()
    }

    /// Connects to `url` with the default options and creates the lease table if missing.
    ///
    /// # Errors
    /// `InvalidInput` for a malformed URL; `Unavailable` when the server cannot be reached;
    /// `Backend` when the table cannot be created (e.g. missing privileges).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder().with_url(url).connect().await
    }

    /// Connects with the options and URL of `config`, e.g. loaded from a file.
    ///
    /// # Errors
    /// As [`PgBuilder::connect`].
    pub async fn from_config(config: PgConfig) -> Result<Self, Error> {
        PgBuilder::from_config(config).connect().await
    }

    /// A store over the pool the application already has, with the default options; creates
    /// the lease table if missing.
    ///
    /// # Errors
    /// As [`PgLeaseStore::connect`], minus the URL.
    pub async fn from_pool(pool: PgPool) -> Result<Self, Error> {
        Self::builder().from_pool(pool).await
    }

    pub(crate) async fn assemble(
        pool: PgPool,
        settings: Settings,
        listen: Option<sqlx::postgres::PgConnectOptions>,
    ) -> Result<Self, Error> {
        let protocol = if settings.prepared_statements {
            Protocol::Prepared
        } else {
            Protocol::Inline
        };
        let sql = Statements::new(&settings.table, settings.durable_grants, protocol);
        let wakeups = listen.map(|options| {
            Wakeups::new(
                settings.channel.clone(),
                options,
                settings.connect_timeout,
                pool.clone(),
                sql.notify.clone(),
            )
        });
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                table: settings.table,
                channel: settings.channel,
                sql,
                protocol,
                limits: settings.limits,
                op_timeout: settings.op_timeout,
                durable_grants: settings.durable_grants,
                wakeups,
                listen_own_url: settings.listen_url.is_some(),
            }),
        };
        if settings.migrate_on_connect {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Creates the schema, the lease table and the semaphore tables beside it if they are
    /// missing, and adds the columns an older lease table lacks. Idempotent, and safe to run
    /// from many processes at once. A role that may not create the semaphore tables gets a
    /// warning, not an error: locks work, semaphores fail until an administrator migrates.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached; `Backend` e.g. without privileges.
    pub async fn migrate(&self) -> Result<(), Error> {
        let sql = &self.inner.sql;
        let leases = [&self.inner.table];
        let permits = [&sql.permits.semaphores, &sql.permits.permits];
        let groups = [
            migrate::Tables {
                tables: &leases,
                create: sql.migrate.clone(),
                added: &sql.added_columns,
                optional_for: None,
            },
            // Added in the version that brought semaphores: an older database gains them here.
            migrate::Tables {
                tables: &permits,
                create: sql.permits.migrate.clone(),
                added: &[],
                optional_for: Some("semaphores"),
            },
        ];
        self.timed(
            Operation::Setup,
            migrate::migrate(&self.inner.pool, &groups, &sql.migration),
        )
        .await?
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The lease table.
    pub fn table(&self) -> &TableName {
        &self.inner.table
    }

    /// The semaphore table: one row per semaphore name, holding its token counter and the
    /// limit its permits hold under. Named after the lease table, `<table>_semaphores` (a long
    /// name is cut and given a hash to stay within 63 bytes).
    pub fn semaphore_table(&self) -> &TableName {
        &self.inner.sql.permits.semaphores
    }

    /// The permit table: one row per granted permit, `<table>_permits` (cut like
    /// [`PgLeaseStore::semaphore_table`]).
    pub fn permit_table(&self) -> &TableName {
        &self.inner.sql.permits.permits
    }

    /// How long one operation may take before its outcome counts as unknown.
    pub(crate) fn op_timeout(&self) -> Duration {
        self.inner.op_timeout
    }

    /// How the store sends statements (values inline unless `with_prepared_statements(true)`).
    pub(crate) fn protocol(&self) -> Protocol {
        self.inner.protocol
    }

    /// The NOTIFY channel releases are announced on.
    pub fn channel(&self) -> &Ident {
        &self.inner.channel
    }

    /// Whether the wake-up listener is connected (it starts with the first waiter).
    pub fn is_listening(&self) -> bool {
        self.inner
            .wakeups
            .as_ref()
            .is_some_and(Wakeups::is_listening)
    }

    /// Checks, inside the caller's own transaction, that `lease` still holds, and keeps it held
    /// until that transaction ends.
    ///
    /// The lease row is read `FOR SHARE`: until the transaction commits or rolls back, nobody
    /// can take the lease over (a takeover waits for the row lock). So "the lease is held" and
    /// the caller's writes in the same transaction commit together, or — if this returns an
    /// error and the caller propagates it — not at all. Keep such transactions short: the
    /// holder's own renewal also waits for them.
    ///
    /// The lease table must be in the same database as the transaction. A permit of a
    /// semaphore is checked the same way, on its own row of the permit table.
    ///
    /// # Errors
    /// `LeaseLost` when the grant expired, was released, or was taken over (`Superseded`, with
    /// the newer token); any driver error classified as usual (a failed statement also aborts
    /// the caller's transaction).
    pub async fn verify(
        &self,
        lease: &Lease,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), Error> {
        let Ok(token) = i64::try_from(lease.token().get()) else {
            return Err(lost_or_superseded(lease, None));
        };
        let holder = lease.holder().to_string();
        let row: Option<(i64, bool)> = self
            .statements_of(lease)
            .verify
            .fetch_optional(
                vec![
                    Arg::Text(lease.name().as_str()),
                    Arg::Text(&holder),
                    Arg::Int(token),
                ],
                &mut **tx,
            )
            .await
            .map_err(|e| classify(Operation::FencedWrite, e))?;
        match row {
            Some((_, true)) => Ok(()),
            Some((current, false)) => Err(lost_or_superseded(
                lease,
                Some(FencingToken::new(current.unsigned_abs())),
            )),
            None => Err(lost_or_superseded(lease, None)),
        }
    }

    /// Runs `fut` under the store's operation timeout. A timeout means the statement may have
    /// run: `OutcomeUnknown`.
    async fn timed<T>(&self, op: Operation, fut: impl Future<Output = T>) -> Result<T, Error> {
        let limit = self.inner.op_timeout;
        tokio::time::timeout(limit, fut).await.map_err(|_| {
            Error::outcome_unknown(
                STORE,
                op,
                format!("no reply from postgres within {limit:?}"),
            )
        })
    }

    /// The statements that renew, release and verify `lease`: a lock's, or a permit's (which
    /// take the same values and answer the same rows, on the permit's own row).
    fn statements_of(&self, lease: &Lease) -> &GrantStatements {
        if lease.permit_limit().is_some() {
            &self.inner.sql.permits.grants
        } else {
            &self.inner.sql.grants
        }
    }

    /// Why `lease` is not held, as far as the store can tell right now. A permit has no single
    /// current holder to be superseded by: it is simply not held.
    async fn loss_of(&self, lease: &Lease) -> Error {
        if lease.permit_limit().is_some() {
            return lost_or_superseded(lease, None);
        }
        let current = self.inspect(lease.name()).await.ok().flatten();
        lost_or_superseded(lease, current.map(|info| info.token))
    }
}

/// A TTL in whole microseconds, rounded up so the grant is never shorter than asked.
fn micros(ttl: Duration) -> (i64, Duration) {
    let us = ttl.as_nanos().div_ceil(1_000);
    let us = i64::try_from(us).unwrap_or(i64::MAX);
    (us, Duration::from_micros(us.unsigned_abs()))
}

/// A token read from the table, checked to be in the range every backend guarantees.
fn token_from(op: Operation, name: &LockName, raw: i64) -> Result<FencingToken, Error> {
    u64::try_from(raw)
        .ok()
        .filter(|t| (1..=FencingToken::MAX_EXACT).contains(t))
        .map(FencingToken::new)
        .ok_or_else(|| {
            Error::backend(
                STORE,
                op,
                format!("the lease row of `{name}` holds token {raw}, outside 1..=2^53-1; the table was edited by hand"),
            )
        })
}

/// An error of a granting statement: the `CHECK` on the token range is the counter running out.
fn grant_error(op: Operation, name: &LockName, error: sqlx::Error) -> Error {
    if sqlstate(&error).as_deref() == Some("23514") {
        Error::backend(
            STORE,
            op,
            format!("the token counter of `{name}` is exhausted (2^53-1 reached); use a new name"),
        )
    } else {
        classify(op, error)
    }
}

/// A row of the list statement: name, token, holder, microseconds left, label.
type ListedRow = (String, i64, Option<String>, i64, Option<String>);

/// A live grant's row as [`LeaseInfo`].
fn lease_info(
    op: Operation,
    name: &LockName,
    token: i64,
    holder: Option<String>,
    remaining_us: i64,
    label: Option<String>,
) -> Result<LeaseInfo, Error> {
    Ok(LeaseInfo {
        token: token_from(op, name, token)?,
        holder: holder_from(holder.as_deref()),
        remaining: Duration::from_micros(remaining_us.max(0).unsigned_abs()),
        label: label.as_deref().and_then(stored_label),
    })
}

/// `prefix` as a `LIKE … ESCAPE '\'` pattern that matches exactly the names starting with it.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn holder_from(text: Option<&str>) -> Option<HolderId> {
    HolderId::parse_hex(&text?.replace('-', "")).ok()
}

#[async_trait]
impl LeaseStore for PgLeaseStore {
    fn backend(&self) -> &'static str {
        STORE
    }

    fn ttl_limits(&self) -> TtlLimits {
        self.inner.limits
    }

    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        let (ttl_us, granted) = micros(self.inner.limits.check(ttl)?);
        let holder = HolderId::random();
        let holder_text = holder.to_string();
        let sent_at = Instant::now();
        let row: Option<(i64,)> = self
            .timed(
                Operation::Acquire,
                self.inner.sql.acquire.fetch_optional(
                    vec![
                        Arg::Text(name.as_str()),
                        Arg::Text(&holder_text),
                        Arg::Int(ttl_us),
                        Arg::Text(label.map_or("", OwnerLabel::as_str)),
                    ],
                    &self.inner.pool,
                ),
            )
            .await?
            .map_err(|e| grant_error(Operation::Acquire, name, e))?;
        let Some((raw,)) = row else {
            return Ok(None);
        };
        let token = token_from(Operation::Acquire, name, raw)?;
        Ok(Some(labeled(
            granted_lease(name.clone(), token, holder, granted, sent_at),
            label,
        )))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        let (ttl_us, granted) = micros(self.inner.limits.check(ttl)?);
        let Ok(token) = i64::try_from(lease.token().get()) else {
            return Err(lost_or_superseded(lease, None));
        };
        let holder = lease.holder().to_string();
        let sent_at = Instant::now();
        let row: Option<(i64,)> = self
            .timed(
                Operation::Renew,
                self.statements_of(lease).renew.fetch_optional(
                    vec![
                        Arg::Text(lease.name().as_str()),
                        Arg::Text(&holder),
                        Arg::Int(token),
                        Arg::Int(ttl_us),
                    ],
                    &self.inner.pool,
                ),
            )
            .await?
            .map_err(|e| classify(Operation::Renew, e))?;
        match row {
            Some(_) => Ok(renewed_lease(lease, granted, sent_at)),
            None => Err(self.loss_of(lease).await),
        }
    }

    /// One `UPDATE … FROM unnest(…)` for the locks of the batch, and one for its permits (the
    /// two at once): one round trip and one WAL flush each.
    async fn renew_many(&self, leases: &[Lease], ttl: Duration) -> Vec<Result<Lease, Error>> {
        let (ttl_us, granted) = match self.inner.limits.check(ttl) {
            Ok(ttl) => micros(ttl),
            Err(error) => return fail_each(error, leases.len()),
        };
        // Tokens beyond i64 cannot be in the table: such leases are simply not held.
        let (permits, locks): (Vec<(&Lease, i64)>, Vec<(&Lease, i64)>) = leases
            .iter()
            .filter_map(|lease| Some((lease, i64::try_from(lease.token().get()).ok()?)))
            .partition(|(lease, _)| lease.permit_limit().is_some());
        let sent_at = Instant::now();
        let sql = &self.inner.sql;
        let (renewed_locks, renewed_permits) = futures::join!(
            batch::renew_batch(self, &sql.grants.renew_many, &locks, ttl_us),
            batch::renew_batch(self, &sql.permits.grants.renew_many, &permits, ttl_us),
        );
        let answers = leases.iter().map(|lease| async {
            let renewed = if lease.permit_limit().is_some() {
                &renewed_permits
            } else {
                &renewed_locks
            };
            let renewed = match renewed {
                Ok(renewed) => renewed,
                // The statement of this lease's kind failed as a whole.
                Err(error) => return Err(error.clone()),
            };
            let key = i64::try_from(lease.token().get())
                .ok()
                .map(|token| batch::renewed_key(lease, token));
            match key {
                Some(key) if renewed.contains(&key) => Ok(renewed_lease(lease, granted, sent_at)),
                Some(_) => Err(self.loss_of(lease).await),
                None => Err(lost_or_superseded(lease, None)),
            }
        });
        futures::future::join_all(answers).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let Ok(token) = i64::try_from(lease.token().get()) else {
            return Err(lost_or_superseded(lease, None));
        };
        let holder = lease.holder().to_string();
        let (released,): (i64,) = self
            .timed(
                Operation::Release,
                self.statements_of(lease).release.fetch_one(
                    vec![
                        Arg::Text(lease.name().as_str()),
                        Arg::Text(&holder),
                        Arg::Int(token),
                        Arg::Text(self.inner.channel.as_str()),
                    ],
                    &self.inner.pool,
                ),
            )
            .await?
            .map_err(|e| classify(Operation::Release, e))?;
        if released == 1 {
            Ok(())
        } else {
            Err(self.loss_of(lease).await)
        }
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        let row: Option<(i64, Option<String>, i64, Option<String>)> = self
            .timed(
                Operation::Inspect,
                self.inner
                    .sql
                    .inspect
                    .fetch_optional(vec![Arg::Text(name.as_str())], &self.inner.pool),
            )
            .await?
            .map_err(|e| classify(Operation::Inspect, e))?;
        let Some((token, holder, remaining_us, label)) = row else {
            return Ok(None);
        };
        lease_info(Operation::Inspect, name, token, holder, remaining_us, label).map(Some)
    }

    /// One statement: the live rows under the prefix (`LIKE` with `%`, `_` and `\` escaped, so
    /// the prefix is plain text), in name order, one more than the page holds.
    async fn list(&self, query: &ListQuery) -> Result<Listing, Error> {
        let pattern = like_prefix(query.prefix_str());
        let after = query.after().map_or("", LockName::as_str);
        let rows: Vec<ListedRow> = self
            .timed(
                Operation::List,
                self.inner.sql.list.fetch_all(
                    vec![
                        Arg::Text(&pattern),
                        Arg::Text(after),
                        Arg::Int(i64::try_from(query.limit() + 1).unwrap_or(i64::MAX)),
                    ],
                    &self.inner.pool,
                ),
            )
            .await?
            .map_err(|e| classify(Operation::List, e))?;
        let mut held = Vec::with_capacity(rows.len());
        for (name, token, holder, remaining_us, label) in rows {
            let Ok(name) = LockName::new(name) else {
                // A row another program wrote under a name fencelock would refuse.
                continue;
            };
            let info = lease_info(Operation::List, &name, token, holder, remaining_us, label)?;
            held.push(HeldLock::new(name, info));
        }
        Ok(query.page(held))
    }

    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        let row: Option<(i64,)> = self
            .timed(
                Operation::ForceRelease,
                self.inner.sql.force_release.fetch_optional(
                    vec![
                        Arg::Text(name.as_str()),
                        Arg::Text(self.inner.channel.as_str()),
                    ],
                    &self.inner.pool,
                ),
            )
            .await?
            .map_err(|e| classify(Operation::ForceRelease, e))?;
        row.map(|(raw,)| token_from(Operation::ForceRelease, name, raw))
            .transpose()
    }

    async fn watch_released(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        match &self.inner.wakeups {
            Some(wakeups) => {
                self.timed(Operation::Watch, wakeups.subscribe(name))
                    .await?
            }
            None => Ok(None),
        }
    }

    /// One short transaction of two statements (see `src/store/permits.rs`): the semaphore's
    /// row locked, then the expired permits deleted, the limit and the count compared, and the
    /// permit inserted with the next token.
    async fn try_acquire_permit(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        Ok(self
            .grant_permit(name, limit, ttl, label)
            .await?
            .into_granted())
    }

    /// The same transaction: a refusal answers the first live permit's time left, read by the
    /// grant statement itself, so a waiter needs no second request.
    async fn try_acquire_permit_or_next_expiry(
        &self,
        name: &LockName,
        limit: PermitLimit,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<PermitAttempt, Error> {
        self.grant_permit(name, limit, ttl, label).await
    }

    async fn inspect_permits(&self, name: &LockName) -> Result<Permits, Error> {
        self.live_permits(name).await
    }

    async fn watch_permits(&self, name: &LockName) -> Result<Option<ReleaseWatch>, Error> {
        self.watch_permit_releases(name).await
    }

    /// One statement on the store's pool: version, primary or standby, `fsync`,
    /// `synchronous_commit` (as the store's sessions see it), synchronous standbys; then
    /// whether a transaction-mode pooler is in the way of the store's connections and of its
    /// LISTEN connection (see the crate docs, "Diagnosis").
    async fn diagnose(&self) -> Result<Diagnosis, Error> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.op_timeout;
        let asked = async {
            let settings = crate::diagnose::ask(&inner.pool).await?;
            let pooling = crate::pooler::probe(&inner.pool.connect_options()).await?;
            Ok::<_, sqlx::Error>((settings, pooling))
        };
        let (settings, pooling) = tokio::time::timeout_at(deadline, asked)
            .await
            .map_err(|_| {
                Error::outcome_unknown(
                    STORE,
                    Operation::Diagnose,
                    format!("no reply from postgres within {:?}", inner.op_timeout),
                )
            })?
            .map_err(|e| classify(Operation::Diagnose, e))?;
        let listen = self.listen_route(pooling, deadline).await;
        Ok(crate::diagnose::diagnosis(&settings, inner.durable_grants)
            .with(crate::pooler::statements_finding(
                pooling,
                inner.protocol == Protocol::Prepared,
            ))
            .with(crate::pooler::listen_finding(&listen)))
    }
}

impl PgLeaseStore {
    /// How the LISTEN connection stands: off, found deaf, or what its URL goes through (the
    /// store's own unless `listen_url` is set, then probed by itself).
    async fn listen_route(&self, store: Pooling, deadline: Instant) -> Listen {
        let Some(wakeups) = &self.inner.wakeups else {
            return Listen::Off;
        };
        if wakeups.is_deaf() {
            return Listen::Deaf;
        }
        if !self.inner.listen_own_url {
            return Listen::Probed(store);
        }
        let options = wakeups.connect_options();
        match tokio::time::timeout_at(deadline, crate::pooler::probe(&options)).await {
            Ok(Ok(pooling)) => Listen::Probed(pooling),
            Ok(Err(e)) => Listen::Unreachable(classify(Operation::Diagnose, e).to_string()),
            Err(_) => Listen::Unreachable(format!(
                "no reply within the operation timeout, {:?}",
                self.inner.op_timeout
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_microseconds() {
        assert_eq!(
            micros(Duration::from_millis(1)),
            (1_000, Duration::from_millis(1))
        );
        assert_eq!(
            micros(Duration::from_nanos(1_000_001)),
            (1_001, Duration::from_micros(1_001))
        );
    }

    #[test]
    fn tokens_out_of_range_are_backend_errors() {
        let name = LockName::new("n").unwrap();
        assert_eq!(token_from(Operation::Acquire, &name, 7).unwrap().get(), 7);
        for bad in [0, -1, i64::MAX, (1 << 53)] {
            assert!(token_from(Operation::Acquire, &name, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn holder_ids_read_back_from_uuid_text() {
        let id = HolderId::random();
        let hex = id.to_string();
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        );
        assert_eq!(holder_from(Some(&uuid)), Some(id));
        assert_eq!(holder_from(None), None);
    }
}
