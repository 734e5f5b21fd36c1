//! `fencelock leader`: who leads an election, once or as it changes (`--watch`).

use std::io::Write;
use std::process::ExitCode;

use fencelock::{Leader, LockName, Locker};
use serde::Serialize;

use crate::args::LeaderArgs;
use crate::duration::short;
use crate::exit::{Failure, status};
use crate::signals::Forwarded;
use crate::store::Target;

/// One report: a leader, or a vacancy (also its JSON form).
#[derive(Debug, Serialize, PartialEq, Eq)]
struct Line {
    name: String,
    led: bool,
    term: Option<u64>,
    label: Option<String>,
    holder: Option<String>,
    remaining_ms: Option<u64>,
}

impl Line {
    fn new(name: &LockName, leader: Option<&Leader>) -> Self {
        Self {
            name: name.to_string(),
            led: leader.is_some(),
            term: leader.map(|l| l.term.get()),
            label: leader.and_then(|l| l.label.as_ref()).map(|l| l.to_string()),
            holder: leader.and_then(|l| l.holder).map(|h| h.to_string()),
            remaining_ms: leader
                .map(|l| u64::try_from(l.remaining.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// `NAME: led by LABEL with term T, 12.4s left` or `NAME: no leader`.
    fn text(&self) -> String {
        let Some(term) = self.term else {
            return format!("{}: no leader", self.name);
        };
        let who = self.label.as_deref().unwrap_or("an unlabelled leader");
        let left = self
            .remaining_ms
            .map(|ms| short(std::time::Duration::from_millis(ms)))
            .unwrap_or_default();
        format!("{}: led by {who} with term {term}, {left} left", self.name)
    }
}

/// Whether stdout is still read.
enum Printed {
    Yes,
    /// The reader went away (a closed pipe): a watch ends there.
    ReaderGone,
}

fn print(line: &Line, json: bool) -> Result<Printed, Failure> {
    let rendered = if json {
        serde_json::to_string(line)
            .map_err(|e| Failure::new(status::INTERNAL, format!("cannot render JSON: {e}")))?
    } else {
        line.text()
    };
    // Not println!: it panics when the reader of a pipe has gone (`leader --watch | head -1`).
    match writeln!(std::io::stdout().lock(), "{rendered}") {
        Ok(()) => Ok(Printed::Yes),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Printed::ReaderGone),
        Err(e) => Err(Failure::new(
            status::INTERNAL,
            format!("cannot write to stdout: {e}"),
        )),
    }
}

pub(crate) async fn leader(args: LeaderArgs) -> Result<ExitCode, Failure> {
    let target = Target::from_args(&args.store)?;
    let election = |store| {
        Locker::from_arc(store)
            .election(args.name.clone())
            .map(|e| e.with_observe_interval(args.every))
    };
    if !args.watch {
        let store = target.connect().await?;
        let leader = target.bounded("inspect", election(store)?.leader()).await?;
        print(&Line::new(&args.name, leader.as_ref()), args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Caught from here on: an interrupted watch ends with 128+N, as `run` does while waiting.
    let mut signals = Forwarded::catch()?;
    let store = target.connect().await?;
    let mut watch = election(store)?.observe().map_err(|_| {
        Failure::usage(format!(
            "--every {} is out of range; give 1ms to 24h",
            short(args.every)
        ))
    })?;
    let mut printed_any = false;
    let mut failing = false;
    loop {
        let next = tokio::select! {
            next = watch.changed() => next,
            signal = signals.recv() => return Ok(ExitCode::from(status::SIGNAL_BASE + signal as u8)),
        };
        match next {
            Ok(leader) => {
                if failing {
                    eprintln!("fencelock: reading the leader of `{}` again", args.name);
                    failing = false;
                }
                let line = Line::new(&args.name, leader.as_ref());
                if let Printed::ReaderGone = print(&line, args.json)? {
                    return Ok(ExitCode::SUCCESS);
                }
                printed_any = true;
            }
            // Nothing was printed yet: the store does not work, say so as any command does.
            Err(error) if !printed_any => return Err(Failure::from(error)),
            Err(error) => {
                // The last line printed may be stale from now on; say so, and keep trying.
                eprintln!(
                    "fencelock: cannot read the leader of `{}` ({error}); the last line may be stale; trying again in {}",
                    args.name,
                    short(args.every)
                );
                failing = true;
                tokio::select! {
                    () = tokio::time::sleep(args.every) => {}
                    signal = signals.recv() => return Ok(ExitCode::from(status::SIGNAL_BASE + signal as u8)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencelock::{FencingToken, HolderId, OwnerLabel};
    use std::time::Duration;

    #[test]
    fn text_and_json_shapes() {
        let name = LockName::new("scheduler").unwrap();
        let mut leader = Leader::from(fencelock::LeaseInfo {
            token: FencingToken::new(17),
            holder: Some(HolderId::parse_hex("ab").unwrap()),
            remaining: Duration::from_millis(12_400),
            label: Some(OwnerLabel::new("web-3").unwrap()),
        });
        let led = Line::new(&name, Some(&leader));
        assert_eq!(
            led.text(),
            "scheduler: led by web-3 with term 17, 12.4s left"
        );
        let json = serde_json::to_value(&led).unwrap();
        assert_eq!(json["led"], true);
        assert_eq!(json["term"], 17);
        assert_eq!(json["label"], "web-3");
        assert_eq!(json["remaining_ms"], 12_400);
        leader.label = None;
        assert!(
            Line::new(&name, Some(&leader))
                .text()
                .contains("led by an unlabelled leader with term 17"),
        );

        let vacant = Line::new(&name, None);
        assert_eq!(vacant.text(), "scheduler: no leader");
        assert_eq!(
            serde_json::to_value(&vacant).unwrap(),
            serde_json::json!({"name": "scheduler", "led": false, "term": null, "label": null, "holder": null, "remaining_ms": null})
        );
    }
}
