//! The value stored in a lock key: `"<holder id as 32 hex digits>:<token in decimal>"`.
//!
//! Renew and release compare the whole string, so they check holder id *and* token in one
//! string comparison inside the script.

use fencelock_core::{FencingToken, HolderId, Lease};
use redis::{RedisWrite, ToRedisArgs};

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

    /// The stored form, exactly as the acquire script writes it (requests send
    /// [`Self::arg`]).
    #[cfg(test)]
    pub(crate) fn encode(self) -> String {
        String::from_utf8_lossy(self.encoded().as_bytes()).into_owned()
    }

    /// The stored form as a command argument, written straight into the command.
    pub(crate) fn arg(self) -> impl ToRedisArgs {
        self.encoded()
    }

    /// The stored form in a buffer, without the formatting machinery (this runs for every
    /// renew and release).
    fn encoded(self) -> Encoded {
        let mut bytes = [0u8; ENCODED_MAX];
        bytes[..32].copy_from_slice(&holder_hex(self.holder));
        bytes[32] = b':';
        let mut token = self.token.get();
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (token % 10) as u8;
            token /= 10;
            if token == 0 {
                break;
            }
        }
        let len = 33 + digits.len() - start;
        bytes[33..len].copy_from_slice(&digits[start..]);
        Encoded { bytes, len }
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

/// 32 hex digits, 1 colon, up to 20 decimal digits.
const ENCODED_MAX: usize = 53;

/// [`Grant::encode`] in a buffer.
struct Encoded {
    bytes: [u8; ENCODED_MAX],
    len: usize,
}

impl Encoded {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl ToRedisArgs for Encoded {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.as_bytes());
    }
}

/// A holder id as the 32 lowercase hex digits of its `Display`, without formatting.
pub(crate) fn holder_hex(holder: HolderId) -> [u8; 32] {
    hex_digits(holder.as_u128())
}

/// The last `N` lowercase hex digits of `value`, zero-padded, as ASCII.
pub(crate) fn hex_digits<const N: usize>(mut value: u128) -> [u8; N] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; N];
    for digit in hex.iter_mut().rev() {
        *digit = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_values() {
        let grant = Grant {
            holder: fencelock_core::backend::holder_id(0xabc),
            token: FencingToken::new(1_700_000_000_000_123),
        };
        let encoded = grant.encode();
        assert_eq!(encoded, "00000000000000000000000000000abc:1700000000000123");
        for (holder, token) in [(0, 0), (u128::MAX, u64::MAX), (0x1234_5678, 10)] {
            let grant = Grant {
                holder: fencelock_core::backend::holder_id(holder),
                token: FencingToken::new(token),
            };
            let formatted = format!("{}:{}", grant.holder, grant.token);
            assert_eq!(grant.encode(), formatted);
        }
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
