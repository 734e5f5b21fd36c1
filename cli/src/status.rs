//! `fencelock status` / `inspect`: who holds which lock, by name or by listing.

use std::process::ExitCode;

use fencelock::{LeaseInfo, ListQuery, LockName};
use serde::Serialize;

use crate::args::StatusArgs;
use crate::duration::short;
use crate::exit::{Failure, status};
use crate::store::Target;

/// One row of the report (also its JSON form).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Row {
    name: String,
    held: bool,
    token: Option<u64>,
    remaining_ms: Option<u64>,
    holder: Option<String>,
    label: Option<String>,
}

impl Row {
    fn new(name: &LockName, info: Option<LeaseInfo>) -> Self {
        Self {
            name: name.to_string(),
            held: info.is_some(),
            token: info.as_ref().map(|i| i.token.get()),
            remaining_ms: info
                .as_ref()
                .map(|i| u64::try_from(i.remaining.as_millis()).unwrap_or(u64::MAX)),
            holder: info.as_ref().and_then(|i| i.holder).map(|h| h.to_string()),
            label: info.and_then(|i| i.label).map(String::from),
        }
    }
}

pub(crate) async fn status(args: StatusArgs) -> Result<ExitCode, Failure> {
    let target = Target::from_args(&args.store)?;
    let store = target.connect().await?;
    let mut rows = Vec::with_capacity(args.names.len());
    for name in &args.names {
        let info = target.bounded("inspect", store.inspect(name)).await?;
        rows.push(Row::new(name, info));
    }
    if args.names.is_empty() {
        let usage = |e: fencelock::Error| Failure::new(status::USAGE, e.to_string());
        if args.limit == 0 {
            return Err(Failure::new(status::USAGE, "--limit must be at least 1"));
        }
        let prefix = args.prefix.clone().unwrap_or_default();
        let mut query = ListQuery::prefix(prefix)
            .and_then(|q| q.with_limit(args.limit.min(ListQuery::MAX_LIMIT)))
            .map_err(usage)?;
        loop {
            let page = target.bounded("list", store.list(&query)).await?;
            for lock in page.locks {
                if rows.len() == args.limit {
                    eprintln!(
                        "fencelock: more than {} locks are held; narrow with --prefix or raise --limit",
                        args.limit
                    );
                    break;
                }
                let info = LeaseInfo {
                    token: lock.token,
                    holder: lock.holder,
                    remaining: lock.remaining,
                    label: lock.label,
                };
                rows.push(Row::new(&lock.name, Some(info)));
            }
            match page.next {
                Some(next) if rows.len() < args.limit => query = query.with_after(next),
                _ => break,
            }
        }
    }
    if args.json {
        let json = serde_json::to_string_pretty(&rows)
            .map_err(|e| Failure::new(status::INTERNAL, format!("cannot render JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// A plain aligned table.
fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let dash = || "-".to_owned();
            [
                r.name.clone(),
                if r.held { "held" } else { "free" }.to_owned(),
                r.token.map_or_else(dash, |t| t.to_string()),
                r.remaining_ms
                    .map_or_else(dash, |ms| short(std::time::Duration::from_millis(ms))),
                r.holder.clone().unwrap_or_else(dash),
                r.label.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let header = ["NAME", "STATE", "TOKEN", "TTL LEFT", "HOLDER", "LABEL"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencelock::{FencingToken, HolderId};
    use std::time::Duration;

    #[test]
    fn table_and_json_shapes() {
        let held = Row::new(
            &LockName::new("deploy/prod").unwrap(),
            Some(LeaseInfo {
                token: FencingToken::new(17),
                holder: Some(HolderId::parse_hex("ab").unwrap()),
                remaining: Duration::from_millis(12_400),
                label: Some(fencelock::OwnerLabel::new("web-3:4711").unwrap()),
            }),
        );
        let free = Row::new(&LockName::new("x").unwrap(), None);
        let text = table(&[held, free]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(lines[1].contains("held") && lines[1].contains("17") && lines[1].contains("12.4s"));
        assert!(lines[1].ends_with("web-3:4711"), "{text}");
        assert!(
            lines[2].starts_with("x ") && lines[2].contains("free"),
            "{text}"
        );

        let free = Row::new(&LockName::new("x").unwrap(), None);
        let json = serde_json::to_value(&free).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "x", "held": false, "token": null, "remaining_ms": null, "holder": null, "label": null})
        );
    }
}
