//! Fencing tokens: the number that orders every grant of one lock.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A fencing token: strictly greater than every token granted before it for the same lock name.
///
/// The holder passes it with every write to a downstream store, and the store rejects any
/// write whose token is lower than one it has already accepted (see [`crate::FenceGate`]).
/// Equal tokens are admitted: one holder writes many times with the same token.
///
/// Backends that pass tokens through Lua numbers keep them at or below
/// [`FencingToken::MAX_EXACT`] (2^53 − 1), the largest integer an IEEE double represents
/// exactly; going past it is an error, never a wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(u64);

impl FencingToken {
    /// The largest token every backend can carry exactly (2^53 − 1).
    pub const MAX_EXACT: u64 = (1 << 53) - 1;

    /// Wraps a raw token value as issued by a store.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The raw value, e.g. to store beside a fenced row.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<FencingToken> for u64 {
    fn from(token: FencingToken) -> u64 {
        token.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_displays_like_the_number() {
        assert!(FencingToken::new(2) > FencingToken::new(1));
        assert_eq!(FencingToken::new(17).to_string(), "17");
        assert_eq!(u64::from(FencingToken::new(9)), 9);
    }

    #[test]
    fn serializes_as_a_bare_number() {
        let json = serde_json::to_string(&FencingToken::new(42)).unwrap();
        assert_eq!(json, "42");
        let back: FencingToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back, FencingToken::new(42));
    }
}
