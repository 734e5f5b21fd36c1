//! What a PostgreSQL server says about itself (`current_setting`, `pg_is_in_recovery`), and
//! what that means for locks.
//!
//! Asking ([`ask`]) is one statement on the store's pool; judging ([`diagnosis`]) is a pure
//! mapping from the answers and the store's own durable-grants option.

use fencelock_core::{Diagnosis, Finding};
use sqlx::{PgPool, Row};

use crate::classify::STORE;

/// The oldest server that runs the store's statements (`INSERT … ON CONFLICT`).
const OLDEST: i32 = 90_500;

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `server_version` (`15.8`, or with a distribution's suffix).
    pub(crate) version: String,
    /// `server_version_num` (`150008`).
    pub(crate) version_num: i32,
    /// `pg_is_in_recovery()`: a standby.
    pub(crate) in_recovery: bool,
    pub(crate) fsync: String,
    pub(crate) full_page_writes: String,
    /// As the store's sessions see it (role and database defaults included).
    pub(crate) synchronous_commit: String,
    pub(crate) synchronous_standby_names: String,
    pub(crate) default_transaction_read_only: String,
}

/// The settings, as a session of the store's pool sees them.
///
/// The statement has no values and goes as one simple-protocol message (`raw_sql`), like the
/// store's statements by default: nothing named is left on the server connection, so it also
/// answers through a transaction-mode pooler.
///
/// # Errors
/// The driver's error; the caller classifies it and bounds the time.
pub(crate) async fn ask(pool: &PgPool) -> Result<Settings, sqlx::Error> {
    let row = sqlx::raw_sql(
        "SELECT current_setting('server_version'), \
                current_setting('server_version_num')::int, \
                pg_is_in_recovery(), \
                current_setting('fsync'), \
                current_setting('full_page_writes'), \
                current_setting('synchronous_commit'), \
                current_setting('synchronous_standby_names'), \
                current_setting('default_transaction_read_only')",
    )
    .fetch_one(pool)
    .await?;
    Ok(Settings {
        version: row.try_get(0)?,
        version_num: row.try_get(1)?,
        in_recovery: row.try_get(2)?,
        fsync: row.try_get(3)?,
        full_page_writes: row.try_get(4)?,
        synchronous_commit: row.try_get(5)?,
        synchronous_standby_names: row.try_get(6)?,
        default_transaction_read_only: row.try_get(7)?,
    })
}

/// What the answers mean for a store with or without durable grants, in a fixed order:
/// version, role, durability, replication.
pub(crate) fn diagnosis(s: &Settings, durable_grants: bool) -> Diagnosis {
    let mut findings = vec![version(s), role(s)];
    if s.default_transaction_read_only == "on" && !s.in_recovery {
        findings.push(Finding::fail(
            "default_transaction_read_only",
            "on",
            "every transaction of the store starts read-only, so every grant fails. Turn it off for the lock database or role",
        ));
    }
    findings.push(fsync(&s.fsync));
    if s.full_page_writes != "on" {
        findings.push(Finding::warn(
            "full_page_writes",
            s.full_page_writes.as_str(),
            "a crash of the machine in the middle of a page write can corrupt the lease table. Turn it on outside tests",
        ));
    }
    findings.push(synchronous_commit(
        &s.synchronous_commit,
        &s.synchronous_standby_names,
        durable_grants,
    ));
    findings.push(standbys(&s.synchronous_standby_names));
    findings.into_iter().fold(
        Diagnosis::new(STORE, format!("PostgreSQL {}", s.version)),
        Diagnosis::with,
    )
}

fn version(s: &Settings) -> Finding {
    if s.version_num < OLDEST {
        Finding::fail(
            "version",
            s.version.as_str(),
            "the store's statements need PostgreSQL 9.5 or later (INSERT … ON CONFLICT): every grant fails. Upgrade the server",
        )
    } else {
        Finding::ok(
            "version",
            s.version.as_str(),
            "runs the store's statements (9.5 or later)",
        )
    }
}

