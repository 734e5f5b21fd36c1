//! The report of `fencelock check`: aligned text for people, one JSON document for tools.

use fencelock::{Diagnosis, Verdict};
use serde::Serialize;

use crate::exit::{Failure, status};

/// The JSON document: the diagnosis (`backend`, `server`, `findings` with the lock round trip
/// last) and the overall `verdict`.
#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    diagnosis: &'a Diagnosis,
    verdict: Verdict,
}

/// `store    BACKEND (SERVER)`, one line per finding, and a summary.
pub(super) fn text(report: &Diagnosis) -> String {
    let mut out = format!("store    {} ({})\n", report.backend, report.server);
    for f in &report.findings {
        let level = match f.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "WARN",
            _ => "FAIL",
        };
        out.push_str(&format!(
            "{level}     {} = {}: {}\n",
            f.setting, f.value, f.advice
        ));
    }
    let count = |v: Verdict| report.findings.iter().filter(|f| f.verdict == v).count();
    out.push_str(&match (count(Verdict::Fail), count(Verdict::Warn)) {
        (0, 0) => "safe for locks as far as these checks can tell\n".to_owned(),
        (0, warnings) => {
            format!("{warnings} warning(s): read the advice above before relying on these locks\n")
        }
        (failures, warnings) => format!(
            "{failures} failure(s), {warnings} warning(s): locks cannot work safely on this store; fix the FAIL lines first\n"
        ),
    });
    out
}

/// The report as one pretty-printed JSON document (with a final newline).
pub(super) fn json(report: &Diagnosis) -> Result<String, Failure> {
    let document = Report {
        diagnosis: report,
        verdict: report.verdict(),
    };
    serde_json::to_string_pretty(&document)
        .map(|json| json + "\n")
        .map_err(|e| Failure::new(status::INTERNAL, format!("cannot render JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use fencelock::Finding;

    use super::*;

    fn report() -> Diagnosis {
        Diagnosis::new("redis", "Redis 7.0.15")
            .with(Finding::ok(
                "maxmemory-policy",
                "noeviction",
                "never evicted",
            ))
            .with(Finding::warn("appendonly", "no", "set appendonly yes"))
    }

    #[test]
    fn text_keeps_the_familiar_look() {
        assert_eq!(
            text(&report()),
            "store    redis (Redis 7.0.15)\n\
             ok       maxmemory-policy = noeviction: never evicted\n\
             WARN     appendonly = no: set appendonly yes\n\
             1 warning(s): read the advice above before relying on these locks\n"
        );
        let safe = Diagnosis::new("memory", "in-process").with(Finding::ok("a", "b", "c"));
        assert!(text(&safe).ends_with("safe for locks as far as these checks can tell\n"));
        let failed = report().with(Finding::fail("role", "replica", "point it at the primary"));
        let shown = text(&failed);
        assert!(
            shown.contains("FAIL     role = replica: point it at the primary\n"),
            "{shown}"
        );
        assert!(
            shown.ends_with("1 failure(s), 1 warning(s): locks cannot work safely on this store; fix the FAIL lines first\n"),
            "{shown}"
        );
    }

    #[test]
    fn json_is_the_diagnosis_and_its_verdict() {
        let value: serde_json::Value = serde_json::from_str(&json(&report()).unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "backend": "redis",
                "server": "Redis 7.0.15",
                "findings": [
                    {"setting": "maxmemory-policy", "value": "noeviction", "verdict": "ok", "advice": "never evicted"},
                    {"setting": "appendonly", "value": "no", "verdict": "warn", "advice": "set appendonly yes"},
                ],
                "verdict": "warn",
            })
        );
    }
}
