//! The SQL this backend runs, rendered once per store for its table.
//!
//! The statements live in `src/sql/*.sql`. The only text substituted into them is the table
//! name (a validated, quoted [`TableName`]) and the durable-commit clause; every value is bound.

use std::sync::Arc;

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use crate::TableName;

const MIGRATE: &str = include_str!("sql/migrate.sql");
const ACQUIRE: &str = include_str!("sql/acquire.sql");
const RENEW: &str = include_str!("sql/renew.sql");
const RENEW_MANY: &str = include_str!("sql/renew_many.sql");
const RELEASE: &str = include_str!("sql/release.sql");
const FORCE_RELEASE: &str = include_str!("sql/force_release.sql");
const INSPECT: &str = include_str!("sql/inspect.sql");
const VERIFY: &str = include_str!("sql/verify.sql");
const DURABLE: &str = include_str!("sql/durable.sql");

/// The statements of one store. Cloning a [`SqlStr`] is a reference-count bump, and sqlx
/// prepares each text once per connection and caches it.
#[derive(Clone, Debug)]
pub(crate) struct Statements {
    pub(crate) migrate: SqlStr,
    pub(crate) acquire: SqlStr,
    pub(crate) renew: SqlStr,
    pub(crate) renew_many: SqlStr,
    pub(crate) release: SqlStr,
    pub(crate) force_release: SqlStr,
    pub(crate) inspect: SqlStr,
    pub(crate) verify: SqlStr,
}

impl Statements {
    pub(crate) fn new(table: &TableName, durable: bool) -> Self {
        let table = table.quoted();
        let durable = if durable { DURABLE.trim() } else { "true" };
        let render = |template: &str| {
            let sql = template
                .replace("{table}", &table)
                .replace("{durable}", durable);
            AssertSqlSafe(Arc::<str>::from(sql.trim())).into_sql_str()
        };
        Self {
            migrate: render(MIGRATE),
            acquire: render(ACQUIRE),
            renew: render(RENEW),
            renew_many: render(RENEW_MANY),
            release: render(RELEASE),
            force_release: render(FORCE_RELEASE),
            inspect: render(INSPECT),
            verify: render(VERIFY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_quoted_table_and_the_durable_clause_are_substituted() {
        let table = TableName::new("s", "Leases").unwrap();
        let durable = Statements::new(&table, true);
        assert!(
            durable
                .acquire
                .as_str()
                .contains("INSERT INTO \"s\".\"Leases\" AS lease")
        );
        assert!(
            durable
                .acquire
                .as_str()
                .contains("set_config('synchronous_commit'")
        );
        assert!(
            durable
                .renew
                .as_str()
                .contains("set_config('synchronous_commit'")
        );
        assert!(!durable.release.as_str().contains("set_config"));
        let fast = Statements::new(&table, false);
        assert!(!fast.acquire.as_str().contains("set_config"));
        for sql in [
            &durable.migrate,
            &durable.acquire,
            &durable.renew,
            &durable.release,
            &durable.force_release,
            &durable.inspect,
            &durable.verify,
        ] {
            assert!(
                !sql.as_str().contains('{'),
                "unrendered marker in {}",
                sql.as_str()
            );
        }
    }
}
