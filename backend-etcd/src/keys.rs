//! The key layout, shared with etcd's own `concurrency.Mutex` (what `etcdctl lock NAME` uses):
//! every holder or waiter of `NAME` owns the key `<prefix>NAME/<lease id in hex>`, attached to
//! its lease; the owner is the key with the lowest create revision.
//!
//! Semaphores ([`crate::permits`]) use the same shape under a reserved segment:
//! `<prefix>\x1fsemaphores/NAME/<lease id in hex>` ([`SEMAPHORE_SEGMENT`]). No lock key can
//! start with it, because a lock name cannot contain a control character (and neither can the key
//! prefix), so under one key prefix a semaphore and any lock never see each other's keys: no
//! lock's range (`<prefix>NAME/`) holds a semaphore key, no semaphore's range holds a lock key,
//! and `etcdctl lock <prefix>NAME` never waits on a permit. (Across stores with different
//! prefixes, one store's keys can fall in the other's ranges, for locks as for semaphores, as
//! keys of nested names; they are never members there.)

use fencelock_core::backend::holder_id;
use fencelock_core::{Error, FencingToken, HolderId, LockName, Operation};

use crate::classify::STORE;

/// The keys of one lock: its holder's and its waiters', everything directly below
/// `<prefix><name>/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LockKeys {
    prefix: Vec<u8>,
}

/// What every semaphore key starts with after the store's key prefix: a control character
/// (never in a lock name or a key prefix), then `semaphores/`.
pub(crate) const SEMAPHORE_SEGMENT: &str = "\u{1f}semaphores/";

impl LockKeys {
    /// The keys of the semaphore `name`: `<prefix>\x1fsemaphores/NAME/`, laid out like a lock's.
    pub(crate) fn semaphore(key_prefix: &str, name: &LockName) -> Self {
        Self::new(&format!("{key_prefix}{SEMAPHORE_SEGMENT}"), name)
    }

    pub(crate) fn new(key_prefix: &str, name: &LockName) -> Self {
        let mut prefix = Vec::with_capacity(key_prefix.len() + name.as_str().len() + 1);
        prefix.extend_from_slice(key_prefix.as_bytes());
        prefix.extend_from_slice(name.as_str().as_bytes());
        prefix.push(b'/');
        Self { prefix }
    }

    /// `<prefix><name>/`, the range every member lives in.
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The key of the holder (or waiter) with lease `lease_id`.
    pub(crate) fn holder_key(&self, lease_id: i64) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(lease_id_hex(lease_id).as_bytes());
        key
    }

    /// Whether `key` is a holder's or waiter's key of this lock: the prefix followed by a lease
    /// id in hex and nothing else. Keys of nested names (`name/sub/…` for the lock `name/sub`)
    /// share the range but are not members, so `a` and `a/b` stay two locks.
    pub(crate) fn is_member(&self, key: &[u8]) -> bool {
        let Some(rest) = key.strip_prefix(self.prefix.as_slice()) else {
            return false;
        };
        let digits = rest.strip_prefix(b"-").unwrap_or(rest);
        !digits.is_empty() && digits.len() <= 16 && digits.iter().all(u8::is_ascii_hexdigit)
    }
}

/// A lease id the way Go's `fmt.Sprintf("%x", int64)` prints it (lowercase, `-` for negatives,
/// which etcd never hands out).
pub(crate) fn lease_id_hex(lease_id: i64) -> String {
    if lease_id < 0 {
        format!("-{:x}", lease_id.unsigned_abs())
    } else {
        format!("{lease_id:x}")
    }
}

/// The holder id of a grant: its etcd lease id.
pub(crate) fn holder_of(lease_id: i64) -> HolderId {
    holder_id(u128::from(lease_id as u64))
}

/// The etcd lease id behind a holder id, if it can be one.
pub(crate) fn lease_id_of(holder: HolderId) -> Option<i64> {
    u64::try_from(holder.as_u128())
        .ok()
        .map(|id| id as i64)
        .filter(|id| *id != 0)
}

