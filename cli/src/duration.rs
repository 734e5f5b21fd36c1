//! Durations on the command line: `500ms`, `30s`, `2m`, `1h`, `1h30m`; a unit is required.

use std::fmt;
use std::time::Duration;

/// Why a duration was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Nothing was given.
    Empty,
    /// A number without a unit (`30`): seconds or milliseconds would be a guess.
    MissingUnit(String),
    /// Anything else `humantime` rejects.
    Invalid { input: String, reason: String },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty duration; write e.g. 30s, 500ms, 2m or 1h"),
            Self::MissingUnit(input) => {
                write!(f, "`{input}` has no unit; write e.g. {input}s or {input}ms")
            }
            Self::Invalid { input, reason } => write!(
                f,
                "`{input}` is not a duration ({reason}); write e.g. 30s, 500ms, 2m or 1h"
            ),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration strictly.
///
/// # Errors
/// A [`DurationError`] for empty input, a bare number, or anything else `humantime` rejects
/// (negative numbers, unknown units, overflow).
pub(crate) fn parse(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(DurationError::MissingUnit(trimmed.to_owned()));
    }
    humantime::parse_duration(trimmed).map_err(|e| DurationError::Invalid {
        input: trimmed.to_owned(),
        reason: e.to_string(),
    })
}

/// How long `run` waits for a held lock: a duration, or `forever`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitFor {
    /// Up to this long.
    Up(Duration),
    /// Until granted.
    Forever,
}

/// Parses `--wait`: a duration or `forever`.
///
/// # Errors
/// As [`parse`].
pub(crate) fn parse_wait(input: &str) -> Result<WaitFor, DurationError> {
    if input.trim().eq_ignore_ascii_case("forever") {
        return Ok(WaitFor::Forever);
    }
    parse(input).map(WaitFor::Up)
}

/// A short human form: `850ms`, `12.4s`, `3m05s`, `2h10m`.
pub(crate) fn short(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h{:02}m", d.as_secs() / 3600, (d.as_secs() / 60) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_durations_with_units() {
        for (input, expected) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            (" 2m ", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rejects_with_typed_errors() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("30"), Err(DurationError::MissingUnit("30".into())));
        for bad in [
            "-5s",
            "5 parsecs",
            "ten seconds",
            "1s1",
            "99999999999999999999h",
        ] {
            assert!(
                matches!(parse(bad), Err(DurationError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn wait_accepts_forever() {
        assert_eq!(parse_wait("forever"), Ok(WaitFor::Forever));
        assert_eq!(parse_wait("3s"), Ok(WaitFor::Up(Duration::from_secs(3))));
        assert!(parse_wait("never").is_err());
    }

    #[test]
    fn short_forms() {
        assert_eq!(short(Duration::from_millis(850)), "850ms");
        assert_eq!(short(Duration::from_millis(12_400)), "12.4s");
        assert_eq!(short(Duration::from_secs(185)), "3m05s");
        assert_eq!(short(Duration::from_secs(7800)), "2h10m");
    }
}