fn role(s: &Settings) -> Finding {
    if s.in_recovery {
        Finding::fail(
            "role",
            "standby",
            "this server is a read-only standby (in recovery): every grant fails. Point the store at the primary",
        )
    } else {
        Finding::ok("role", "primary", "accepts writes")
    }
}

fn fsync(value: &str) -> Finding {
    if value == "on" {
        Finding::ok(
            "fsync",
            value,
            "committed grants survive a crash of the machine",
        )
    } else {
        Finding::warn(
            "fsync",
            value,
            "a crash of the machine can lose recent grants, so a second holder can start while the first still runs. Turn fsync on outside tests",
        )
    }
}

fn synchronous_commit(value: &str, standby_names: &str, durable_grants: bool) -> Finding {
    match value {
        "on" | "remote_apply" => Finding::ok(
            "synchronous_commit",
            value,
            "grants are durable (and on synchronous standbys) before they are reported",
        ),
        "remote_write" => Finding::ok(
            "synchronous_commit",
            value,
            "grants are durable here and written (not yet flushed) on synchronous standbys before they are reported",
        ),
        "off" if durable_grants => Finding::ok(
            "synchronous_commit",
            value,
            "this store raises it to on for its grants and renewals (durable grants), so an acknowledged grant survives a crash; keep that option on",
        ),
        "off" => Finding::warn(
            "synchronous_commit",
            value,
            "this store runs without durable grants: a crash of the server can forget the latest grants, so a second holder can start while the first still runs (tokens still rise with the clock). Turn durable grants on, or set synchronous_commit to on",
        ),
        "local" if standby_names.is_empty() => Finding::warn(
            "synchronous_commit",
            value,
            "grants never wait for standbys, so once synchronous standbys are configured a failover can still lose the latest grants. Use on or remote_apply",
        ),
        _ => Finding::warn(
            "synchronous_commit",
            value,
            "grants are flushed here but not waited for on the synchronous standbys: a failover can lose the latest grants and start a second holder. Use on or remote_apply",
        ),
    }
}

fn standbys(names: &str) -> Finding {
    if names.is_empty() {
        Finding::ok(
            "synchronous_standby_names",
            "(none)",
            "no synchronous standbys: fine for one server; after a failover to an asynchronous standby the latest grants can be missing (tokens still rise with the clock), so fail over only to a standby that was in sync",
        )
    } else {
        Finding::ok(
            "synchronous_standby_names",
            names,
            "commits wait for these standbys, so a failover to one of them keeps every acknowledged grant",
        )
    }
}

#[cfg(test)]
mod tests {
    use fencelock_core::Verdict::{self, Fail, Ok, Warn};

    use super::*;

    fn good() -> Settings {
        Settings {
            version: "15.8".to_owned(),
            version_num: 150_008,
            in_recovery: false,
            fsync: "on".to_owned(),
            full_page_writes: "on".to_owned(),
            synchronous_commit: "on".to_owned(),
            synchronous_standby_names: String::new(),
            default_transaction_read_only: "off".to_owned(),
        }
    }

    fn verdicts(s: &Settings, durable: bool) -> Vec<(String, Verdict)> {
        diagnosis(s, durable)
            .findings
            .into_iter()
            .map(|f| (format!("{} = {}", f.setting, f.value), f.verdict))
            .collect()
    }

