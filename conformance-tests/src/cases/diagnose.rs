//! Diagnosis: what the store says about its own safety for locks.

use fencelock_core::ErrorKind;
use fencelock_core::backend::redact_url;

use crate::{Ctx, settle};

/// The store answers the server it talked to and at least one finding (or `Unsupported`), and
/// no text of it carries a password.
pub async fn diagnose_reports_findings(cx: &Ctx) {
    let store = cx.store();
    let what = format!("diagnose of a running {} store", store.backend());
    let diagnosis = match settle::settle(&what, || store.diagnose()).await {
        Ok(diagnosis) => diagnosis,
        Err(e) if e.kind() == ErrorKind::Unsupported => return,
        Err(e) => panic!("{what} failed: {e}"),
    };
    assert_eq!(
        diagnosis.backend,
        store.backend(),
        "diagnose must name the store's own backend"
    );
    assert!(
        !diagnosis.server.trim().is_empty(),
        "diagnose must say which server answered: {diagnosis:?}"
    );
    assert!(
        !diagnosis.findings.is_empty(),
        "diagnose answered no finding: {diagnosis:?}"
    );
    let texts = diagnosis
        .findings
        .iter()
        .flat_map(|f| [f.setting.as_str(), f.value.as_str(), f.advice.as_str()]);
    for text in texts.chain([diagnosis.server.as_str()]) {
        for word in text.split_whitespace().filter(|w| w.contains("://")) {
            assert_eq!(
                redact_url(word),
                word,
                "a finding of diagnose shows a URL with a secret: {text:?}"
            );
        }
    }
    for finding in &diagnosis.findings {
        assert!(
            !finding.setting.trim().is_empty() && !finding.advice.trim().is_empty(),
            "every finding names its setting and says what it means: {finding:?}"
        );
    }
}