/// The fencing token of a key: its create revision.
pub(crate) fn token_of(create_revision: i64, op: Operation) -> Result<FencingToken, Error> {
    u64::try_from(create_revision)
        .ok()
        .filter(|rev| (1..=FencingToken::MAX_EXACT).contains(rev))
        .map(FencingToken::new)
        .ok_or_else(|| {
            Error::backend(
                STORE,
                op,
                format!(
                    "create revision {create_revision} is outside 1..=2^53-1 and cannot be a fencing token"
                ),
            )
        })
}

/// The create revision a token stands for, if it can be one.
pub(crate) fn revision_of(token: FencingToken) -> Option<i64> {
    i64::try_from(token.get()).ok().filter(|rev| *rev > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(name: &str) -> LockKeys {
        LockKeys::new("", &LockName::new(name).unwrap())
    }

    #[test]
    fn layout_matches_go_concurrency_mutex() {
        let k = keys("foo");
        assert_eq!(k.prefix(), b"foo/");
        // etcdctl printed `foo/7c2da1fda21ab20c` for this lease.
        assert_eq!(k.holder_key(0x7c2d_a1fd_a21a_b20c), b"foo/7c2da1fda21ab20c");
        assert_eq!(lease_id_hex(-26), "-1a");
        assert_eq!(
            LockKeys::new("locks/", &LockName::new("a b").unwrap()).holder_key(255),
            b"locks/a b/ff"
        );
    }

    #[test]
    fn semaphore_keys_never_fall_in_a_lock_range() {
        let sem = LockKeys::semaphore("fl/", &LockName::new("a").unwrap());
        assert_eq!(sem.prefix(), b"fl/\x1fsemaphores/a/");
        assert_eq!(sem.holder_key(255), b"fl/\x1fsemaphores/a/ff");
        // Under the same prefix, the lock `a` and other names: none has the semaphore's keys
        // in its range, and the semaphore's range holds no lock key.
        for lock in ["a", "semaphores", "semaphores/a", "\u{1f}semaphores"] {
            let Ok(name) = LockName::new(lock) else {
                continue; // a control character: no lock can be named so
            };
            for prefix in ["", "fl/"] {
                let sem = LockKeys::semaphore(prefix, &LockName::new("a").unwrap());
                let keys = LockKeys::new(prefix, &name);
                assert!(!sem.holder_key(255).starts_with(keys.prefix()), "{lock}");
                assert!(!keys.holder_key(255).starts_with(sem.prefix()), "{lock}");
            }
        }
        assert!(LockName::new("\u{1f}semaphores/a").is_err());
    }

    #[test]
    fn nested_names_are_not_members() {
        let k = keys("a");
        for (key, member) in [
            (&b"a/ff"[..], true),
            (b"a/-1a", true),
            (b"a/", false),
            (b"a/b/ff", false),
            (b"a//ff", false),
            (b"ab/ff", false),
            (b"a/xyz", false),
            (b"a/0123456789abcdef0", false),
        ] {
            assert_eq!(k.is_member(key), member, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn holder_ids_round_trip_lease_ids() {
        for id in [1, 0x7c2d_a1fd_a21a_b20c, i64::MAX] {
            assert_eq!(lease_id_of(holder_of(id)), Some(id));
        }
        assert_eq!(lease_id_of(holder_id(u128::MAX)), None);
        assert_eq!(lease_id_of(holder_id(0)), None);
    }

    #[test]
    fn tokens_are_positive_exact_revisions() {
        assert_eq!(token_of(7, Operation::Acquire).unwrap().get(), 7);
        assert!(token_of(0, Operation::Acquire).is_err());
        assert!(token_of(-1, Operation::Acquire).is_err());
        assert!(token_of(1 << 53, Operation::Acquire).is_err());
        assert_eq!(revision_of(FencingToken::new(7)), Some(7));
        assert_eq!(revision_of(FencingToken::new(u64::MAX)), None);
        assert_eq!(revision_of(FencingToken::new(0)), None);
    }
}
