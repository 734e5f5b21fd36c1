//! `check` for `memory://`.

use super::{Finding, Report};

pub(crate) fn check() -> Report {
    Report {
        server: "in-process".to_owned(),
        findings: vec![Finding::warn(
            "scope",
            "memory:// locks live inside one process: two fencelock commands never see each other's locks. Use it to try fencelock out; use redis://, postgres:// or etcd:// for real locks",
        )],
    }
}
