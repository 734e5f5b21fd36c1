//! What a store can say about its own safety for locks: structured findings that a program can
//! check at start-up and the `fencelock check` command renders.

use std::fmt;

use serde::Serialize;

/// How a finding bears on the guarantees of locks taken on the store.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Fine for locks.
    Ok,
    /// Works, but a guarantee is weaker than it could be (say why in the advice).
    Warn,
    /// Locks cannot work safely here (a read-only replica, no leader, no quorum).
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        })
    }
}

/// One checked setting: what it is, what the store said, the verdict, and what to do.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The setting or property checked (`"appendonly"`, `"synchronous_commit"`, `"leader"`).
    pub setting: String,
    /// What the store reported for it (`"no"`, `"local"`, `"3 members"`).
    pub value: String,
    /// How it bears on the locks.
    pub verdict: Verdict,
    /// What it means for the locks, and what to change when it is not `Ok`.
    pub advice: String,
}

impl Finding {
    /// A finding with the given verdict.
    pub fn new(
        verdict: Verdict,
        setting: impl Into<String>,
        value: impl Into<String>,
        advice: impl Into<String>,
    ) -> Self {
        Self {
            setting: setting.into(),
            value: value.into(),
            verdict,
            advice: advice.into(),
        }
    }

    /// An `Ok` finding.
    pub fn ok(
        setting: impl Into<String>,
        value: impl Into<String>,
        advice: impl Into<String>,
    ) -> Self {
        Self::new(Verdict::Ok, setting, value, advice)
    }

    /// A `Warn` finding.
    pub fn warn(
        setting: impl Into<String>,
        value: impl Into<String>,
        advice: impl Into<String>,
    ) -> Self {
        Self::new(Verdict::Warn, setting, value, advice)
    }

    /// A `Fail` finding.
    pub fn fail(
        setting: impl Into<String>,
        value: impl Into<String>,
        advice: impl Into<String>,
    ) -> Self {
        Self::new(Verdict::Fail, setting, value, advice)
    }

    /// The same finding, said of one server of several (`"server 2: appendonly"`).
    #[must_use]
    pub fn of_server(mut self, server: &str) -> Self {
        self.setting = format!("{server}: {}", self.setting);
        self
    }
}

/// What [`crate::LeaseStore::diagnose`] found: which server answered, and one finding per
/// checked setting.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// The backend (`"redis"`, `"postgres"`, …), as [`crate::LeaseStore::backend`] says.
    pub backend: &'static str,
    /// The server as it describes itself (`"Redis 7.0.15"`, `"PostgreSQL 15.8"`).
    pub server: String,
    /// The findings, in the order they were checked.
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    /// A diagnosis with no findings yet.
    pub fn new(backend: &'static str, server: impl Into<String>) -> Self {
        Self {
            backend,
            server: server.into(),
            findings: Vec::new(),
        }
    }

    /// Adds a finding.
    #[must_use]
    pub fn with(mut self, finding: Finding) -> Self {
        self.findings.push(finding);
        self
    }

    /// The worst verdict of all findings (`Ok` when there are none).
    pub fn verdict(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_finding_decides() {
        let d = Diagnosis::new("memory", "in-process");
        assert_eq!(d.verdict(), Verdict::Ok);
        let d = d.with(Finding::ok("a", "1", "fine"));
        assert_eq!(d.verdict(), Verdict::Ok);
        let d = d.with(Finding::warn("b", "2", "careful"));
        assert_eq!(d.verdict(), Verdict::Warn);
        let d = d.with(Finding::fail("c", "3", "broken"));
        assert_eq!(d.verdict(), Verdict::Fail);
    }

    #[test]
    fn serializes_for_tools() {
        let d = Diagnosis::new("redis", "Redis 7")
            .with(Finding::warn("appendonly", "no", "set appendonly yes").of_server("server 2"));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["backend"], "redis");
        assert_eq!(json["findings"][0]["setting"], "server 2: appendonly");
        assert_eq!(json["findings"][0]["verdict"], "warn");
    }
}
