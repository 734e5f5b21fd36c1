//! Validated lock names.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The name of a lock: 1 to 512 bytes of UTF-8 without NUL or other control characters.
///
/// Any other bytes are allowed and every backend keeps them apart: quotes, `'; DROP TABLE`,
/// Lua-breaking strings, `{}`, `*?[]`, `/` and Unicode all name distinct locks, and `a`, `ab`
/// and `a/b` are three different locks. Cloning is cheap (shared string).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LockName(Arc<str>);

impl LockName {
    /// The longest name accepted, in bytes.
    pub const MAX_LEN: usize = 512;

    /// Validates `name`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the name is empty, longer than [`LockName::MAX_LEN`] bytes,
    /// or contains a NUL or other control character.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name: String = name.into();
        if name.is_empty() {
            return Err(Error::invalid(
                "lock name",
                "it is empty; give the lock a name",
            ));
        }
        if name.len() > Self::MAX_LEN {
            return Err(Error::invalid(
                "lock name",
                format!(
                    "it is {} bytes long; the limit is {} bytes",
                    name.len(),
                    Self::MAX_LEN
                ),
            ));
        }
        if let Some((at, c)) = name.char_indices().find(|(_, c)| c.is_control()) {
            return Err(Error::invalid(
                "lock name",
                format!(
                    "it contains the control character U+{:04X} at byte {at}; names may not contain NUL or control characters",
                    u32::from(c)
                ),
            ));
        }
        Ok(Self(name.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for LockName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for LockName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for LockName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for LockName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for LockName {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<LockName> for String {
    fn from(name: LockName) -> String {
        name.0.to_string()
    }
}

/// Anything that can name a lock: `&str`, `String`, or an already validated [`LockName`].
///
/// Lets [`crate::Locker`] methods take plain strings while keeping validation in one place.
pub trait IntoLockName {
    /// Validates and converts.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for names [`LockName::new`] rejects.
    fn into_lock_name(self) -> Result<LockName, Error>;
}

impl IntoLockName for LockName {
    fn into_lock_name(self) -> Result<LockName, Error> {
        Ok(self)
    }
}

impl IntoLockName for &LockName {
    fn into_lock_name(self) -> Result<LockName, Error> {
        Ok(self.clone())
    }
}

impl IntoLockName for &str {
    fn into_lock_name(self) -> Result<LockName, Error> {
        LockName::new(self)
    }
}

impl IntoLockName for String {
    fn into_lock_name(self) -> Result<LockName, Error> {
        LockName::new(self)
    }
}

impl IntoLockName for &String {
    fn into_lock_name(self) -> Result<LockName, Error> {
        LockName::new(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn accepts_hostile_but_printable_names() {
        for name in [
            "a",
            "'; DROP TABLE leases; --",
            "]] .. redis.call('FLUSHALL') .. [[",
            "{tag}*?[]",
            "a/b",
            "ünïcødé 🔒",
            &"x".repeat(LockName::MAX_LEN),
        ] {
            assert_eq!(LockName::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn rejects_empty_huge_and_control_characters() {
        let too_long = "x".repeat(LockName::MAX_LEN + 1);
        for bad in [
            "",
            too_long.as_str(),
            "a\0b",
            "line\nbreak",
            "tab\there",
            "\u{7f}",
        ] {
            let err = LockName::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("lock name"), "{err}");
        }
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<LockName>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<LockName>("\"\"").is_err());
    }
}
