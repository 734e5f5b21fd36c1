//! The value stored in a lock key: `"<holder id as 32 hex digits>:<token in decimal>"`.
//!
//! Renew and release compare the whole string, so they check holder id *and* token in one
//! string comparison inside the script.

use fencelock_core::{FencingToken, HolderId, Lease};

/// One grant as stored in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) holder: HolderId,
    pub(crate) token: FencingToken,
}

impl Grant {
    /// The grant `lease` was given.
    pub(crate) fn of(lease: &Lease) -> Self {
        Self {
            holder: lease.holder(),
            token: lease.token(),
        }
    }

    /// The stored form, exactly as the acquire script writes it.
    pub(crate) fn encode(self) -> String {
        format!("{}:{}", self.holder, self.token)
    }

    /// Parses the stored form; `None` for anything the acquire script did not write.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (holder, token) = value.split_once(':')?;
        if holder.len() != 32 || token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let token = token.parse::<u64>().ok()?;
        if token > FencingToken::MAX_EXACT {
            return None;
        }
        Some(Self {
            holder: HolderId::parse_hex(holder).ok()?,
            token: FencingToken::new(token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_values() {
        let grant = Grant {
            holder: HolderId::from_u128(0xabc),
            token: FencingToken::new(1_700_000_000_000_123),
        };
        let encoded = grant.encode();
        assert_eq!(encoded, "00000000000000000000000000000abc:1700000000000123");
        assert_eq!(Grant::parse(&encoded), Some(grant));
        for bad in [
            "",
            "abc:1",
            "00000000000000000000000000000abc:",
            "00000000000000000000000000000abc:-1",
            "00000000000000000000000000000abc:1.5e+15",
            "00000000000000000000000000000abc:9007199254740992",
            "0000000000000000000000000000zabc:1",
        ] {
            assert_eq!(Grant::parse(bad), None, "{bad:?}");
        }
    }
}
