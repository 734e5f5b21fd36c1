//! Listing held locks under a name prefix, a page at a time.

use std::time::Duration;

use crate::{Error, FencingToken, HolderId, LeaseInfo, LockName, OwnerLabel};

/// What [`crate::LeaseStore::list`] is asked: the held locks whose names start with `prefix`
/// (plain text: `*`, `?`, `[`, `%`, `_`, `{` and `\` match only themselves), in name order,
/// after `after` if set, at most `limit` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    prefix: String,
    after: Option<LockName>,
    limit: usize,
}

impl ListQuery {
    /// The most locks one page may hold; [`ListQuery::with_limit`] rejects more.
    pub const MAX_LIMIT: usize = 1000;
    /// The default page size.
    pub const DEFAULT_LIMIT: usize = 100;

    /// Locks whose names start with `prefix` (empty: every lock), the first
    /// [`ListQuery::DEFAULT_LIMIT`] of them.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the prefix is longer than [`LockName::MAX_LEN`] bytes or
    /// contains a control character (no name could start with it).
    pub fn prefix(prefix: impl Into<String>) -> Result<Self, Error> {
        let prefix: String = prefix.into();
        if !prefix.is_empty() {
            // A prefix is a name's beginning, so a valid prefix is a valid name.
            LockName::new(prefix.as_str())
                .map_err(|e| Error::invalid("list prefix", e.to_string()))?;
        }
        Ok(Self {
            prefix,
            after: None,
            limit: Self::DEFAULT_LIMIT,
        })
    }

    /// Continues after `name` (the [`Listing::next`] of the previous page).
    pub fn with_after(mut self, name: LockName) -> Self {
        self.after = Some(name);
        self
    }

    /// At most `limit` locks in this page.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for zero or more than [`ListQuery::MAX_LIMIT`].
    pub fn with_limit(mut self, limit: usize) -> Result<Self, Error> {
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(Error::invalid(
                "list limit",
                format!(
                    "{limit} is outside 1..={}; page through more with the listing's `next`",
                    Self::MAX_LIMIT
                ),
            ));
        }
        self.limit = limit;
        Ok(self)
    }

    /// The name prefix (plain text).
    pub fn prefix_str(&self) -> &str {
        &self.prefix
    }

    /// The name this page starts after, if any.
    pub fn after(&self) -> Option<&LockName> {
        self.after.as_ref()
    }

    /// The most locks in this page.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether `name` belongs in this page's range: under the prefix and after `after`.
    pub fn admits(&self, name: &str) -> bool {
        name.starts_with(&self.prefix) && self.after.as_ref().is_none_or(|a| name > a.as_str())
    }

    /// Builds the page from every held lock a backend found in range (any order, duplicates
    /// allowed, out-of-range ones dropped): sorts by name and keeps the first
    /// [`ListQuery::limit`] (backends).
    pub fn page(&self, found: impl IntoIterator<Item = HeldLock>) -> Listing {
        let mut locks: Vec<HeldLock> = found
            .into_iter()
            .filter(|held| self.admits(held.name.as_str()))
            .collect();
        locks.sort_by(|a, b| a.name.cmp(&b.name));
        locks.dedup_by(|a, b| a.name == b.name);
        let more = locks.len() > self.limit;
        locks.truncate(self.limit);
        let next = more.then(|| locks.last().map(|l| l.name.clone())).flatten();
        Listing { locks, next }
    }
}

/// One held lock in a [`Listing`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLock {
    /// The lock's name.
    pub name: LockName,
    /// The holder's token.
    pub token: FencingToken,
    /// The holder's id, where the store keeps it.
    pub holder: Option<HolderId>,
    /// Time left on the lease, by the server's clock when it answered.
    pub remaining: Duration,
    /// The holder's owner label, if it set one.
    pub label: Option<OwnerLabel>,
}

impl HeldLock {
    /// `name` held as `info` says.
    pub fn new(name: LockName, info: LeaseInfo) -> Self {
        Self {
            name,
            token: info.token,
            holder: info.holder,
            remaining: info.remaining,
            label: info.label,
        }
    }
}

/// One page of held locks, in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The held locks of this page.
    pub locks: Vec<HeldLock>,
    /// Set when more locks follow: pass it to [`ListQuery::with_after`] for the next page.
    pub next: Option<LockName>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn held(name: &str) -> HeldLock {
        HeldLock {
            name: LockName::new(name).unwrap(),
            token: FencingToken::new(1),
            holder: None,
            remaining: Duration::from_secs(1),
            label: None,
        }
    }

    #[test]
    fn pages_in_name_order_and_continue_after_the_last() {
        let query = ListQuery::prefix("a/").unwrap().with_limit(2).unwrap();
        let found = ["a/c", "b/x", "a/a", "a/b", "a", "a/a"].map(held);
        let page = query.page(found.clone());
        let names: Vec<&str> = page.locks.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a/a", "a/b"]);
        let next = page.next.unwrap();
        let page = query.with_after(next).page(found);
        let names: Vec<&str> = page.locks.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a/c"]);
        assert_eq!(page.next, None);
    }

    #[test]
    fn rejects_bad_prefixes_and_limits() {
        for bad in [
            ListQuery::prefix("a\nb").err(),
            ListQuery::prefix("x".repeat(513)).err(),
            ListQuery::prefix("").unwrap().with_limit(0).err(),
            ListQuery::prefix("").unwrap().with_limit(1001).err(),
        ] {
            assert_eq!(bad.unwrap().kind(), ErrorKind::InvalidInput);
        }
        assert!(ListQuery::prefix("*?[%_{\\").unwrap().admits("*?[%_{\\x"));
        assert!(!ListQuery::prefix("a%").unwrap().admits("ab"));
    }
}
