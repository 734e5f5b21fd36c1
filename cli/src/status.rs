//! `fencelock status` / `inspect`: who holds which lock, by name or by listing; with
//! `--permits`, who holds the permits of semaphores.

use std::process::ExitCode;

use fencelock::{LeaseInfo, ListQuery, LockName, Permits};
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
        let holder = info.map(Holder::new);
        Self {
            name: name.to_string(),
            held: holder.is_some(),
            token: holder.as_ref().map(|h| h.token),
            remaining_ms: holder.as_ref().map(|h| h.remaining_ms),
            holder: holder.as_ref().and_then(|h| h.holder.clone()),
            label: holder.and_then(|h| h.label),
        }
    }
}

/// One semaphore of the `--permits` report (also its JSON form).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct SemaphoreRow {
    name: String,
    /// The limit the holders were granted under; `None` when nobody holds a permit.
    limit: Option<u32>,
    /// How many permits are held.
    held: usize,
    /// Each held permit, in token order.
    permits: Vec<Holder>,
}

impl SemaphoreRow {
    fn new(name: &LockName, permits: Permits) -> Self {
        Self {
            name: name.to_string(),
            limit: permits.limit.map(|l| l.get()),
            held: permits.holders.len(),
            permits: permits.holders.into_iter().map(Holder::new).collect(),
        }
    }
}

/// One grant: a lock's holder, or one permit of a semaphore.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Holder {
    token: u64,
    remaining_ms: u64,
    holder: Option<String>,
    label: Option<String>,
}

impl Holder {
    fn new(info: LeaseInfo) -> Self {
        Self {
            token: info.token.get(),
            remaining_ms: u64::try_from(info.remaining.as_millis()).unwrap_or(u64::MAX),
            holder: info.holder.map(|h| h.to_string()),
            label: info.label.map(String::from),
        }
    }
}

pub(crate) async fn status(args: StatusArgs) -> Result<ExitCode, Failure> {
    let target = Target::from_args(&args.store)?;
    let store = target.connect().await?;
    if args.permits {
        let mut rows = Vec::with_capacity(args.names.len());
        for name in &args.names {
            let permits = target
                .bounded_permits("inspect", store.inspect_permits(name))
                .await?;
            rows.push(SemaphoreRow::new(name, permits));
        }
        print_report(&rows, args.json, permits_table)?;
        return Ok(ExitCode::SUCCESS);
    }
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
    print_report(&rows, args.json, table)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `rows` as pretty JSON, or as the table `text` makes of them.
fn print_report<R: Serialize>(
    rows: &[R],
    json: bool,
    text: fn(&[R]) -> String,
) -> Result<(), Failure> {
    if json {
        let json = serde_json::to_string_pretty(rows)
            .map_err(|e| Failure::new(status::INTERNAL, format!("cannot render JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", text(rows));
    }
    Ok(())
}

const HEADER: [&str; 6] = ["NAME", "STATE", "TOKEN", "TTL LEFT", "HOLDER", "LABEL"];

/// The lock table: one row per lock.
fn table(rows: &[Row]) -> String {
    let dash = || "-".to_owned();
    let cells = rows.iter().map(|r| {
        [
            r.name.clone(),
            if r.held { "held" } else { "free" }.to_owned(),
            r.token.map_or_else(dash, |t| t.to_string()),
            r.remaining_ms.map_or_else(dash, ms),
            r.holder.clone().unwrap_or_else(dash),
            r.label.clone().unwrap_or_else(dash),
        ]
    });
    aligned(HEADER, cells)
}

/// The semaphore table: one row per permit held, its STATE `2 of 3` (held of the limit); one
/// `free` row for a semaphore nobody holds.
fn permits_table(rows: &[SemaphoreRow]) -> String {
    let dash = || "-".to_owned();
    let cells = rows.iter().flat_map(|r| {
        let state = match r.limit {
            Some(limit) => format!("{} of {limit}", r.held),
            None => "free".to_owned(),
        };
        let free = r.permits.is_empty().then(|| {
            [
                r.name.clone(),
                state.clone(),
                dash(),
                dash(),
                dash(),
                dash(),
            ]
        });
        r.permits
            .iter()
            .map(move |p| {
                [
                    r.name.clone(),
                    state.clone(),
                    p.token.to_string(),
                    ms(p.remaining_ms),
                    p.holder.clone().unwrap_or_else(dash),
                    p.label.clone().unwrap_or_else(dash),
                ]
            })
            .chain(free)
    });
    aligned(HEADER, cells)
}

fn ms(ms: u64) -> String {
    short(std::time::Duration::from_millis(ms))
}

/// A plain aligned table: `header`, then `rows`, columns two spaces apart.
fn aligned(header: [&str; 6], rows: impl Iterator<Item = [String; 6]>) -> String {
    let cells: Vec<[String; 6]> = rows.collect();
    let header = header.map(str::to_owned);
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

    fn permit(token: u64, left_ms: u64, label: Option<&str>) -> LeaseInfo {
        LeaseInfo {
            token: FencingToken::new(token),
            holder: Some(HolderId::parse_hex("cd").unwrap()),
            remaining: Duration::from_millis(left_ms),
            label: label.map(|l| fencelock::OwnerLabel::new(l).unwrap()),
        }
    }

    #[test]
    fn permits_table_and_json_shapes() {
        let limit = fencelock::PermitLimit::new(3).unwrap();
        let held = SemaphoreRow::new(
            &LockName::new("exports").unwrap(),
            Permits::new(
                Some(limit),
                vec![
                    permit(9, 4_000, None),
                    permit(7, 12_400, Some("web-3:4711")),
                ],
            ),
        );
        let free = SemaphoreRow::new(&LockName::new("idle").unwrap(), Permits::default());
        let text = permits_table(&[held, free]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("NAME") && lines[0].ends_with("LABEL"),
            "{text}"
        );
        // In token order, each with the semaphore's state.
        assert!(lines[1].starts_with("exports  2 of 3  7 "), "{text}");
        assert!(
            lines[1].contains("12.4s") && lines[1].ends_with("web-3:4711"),
            "{text}"
        );
        assert!(lines[2].starts_with("exports  2 of 3  9 "), "{text}");
        assert!(lines[2].ends_with(" -"), "an unlabelled permit: {text}");
        assert!(lines[3].starts_with("idle     free    - "), "{text}");

        let held = SemaphoreRow::new(
            &LockName::new("exports").unwrap(),
            Permits::new(Some(limit), vec![permit(7, 12_400, Some("web-3:4711"))]),
        );
        assert_eq!(
            serde_json::to_value(&held).unwrap(),
            serde_json::json!({"name": "exports", "limit": 3, "held": 1, "permits": [
                {"token": 7, "remaining_ms": 12400, "holder": "000000000000000000000000000000cd",
                 "label": "web-3:4711"}
            ]})
        );
        let free = SemaphoreRow::new(&LockName::new("idle").unwrap(), Permits::default());
        assert_eq!(
            serde_json::to_value(&free).unwrap(),
            serde_json::json!({"name": "idle", "limit": null, "held": 0, "permits": []})
        );
    }
}