    /// A case: what it shows, the settings, durable grants, and the expected `setting =
    /// value` and verdicts.
    type Case = (&'static str, Settings, bool, Vec<(&'static str, Verdict)>);

    #[test]
    fn settings_to_findings() {
        let with = |change: fn(&mut Settings)| {
            let mut s = good();
            change(&mut s);
            s
        };
        let cases: Vec<Case> = vec![
            (
                "well configured",
                good(),
                true,
                vec![
                    ("version = 15.8", Ok),
                    ("role = primary", Ok),
                    ("fsync = on", Ok),
                    ("synchronous_commit = on", Ok),
                    ("synchronous_standby_names = (none)", Ok),
                ],
            ),
            (
                "test server",
                with(|s| {
                    s.fsync = "off".into();
                    s.full_page_writes = "off".into();
                }),
                true,
                vec![
                    ("version = 15.8", Ok),
                    ("role = primary", Ok),
                    ("fsync = off", Warn),
                    ("full_page_writes = off", Warn),
                    ("synchronous_commit = on", Ok),
                    ("synchronous_standby_names = (none)", Ok),
                ],
            ),
            (
                "standby",
                with(|s| {
                    s.in_recovery = true;
                    s.default_transaction_read_only = "on".into();
                }),
                true,
                vec![
                    ("version = 15.8", Ok),
                    ("role = standby", Fail),
                    ("fsync = on", Ok),
                    ("synchronous_commit = on", Ok),
                    ("synchronous_standby_names = (none)", Ok),
                ],
            ),
            (
                "read-only by default on a primary",
                with(|s| s.default_transaction_read_only = "on".into()),
                true,
                vec![
                    ("version = 15.8", Ok),
                    ("role = primary", Ok),
                    ("default_transaction_read_only = on", Fail),
                    ("fsync = on", Ok),
                    ("synchronous_commit = on", Ok),
                    ("synchronous_standby_names = (none)", Ok),
                ],
            ),
            (
                "commit off, durable grants raise it",
                with(|s| s.synchronous_commit = "off".into()),
                true,
                vec![
                    ("version = 15.8", Ok),
                    ("role = primary", Ok),
                    ("fsync = on", Ok),
                    ("synchronous_commit = off", Ok),
                    ("synchronous_standby_names = (none)", Ok),
                ],
            ),
            (
                "commit off without durable grants",
                with(|s| s.synchronous_commit = "off".into()),
                false,
                vec![
                    ("version = 15.8", Ok),
                    ("role = primary", Ok),
                    ("fsync = on", Ok),
                    ("synchronous_commit = off", Warn),
                    ("synchronous_standby_names = (none)", Ok),
                ],
            ),
            (
                "local with synchronous standbys",
                with(|s| {
                    s.synchronous_commit = "local".into();
                    s.synchronous_standby_names = "FIRST 1 (s1, s2)".into();
                }),
                true,
                vec![
                    ("version = 15.8", Ok),
                    ("role = primary", Ok),
                    ("fsync = on", Ok),
                    ("synchronous_commit = local", Warn),
                    ("synchronous_standby_names = FIRST 1 (s1, s2)", Ok),
                ],
            ),
            (
                "local alone",
                with(|s| s.synchronous_commit = "local".into()),
                true,
                vec![
                    ("version = 15.8", Ok),
                    ("role = primary", Ok),
                    ("fsync = on", Ok),
                    ("synchronous_commit = local", Warn),
                    ("synchronous_standby_names = (none)", Ok),
                ],
            ),
            (
                "remote_write, ancient",
                with(|s| {
                    s.synchronous_commit = "remote_write".into();
                    s.version = "9.4.26".into();
                    s.version_num = 90_426;
                }),
                true,
                vec![
                    ("version = 9.4.26", Fail),
                    ("role = primary", Ok),
                    ("fsync = on", Ok),
                    ("synchronous_commit = remote_write", Ok),
                    ("synchronous_standby_names = (none)", Ok),
                ],
            ),
        ];
        for (what, settings, durable, expected) in cases {
            let expected: Vec<(String, Verdict)> = expected
                .into_iter()
                .map(|(f, v)| (f.to_owned(), v))
                .collect();
            assert_eq!(verdicts(&settings, durable), expected, "{what}");
            let d = diagnosis(&settings, durable);
            assert!(d.findings.iter().all(|f| !f.advice.is_empty()), "{what}");
        }
    }

    #[test]
    fn names_the_server() {
        let d = diagnosis(&good(), true);
        assert_eq!(d.backend, "postgres");
        assert_eq!(d.server, "PostgreSQL 15.8");
    }
}
