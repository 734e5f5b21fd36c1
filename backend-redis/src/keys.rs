//! Where a lock lives in Redis: key names, hash tags and the release channel.
//!
//! For a lock named `N` under prefix `P` (default `fencelock:`):
//!
//! | what | key |
//! | --- | --- |
//! | the grant (`"<holder hex>:<token>"`, with a PX TTL) | `P{T}:lock:N` |
//! | the token counter (never deleted) | `P{T}:token:N` |
//! | the release channel (pub/sub, payload: `N`) | `P{T}:released:N` |
//!
//! A semaphore named `N` (see the crate docs, "Semaphores") has keys of its own, separate from
//! the lock `N`'s:
//!
//! | what | key |
//! | --- | --- |
//! | the live permits (ZSET: `"<holder hex>:<token>[:<label>]"` scored by expiry, server µs) | `P{T}:permits:N` |
//! | the limit the live permits were granted under | `P{T}:permit-limit:N` |
//! | the permit token counter (never deleted) | `P{T}:permit-token:N` |
//! | the permit release channel (pub/sub, payload: `N`) | `P{T}:permit-released:N` |
//!
//! `T` is the 16-hex-digit FNV-1a hash of `N`. Redis Cluster hashes only the text between the
//! *first* `{` and the next `}`; the prefix may not contain braces, so that text is always our
//! `T`, whatever braces the name holds, and both keys of one lock land in one slot. Two names
//! whose hashes collide merely share a slot: the full name still follows the tag, so their keys
//! stay distinct. The layout is part of the on-server format: changing it orphans held locks.
//!
//! Each lock has its own release channel, so a subscriber hears only the names it waits on.
//! Channel names are binary-safe and matched exactly (`SUBSCRIBE`, never `PSUBSCRIBE`), so glob
//! characters in a name are plain text. On one server releases use classic `PUBLISH`; on a
//! Redis Cluster they use sharded pub/sub (`SPUBLISH`, Redis 7.0+), which the tag keeps on the
//! lock's own shard.

use fencelock_core::{Error, LockName};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "fencelock:";

/// The longest key prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 128;

/// Builds the keys of locks and semaphores under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

/// The keys of one lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockKeys {
    /// Holds the current grant as `"<holder hex>:<token>"`, with the lease TTL.
    pub lock: String,
    /// Holds the last token minted for the name; never deleted.
    pub counter: String,
}

/// The keys of one semaphore (all in the slot of the name's tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermitKeys {
    /// A sorted set of the live permits, each stored as a lock's grant is
    /// (`"<holder hex>:<token>[:<label>]"`), scored by its expiry in server microseconds; it
    /// expires with its last permit.
    pub permits: String,
    /// The limit the live permits were granted under; it goes with the last permit.
    pub limit: String,
    /// Holds the last permit token minted for the name; never deleted.
    pub counter: String,
}

impl KeyLayout {
    /// A layout under `prefix`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the prefix is longer than [`MAX_PREFIX_LEN`] bytes or holds
    /// `{`, `}` or control characters (braces would change the cluster hash slot).
    pub fn new(prefix: impl Into<String>) -> Result<Self, Error> {
        let prefix = prefix.into();
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::invalid(
                "key prefix",
                format!(
                    "it is {} bytes long; the limit is {MAX_PREFIX_LEN}",
                    prefix.len()
                ),
            ));
        }
        if let Some(c) = prefix
            .chars()
            .find(|c| matches!(c, '{' | '}') || c.is_control())
        {
            return Err(Error::invalid(
                "key prefix",
                format!(
                    "it contains {c:?}; braces would move keys between Redis Cluster slots, drop them"
                ),
            ));
        }
        Ok(Self { prefix })
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The keys of the lock `name`.
    pub fn lock(&self, name: &LockName) -> LockKeys {
        let tag = tag_of(name.as_str());
        LockKeys {
            lock: self.key(&tag, "lock", name),
            counter: self.key(&tag, "token", name),
        }
    }

    /// The key holding the grant of the lock `name` (the `lock` of [`Self::lock`]).
    pub fn lock_key(&self, name: &LockName) -> String {
        self.key(&tag_of(name.as_str()), "lock", name)
    }

    /// The pub/sub channel releases of the lock `name` are announced on (payload: the name).
    pub fn release_channel(&self, name: &LockName) -> String {
        self.key(&tag_of(name.as_str()), "released", name)
    }

    /// The keys of the semaphore `name`.
    pub fn permits(&self, name: &LockName) -> PermitKeys {
        let tag = tag_of(name.as_str());
        PermitKeys {
            permits: self.key(&tag, "permits", name),
            limit: self.key(&tag, "permit-limit", name),
            counter: self.key(&tag, "permit-token", name),
        }
    }

    /// The pub/sub channel releases of permits of the semaphore `name` are announced on
    /// (payload: the name).
    pub fn permit_channel(&self, name: &LockName) -> String {
        self.key(&tag_of(name.as_str()), "permit-released", name)
    }

    /// Whether `channel` is the permit release channel of the semaphore `name` (else, on a
    /// subscriber of this layout, it is the lock `name`'s release channel). The channel ends
    /// `}:permit-released:<name>` only for a permit channel: a lock's ends `}:released:<name>`.
    pub fn is_permit_channel(channel: &str, name: &str) -> bool {
        channel
            .strip_suffix(name)
            .is_some_and(|head| head.ends_with("}:permit-released:"))
    }

    /// `<prefix>{<tag>}:<kind>:<name>`, built without the formatting machinery (this runs
    /// two or three times per lock operation).
    fn key(&self, tag: &[u8; 16], kind: &str, name: &LockName) -> String {
        let name = name.as_str();
        let mut key =
            String::with_capacity(self.prefix.len() + tag.len() + kind.len() + name.len() + 4);
        key.push_str(&self.prefix);
        key.push('{');
        // The tag is 16 ASCII hex digits.
        key.extend(tag.iter().map(|&b| char::from(b)));
        key.push_str("}:");
        key.push_str(kind);
        key.push(':');
        key.push_str(name);
        key
    }
}

