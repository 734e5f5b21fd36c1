//! Owner labels: who holds a grant, in words an operator reads.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::Error;

/// A short note stored with a grant that says who holds it: `"web-3:4711"`, `"billing nightly"`.
///
/// 1 to 256 bytes of UTF-8 without NUL or other control characters (validated like
/// [`crate::LockName`]). Stores keep it atomically with the grant and report it in
/// [`crate::LeaseInfo::label`] and listings, so `fencelock status` can show a host and process
/// instead of a random holder id. A label is for people and tools, never for safety: renew and
/// release compare the holder id and the token, not the label, and two holders may use the same
/// label. On etcd it is the lock key's value, where `etcdctl get` and `etcdctl elect -l` look.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OwnerLabel(Arc<str>);

impl OwnerLabel {
    /// The longest label accepted, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Validates `label`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the label is empty, longer than [`OwnerLabel::MAX_LEN`]
    /// bytes, or contains a NUL or other control character.
    pub fn new(label: impl Into<String>) -> Result<Self, Error> {
        let label: String = label.into();
        if label.is_empty() {
            return Err(Error::invalid(
                "owner label",
                "it is empty; leave the label out instead (AcquireOptions::without_label)",
            ));
        }
        if label.len() > Self::MAX_LEN {
            return Err(Error::invalid(
                "owner label",
                format!(
                    "it is {} bytes long; the limit is {} bytes",
                    label.len(),
                    Self::MAX_LEN
                ),
            ));
        }
        if let Some((at, c)) = label.char_indices().find(|(_, c)| c.is_control()) {
            return Err(Error::invalid(
                "owner label",
                format!(
                    "it contains the control character U+{:04X} at byte {at}; labels may not contain NUL or control characters",
                    u32::from(c)
                ),
            ));
        }
        Ok(Self(label.into()))
    }

    /// The default label of this process: `"<hostname>:<pid>"`, computed once.
    ///
    /// An operator who sees a lock held asks "which machine, which process?" first; host and
    /// pid answer it without configuration, and are enough to find the process (`ssh host`,
    /// `kill pid`). The hostname comes from the kernel (`/proc/sys/kernel/hostname`), else the
    /// `HOSTNAME` environment variable, else `"localhost"`; control characters are dropped and
    /// it is cut to fit the limit.
    pub fn this_process() -> Self {
        static THIS: OnceLock<OwnerLabel> = OnceLock::new();
        THIS.get_or_init(|| Self::for_host(&hostname(), std::process::id()))
            .clone()
    }

    /// `"<host>:<pid>"`, with `host` cleaned and cut to fit.
    fn for_host(host: &str, pid: u32) -> Self {
        let suffix = format!(":{pid}");
        let mut host: String = host.chars().filter(|c| !c.is_control()).collect();
        if host.is_empty() {
            host = "localhost".to_owned();
        }
        let room = Self::MAX_LEN - suffix.len();
        while host.len() > room {
            host.pop();
        }
        Self(format!("{host}{suffix}").into())
    }

    /// The label as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads a label a store kept: `None` for an empty or absent value, or one fencelock did not
    /// write and cannot show safely (too long, control characters) — a label is information,
    /// never a reason to fail an inspect (backends).
    pub(crate) fn from_stored(stored: &str) -> Option<Self> {
        Self::new(stored).ok()
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

impl fmt::Debug for OwnerLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for OwnerLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OwnerLabel {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for OwnerLabel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for OwnerLabel {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for OwnerLabel {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<OwnerLabel> for String {
    fn from(label: OwnerLabel) -> String {
        label.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn accepts_printable_labels_up_to_the_limit() {
        for label in [
            "a",
            "web-3:4711",
            "'; DROP TABLE x; --",
            "ünï 🔒 *?[%_{\\",
            &"x".repeat(256),
        ] {
            assert_eq!(OwnerLabel::new(label).unwrap().as_str(), label);
        }
    }

    #[test]
    fn rejects_empty_long_and_control_characters() {
        let too_long = "x".repeat(OwnerLabel::MAX_LEN + 1);
        for bad in ["", too_long.as_str(), "a\0b", "line\nbreak", "\u{7f}"] {
            let err = OwnerLabel::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("owner label"), "{err}");
        }
    }

    #[test]
    fn default_label_is_host_and_pid_and_always_valid() {
        let this = OwnerLabel::this_process();
        assert!(this.as_str().ends_with(&format!(":{}", std::process::id())));
        assert!(OwnerLabel::new(this.as_str()).is_ok());
        for host in ["", "h\nost", &"é".repeat(300)] {
            let label = OwnerLabel::for_host(host, u32::MAX);
            assert!(OwnerLabel::new(label.as_str()).is_ok(), "{host:?}");
            assert!(label.as_str().ends_with(":4294967295"));
        }
    }
}
