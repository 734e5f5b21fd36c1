//! The value stored in a lock key (and as a permit in its semaphore's set): `"<holder id as 32
//! hex digits>:<token in decimal>"`, then `":<owner label>"` when the grant has one.
//!
//! Renew and release compare the whole string, so they check holder id *and* token in one
//! string comparison inside the script (the label rides along: the lease carries it, so the
//! holder sends the very value the acquire script wrote).

use fencelock_core::backend::stored_label;
use fencelock_core::{FencingToken, HolderId, Lease, OwnerLabel};
use redis::{RedisWrite, ToRedisArgs};
use std::io::Write as _;

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

    /// The stored form of a grant without a label, exactly as the acquire script writes it
    /// (requests send [`value_of`]).
    #[cfg(test)]
    pub(crate) fn encode(self) -> String {
        String::from_utf8_lossy(self.encoded().as_bytes()).into_owned()
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

    /// Parses the stored form (label or not); `None` for anything the acquire script did not
    /// write.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (holder, rest) = value.split_once(':')?;
        let token = rest.split_once(':').map_or(rest, |(token, _label)| token);
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

/// The owner label of a stored value, if it carries one.
pub(crate) fn label_of(value: &str) -> Option<OwnerLabel> {
    value.splitn(3, ':').nth(2).and_then(stored_label)
}

/// The acquire script's label argument: `":<label>"`, or empty for a grant without one (the
/// script appends it to the value as is).
pub(crate) fn label_suffix(label: Option<&OwnerLabel>) -> impl ToRedisArgs + '_ {
    Stored { grant: None, label }
}

/// The value `lease`'s grant is stored as, label included, for the scripts that compare it.
pub(crate) fn value_of(lease: &Lease) -> impl ToRedisArgs + '_ {
    Stored {
        grant: Some(Grant::of(lease).encoded()),
        label: lease.label(),
    }
}

/// [`value_of`] (the fixed-size grant, then `:` and the label if any) or [`label_suffix`] (no
/// grant), written straight into the command as one argument: no string is built for it.
struct Stored<'a> {
    grant: Option<Encoded>,
    label: Option<&'a OwnerLabel>,
}

impl ToRedisArgs for Stored<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let grant = self.grant.as_ref().map_or(&[][..], Encoded::as_bytes);
        let Some(label) = self.label else {
            return out.write_arg(grant);
        };
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg
            .write_all(grant)
            .and_then(|()| arg.write_all(b":"))
            .and_then(|()| arg.write_all(label.as_str().as_bytes()));
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
        assert_eq!(label_of(&encoded), None);
        let labeled = format!("{encoded}:host:42 {{x}}");
        assert_eq!(Grant::parse(&labeled), Some(grant));
        assert_eq!(label_of(&labeled).unwrap().as_str(), "host:42 {x}");
        assert_eq!(label_of(&format!("{encoded}:")), None);
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