impl Default for KeyLayout {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

/// The cluster hash tag of a lock name: 64-bit FNV-1a of its bytes, as 16 hex digits.
///
/// Stable across processes, versions and platforms (it is part of the key layout).
pub fn hash_tag(name: &str) -> String {
    tag_of(name).iter().map(|&b| char::from(b)).collect()
}

/// [`hash_tag`] as ASCII bytes, without allocating.
fn tag_of(name: &str) -> [u8; 16] {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = name
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    crate::grant::hex_digits(u128::from(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> LockName {
        LockName::new(s).unwrap()
    }

    /// The slot-determining part of a key, by Redis Cluster's rule.
    fn cluster_tag(key: &str) -> &str {
        if let Some(open) = key.find('{')
            && let Some(len) = key[open + 1..].find('}')
            && len > 0
        {
            return &key[open + 1..open + 1 + len];
        }
        key
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(hash_tag(""), "cbf29ce484222325");
        assert_eq!(hash_tag("a"), "af63dc4c8601ec8c");
        assert_eq!(hash_tag("foobar"), "85944171f73967e8");
    }

    #[test]
    fn lock_and_counter_share_our_tag_whatever_braces_the_name_holds() {
        let layout = KeyLayout::default();
        for n in ["a", "{a}", "}{", "{", "x{}y", "{{b}}", "ünï{ç}"] {
            let keys = layout.lock(&name(n));
            assert_eq!(cluster_tag(&keys.lock), hash_tag(n), "{n}");
            assert_eq!(cluster_tag(&keys.counter), hash_tag(n), "{n}");
            let channel = layout.release_channel(&name(n));
            assert_eq!(cluster_tag(&channel), hash_tag(n), "{n}");
            assert!(channel.ends_with(&format!(":released:{n}")));
            assert!(keys.lock.ends_with(&format!(":lock:{n}")));
            assert_eq!(layout.lock_key(&name(n)), keys.lock);
            assert_ne!(keys.lock, keys.counter);
        }
    }

    #[test]
    fn permit_keys_share_the_tag_and_never_meet_the_lock_keys() {
        let layout = KeyLayout::default();
        for n in [
            "a",
            "{a}",
            "}{",
            "{",
            "x{}y",
            "{{b}}",
            "ünï{ç}",
            "*?[]'\"--]]",
        ] {
            let lock = layout.lock(&name(n));
            let sem = layout.permits(&name(n));
            let channel = layout.permit_channel(&name(n));
            let all = [
                &lock.lock,
                &lock.counter,
                &layout.release_channel(&name(n)),
                &sem.permits,
                &sem.limit,
                &sem.counter,
                &channel,
            ];
            for key in all {
                assert_eq!(cluster_tag(key), hash_tag(n), "{key}");
                assert!(key.ends_with(&format!(":{n}")), "{key}");
            }
            let distinct: std::collections::BTreeSet<_> = all.iter().collect();
            assert_eq!(distinct.len(), all.len(), "{all:?}");
        }
        // A name with a kind in it still cannot reach another name's key of another kind: the
        // kinds differ before the first `:` after the tag.
        let tricky = layout.permits(&name("lock:x"));
        assert_ne!(tricky.permits, layout.lock_key(&name("x")));
    }

    #[test]
    fn permit_channels_are_told_from_lock_channels() {
        let layout = KeyLayout::default();
        for n in [
            "a",
            "permit-released:a",
            "}:permit-released:",
            "x{}:released:y",
        ] {
            let permit = layout.permit_channel(&name(n));
            let lock = layout.release_channel(&name(n));
            assert!(KeyLayout::is_permit_channel(&permit, n), "{permit}");
            assert!(!KeyLayout::is_permit_channel(&lock, n), "{lock}");
        }
    }

    #[test]
    fn distinct_names_get_distinct_keys() {
        let layout = KeyLayout::new("p:").unwrap();
        let a = layout.lock(&name("a:b"));
        let b = layout.lock(&name("a"));
        assert_ne!(a.lock, b.lock);
        assert_ne!(
            layout.release_channel(&name("a:b")),
            layout.release_channel(&name("a"))
        );
        assert_eq!(
            layout.release_channel(&name("a")),
            "p:{af63dc4c8601ec8c}:released:a"
        );
    }

    #[test]
    fn prefixes_with_braces_or_control_characters_are_rejected() {
        for bad in ["{x}", "a}", "tab\t", &"p".repeat(MAX_PREFIX_LEN + 1)] {
            let err = KeyLayout::new(bad).unwrap_err();
            assert_eq!(err.kind(), fencelock_core::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(KeyLayout::new("").is_ok());
        assert!(KeyLayout::new("app/locks:").is_ok());
    }
}
