//! The invariants, checked over a merged history.
//!
//! - I1: the fence admits exactly what it must: no stale read or write accepted (token below
//!   the highest token accepted before it at the same place: [`OracleOp::slot`]), and no
//!   fresh one rejected.
//! - I2: tokens are unique and strictly increasing in grant order (a grant that came back
//!   before another was requested has the smaller token); no client saw a regression. In an
//!   election the tokens are the leaders' terms, so this is "terms rise strictly from one
//!   leader to the next"; and each election observer's reported terms rise strictly and were
//!   each granted to some candidate.
//! - I3: no acknowledged write is lost: the final counter equals the number of accepted writes.
//! - I4: no worker wrote after its guard reported the lease invalid.
//! - I5: after each fault, the lock is granted again within TTL + renew interval + slack.
//! - I6 (only when the server kept its state through every fault, [`Bounds::exclusive`]): no
//!   two guards valid at the same time. A guard's validity window runs from its grant to the
//!   last time its `is_valid()` said true, asked by the holder (`Check`) or by the harness
//!   while a fault held the holder (`Probe`); both records are stamped *before* the call, so
//!   the window is never drawn too long. Windows of different tokens must not overlap. It
//!   holds because a guard's local deadline is computed from when its request was sent, so it
//!   ends before the server's expiry, and the next grant comes after that expiry. A server
//!   that loses its state (Redis without persistence restarted, a failover to a lagging
//!   replica) may legitimately grant again while the old holder still believes it holds;
//!   fencing covers that case, and I6 is not checked there.
//! - I7 (semaphores, [`Bounds::permit_limit`]; likewise only where the server kept its
//!   state): no more permits valid at one moment than the semaphore's limit. A permit's window
//!   runs from its grant's reply to the last time its holder recorded how long it took the
//!   permit as valid ([`Event::ValidUntil`]: its local deadline at each check that said valid,
//!   and the earlier of now and the deadline right before its release); the windows are swept
//!   and the most open at once is reported ([`Report::most_valid_permits`]) in every run, and
//!   judged only where the server kept its state: one that loses it (Redis without
//!   persistence restarted) grants permits again while their old holders still hold, so the
//!   count can pass the limit there, and the report shows by how much.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use super::{Event, Op, Record};

/// Which invariant a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invariant {
    /// Stale operation accepted, or fresh one rejected.
    I1,
    /// Token duplicated or out of grant order.
    I2,
    /// Acknowledged write lost.
    I3,
    /// Write after the guard said the lease was invalid.
    I4,
    /// Lock not granted again in time after a fault.
    I5,
    /// Two guards valid at the same time (checked only where the server kept its state).
    I6,
    /// More permits valid at once than the semaphore's limit (checked only where the server
    /// kept its state).
    I7,
}

/// One broken invariant, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant.
    pub invariant: Invariant,
    /// What happened, in words.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.invariant, self.detail)
    }
}

/// One operation as the fenced resource served it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleOp {
    /// Read or write.
    pub op: Op,
    /// The worker that sent it.
    pub worker: u32,
    /// The token presented.
    pub token: u64,
    /// Whether it was admitted.
    pub accepted: bool,
    /// The mark reported with a rejection.
    pub high_water: Option<u64>,
    /// The place the operation went to, where the resource has several, each with its own
    /// mark (the semaphore scenarios: N places for N permits, each taken by one holder at a
    /// time); `None`: the one resource. Staleness is judged per place.
    pub slot: Option<u32>,
}

/// What the fenced resource saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OracleLog {
    /// Operations; accepted ones in the order the resource applied them.
    pub ops: Vec<OracleOp>,
    /// Whether rejected operations sit in serving order too (the in-memory oracle), or were
    /// collected from the workers afterwards (the PostgreSQL table).
    pub rejections_in_order: bool,
    /// The counter at the end of the run.
    pub final_value: u64,
}

impl OracleLog {
    /// The log the in-memory oracle wrote into `history`, and its final counter.
    pub fn from_history(history: &[Record], final_value: u64) -> Self {
        let ops = history
            .iter()
            .filter_map(|r| match r.event {
                Event::Oracle {
                    op,
                    worker,
                    token,
                    accepted,
                    high_water,
                    slot,
                    ..
                } => Some(OracleOp {
                    op,
                    worker,
                    token,
                    accepted,
                    high_water,
                    slot,
                }),
                _ => None,
            })
            .collect();
        Self {
            ops,
            rejections_in_order: true,
            final_value,
        }
    }
}

/// Timing bounds of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The lease TTL.
    pub ttl: Duration,
    /// The renew interval.
    pub renew_every: Duration,
    /// The allowance on top (wake-up, connection re-establishment).
    pub slack: Duration,
    /// Whether the server kept its state through every fault of the run, so that validity
    /// windows of different guards must not overlap (I6), or no more than
    /// [`Bounds::permit_limit`] of them (I7).
    pub exclusive: bool,
    /// The semaphore's limit when the workers hold permits (I7 instead of I6); `None`: a lock
    /// or an election.
    pub permit_limit: Option<u32>,
}

impl Bounds {
    /// TTL + renew interval + slack.
    pub fn reacquire_within(&self) -> Duration {
        self.ttl + self.renew_every + self.slack
    }
}

/// The figures and violations of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Write attempts that reached the resource (accepted, rejected or failed).
    pub writes_attempted: u64,
    /// Writes the resource accepted.
    pub writes_accepted: u64,
    /// Reads and writes presented with a token below the resource's mark.
    pub stale_attempted: u64,
    /// Of those, how many the resource accepted (I1: must be 0).
    pub stale_accepted: u64,
    /// Fresh operations (token at or above the mark) the resource rejected (I1: must be 0).
    pub fresh_rejected: u64,
    /// Grants.
    pub tokens_issued: u64,
    /// Grants out of order, duplicated, or reported by a client as a regression; terms an
    /// election observer reported out of order or that nobody was granted (I2).
    pub token_regressions: u64,
    /// Leaders (terms) reported by election observers.
    pub leaders_observed: u64,
    /// Of those, terms not above the observer's previous one or never granted (I2; counted in
    /// `token_regressions` too).
    pub observed_regressions: u64,
    /// Accepted writes minus the final counter (I3: must be 0).
    pub lost_writes: i64,
    /// Writes after the guard said invalid (I4: must be 0).
    pub writes_after_invalid: u64,
    /// Faults injected.
    pub faults_injected: u64,
    /// Time from each fault (its injection for a holder fault, its heal for a server fault)
    /// to the next grant.
    pub reacquire: Vec<Duration>,
    /// Pairs of holding periods of different workers that overlapped in time.
    pub overlapping_holders: u64,
    /// Guard checks that said the lease was no longer valid.
    pub invalid_checks: u64,
    /// Guards that said valid after a later guard had been granted (I6: must be 0 where
    /// checked).
    pub overlapping_validity: u64,
    /// Semaphore runs: the most permits valid at one moment, as their holders saw them
    /// (I7: at most the limit where the server kept its state; reported everywhere).
    pub most_valid_permits: u64,
    /// Every broken invariant.
    pub violations: Vec<Violation>,
}

impl Report {
    /// Whether every invariant held.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// The invariants broken, each once.
    pub fn broken(&self) -> Vec<Invariant> {
        let mut broken: Vec<Invariant> = self.violations.iter().map(|v| v.invariant).collect();
        broken.sort();
        broken.dedup();
        broken
    }

    fn violate(&mut self, invariant: Invariant, detail: String) {
        self.violations.push(Violation { invariant, detail });
    }
}

/// Checks every invariant over `history` (all workers and the coordinator, sorted by time)
/// and the resource's `oracle` log.
pub fn check(history: &[Record], oracle: &OracleLog, bounds: Bounds) -> Report {
    let mut report = Report::default();
    check_fence(oracle, &mut report);
    check_tokens(history, &mut report);
    check_lost_writes(oracle, &mut report);
    check_writes_after_invalid(history, &mut report);
    check_recovery(history, bounds, &mut report);
    match bounds.permit_limit {
        None if bounds.exclusive => check_exclusive_validity(history, &mut report),
        None => {}
        Some(limit) => check_permit_limit(history, limit, bounds.exclusive, &mut report),
    }
    report.invalid_checks = history
        .iter()
        .filter(|r| matches!(r.event, Event::Check { valid: false, .. }))
        .count() as u64;
    report.overlapping_holders = overlapping_holders(history);
    report.writes_attempted = history
        .iter()
        .filter(|r| {
            matches!(
                r.event,
                Event::WriteAccepted { .. }
                    | Event::Rejected { op: Op::Write, .. }
                    | Event::OpFailed { op: Op::Write, .. }
            )
        })
        .count() as u64;
    report
}

/// I1, recomputed from the log rather than trusting the fence's own verdicts: each place
/// ([`OracleOp::slot`]) has its own mark.
fn check_fence(oracle: &OracleLog, report: &mut Report) {
    let mut marks: HashMap<Option<u32>, u64> = HashMap::new();
    for op in &oracle.ops {
        let mark = marks.get(&op.slot).copied();
        let stale = mark.is_some_and(|m| op.token < m);
        if op.op == Op::Write && op.accepted {
            report.writes_accepted += 1;
        }
        if op.accepted {
            if stale {
                report.stale_attempted += 1;
                report.stale_accepted += 1;
                report.violate(
                    Invariant::I1,
                    format!(
                        "stale {:?} by worker {} with token {} accepted after token {} was",
                        op.op,
                        op.worker,
                        op.token,
                        mark.unwrap_or_default()
                    ),
                );
            }
            marks.insert(op.slot, mark.map_or(op.token, |m| m.max(op.token)));
            continue;
        }
        let reported_fresh = op.high_water.is_some_and(|h| h <= op.token);
        let fresh = reported_fresh || (oracle.rejections_in_order && !stale);
        if fresh {
            report.fresh_rejected += 1;
            report.violate(
                Invariant::I1,
                format!(
                    "fresh {:?} by worker {} with token {} rejected (mark {:?}, reported {:?})",
                    op.op, op.worker, op.token, mark, op.high_water
                ),
            );
        } else {
            report.stale_attempted += 1;
        }
    }
}

/// I2: a grant received before another was requested must carry the smaller token.
fn check_tokens(history: &[Record], report: &mut Report) {
    // (sent, received, token, worker)
    let mut grants: Vec<(u64, u64, u64, u32)> = Vec::new();
    for r in history {
        match &r.event {
            Event::Acquired { token, sent } => grants.push((*sent, r.t, *token, r.w)),
            Event::AcquireFailed { kind, error } if kind == "TokenRegression" => {
                report.token_regressions += 1;
                report.violate(
                    Invariant::I2,
                    format!("worker {} saw a token regression: {error}", r.w),
                );
            }
            _ => {}
        }
    }
    report.tokens_issued = grants.len() as u64;
    let mut seen = HashMap::new();
    for &(_, _, token, worker) in &grants {
        if let Some(first) = seen.insert(token, worker) {
            report.token_regressions += 1;
            report.violate(
                Invariant::I2,
                format!("token {token} granted twice (workers {first} and {worker})"),
            );
        }
    }
    // Grants by receive time, with the running maximum token and who holds it.
    let mut by_received = grants.clone();
    by_received.sort_by_key(|g| g.1);
    let mut prefix_max: Vec<(u64, u32)> = Vec::with_capacity(by_received.len());
    for &(_, _, token, worker) in &by_received {
        let best = prefix_max.last().copied().filter(|&(t, _)| t >= token);
        prefix_max.push(best.unwrap_or((token, worker)));
    }
    check_observed_terms(history, &seen, report);
    for &(sent, _, token, worker) in &grants {
        let before = by_received.partition_point(|g| g.1 < sent);
        if before == 0 {
            continue;
        }
        let (max, by) = prefix_max[before - 1];
        if max >= token && !(max == token && by == worker) {
            report.token_regressions += 1;
            report.violate(
                Invariant::I2,
                format!(
                    "worker {worker} was granted token {token} after token {max} (worker {by}) had been granted"
                ),
            );
        }
    }
}

/// I2 for election observers: the terms each observer reports rise strictly (vacancies in
/// between are fine), and each was granted to a candidate (`granted`: token → worker).
fn check_observed_terms(history: &[Record], granted: &HashMap<u64, u32>, report: &mut Report) {
    let mut last: HashMap<u32, u64> = HashMap::new();
    for r in history {
        let Event::LeaderObserved { term: Some(term) } = r.event else {
            continue;
        };
        report.leaders_observed += 1;
        let mut wrong = Vec::new();
        match last.get(&r.w) {
            Some(&before) if term <= before => {
                wrong.push(format!(
                    "term {term} after term {before}: terms went backwards"
                ));
            }
            _ => {
                last.insert(r.w, term);
            }
        }
        if !granted.contains_key(&term) {
            wrong.push(format!("term {term}, which no candidate was granted"));
        }
        for what in wrong {
            report.token_regressions += 1;
            report.observed_regressions += 1;
            report.violate(Invariant::I2, format!("observer {} reported {what}", r.w));
        }
    }
}

/// I3: every accepted write is in the final counter.
fn check_lost_writes(oracle: &OracleLog, report: &mut Report) {
    let accepted = oracle
        .ops
        .iter()
        .filter(|op| op.op == Op::Write && op.accepted)
        .count() as i64;
    report.lost_writes = accepted - oracle.final_value as i64;
    if report.lost_writes != 0 {
        report.violate(
            Invariant::I3,
            format!(
                "{accepted} writes accepted but the counter is {}",
                oracle.final_value
            ),
        );
    }
}

/// I4: after `Check { valid: false }`, the worker must not write with that token.
fn check_writes_after_invalid(history: &[Record], report: &mut Report) {
    let mut invalid: HashSet<(u32, u64)> = HashSet::new();
    for r in history {
        match r.event {
            Event::Check {
                token,
                valid: false,
            } => {
                invalid.insert((r.w, token));
            }
            Event::WriteAccepted { token, .. }
            | Event::Rejected {
                op: Op::Write,
                token,
                ..
            }
            | Event::OpFailed {
                op: Op::Write,
                token,
                ..
            } if invalid.contains(&(r.w, token)) => {
                report.writes_after_invalid += 1;
                report.violate(
                    Invariant::I4,
                    format!(
                        "worker {} wrote with token {token} after its guard reported the lease invalid",
                        r.w
                    ),
                );
            }
            _ => {}
        }
    }
}

/// I5: the next grant after each fault comes within the bound.
fn check_recovery(history: &[Record], bounds: Bounds, report: &mut Report) {
    let within = bounds.reacquire_within();
    let mut open: Option<(String, bool, u64)> = None;
    let mut from: Vec<(String, u64)> = Vec::new();
    for r in history {
        match &r.event {
            Event::FaultInjected { fault, holder } => {
                report.faults_injected += 1;
                if *holder {
                    from.push((fault.clone(), r.t));
                }
                open = Some((fault.clone(), *holder, r.t));
            }
            Event::FaultHealed { fault } => match open.take() {
                Some((name, false, _)) => from.push((name, r.t)),
                Some(_) => {}
                None => report.violate(Invariant::I5, format!("fault `{fault}` healed twice")),
            },
            _ => {}
        }
    }
    let grants: Vec<u64> = history
        .iter()
        .filter(|r| matches!(r.event, Event::Acquired { .. }))
        .map(|r| r.t)
        .collect();
    for (fault, at) in from {
        let next = grants.iter().find(|&&t| t > at);
        match next {
            Some(&t) => {
                let took = Duration::from_nanos(t - at);
                report.reacquire.push(took);
                if took > within {
                    report.violate(
                        Invariant::I5,
                        format!(
                            "after `{fault}` the lock was granted again only after {took:?} (bound {within:?})"
                        ),
                    );
                }
            }
            None => report.violate(
                Invariant::I5,
                format!("after `{fault}` the lock was never granted again"),
            ),
        }
    }
}

/// I6: validity windows (grant received → last `Check` or `Probe` with `valid: true`) of
/// different tokens must not overlap.
fn check_exclusive_validity(history: &[Record], report: &mut Report) {
    // token → (worker, granted at, last valid check)
    let mut windows: HashMap<u64, (u32, u64, u64)> = HashMap::new();
    for r in history {
        match r.event {
            Event::Acquired { token, .. } => {
                windows.entry(token).or_insert((r.w, r.t, r.t));
            }
            Event::Check { token, valid: true } | Event::Probe { token, valid: true } => {
                if let Some(w) = windows.get_mut(&token) {
                    w.2 = w.2.max(r.t);
                }
            }
            _ => {}
        }
    }
    let mut list: Vec<(u64, u32, u64, u64)> = windows
        .into_iter()
        .map(|(token, (w, from, to))| (token, w, from, to))
        .collect();
    list.sort_by_key(|&(token, _, from, _)| (from, token));
    // The window reaching furthest so far: (token, worker, end).
    let mut furthest: Option<(u64, u32, u64)> = None;
    for &(token, worker, from, to) in &list {
        if let Some((prev, prev_worker, end)) = furthest
            && end > from
        {
            report.overlapping_validity += 1;
            report.violate(
                Invariant::I6,
                format!(
                    "worker {prev_worker}'s guard (token {prev}) said valid {:?} after worker {worker} was granted token {token}",
                    Duration::from_nanos(end - from)
                ),
            );
        }
        if furthest.is_none_or(|(_, _, end)| to > end) {
            furthest = Some((token, worker, to));
        }
    }
}

/// I7: permit windows (grant received → the holder's last [`Event::ValidUntil`]) swept; the
/// most open at once is reported, and more than `limit` is a violation where `judged` (the
/// server kept its state).
fn check_permit_limit(history: &[Record], limit: u32, judged: bool, report: &mut Report) {
    // token → (worker, granted at, valid until)
    let mut windows: HashMap<u64, (u32, u64, u64)> = HashMap::new();
    for r in history {
        match r.event {
            Event::Acquired { token, .. } => {
                windows.entry(token).or_insert((r.w, r.t, r.t));
            }
            Event::ValidUntil { token, until } => {
                if let Some(w) = windows.get_mut(&token) {
                    // The last record counts: a release before the deadline ends the window.
                    w.2 = until.max(w.1);
                }
            }
            _ => {}
        }
    }
    // +1 at a start, -1 at an end; ends first at equal instants (a window is half-open).
    let mut steps: Vec<(u64, i64, u64)> = windows
        .iter()
        .filter(|(_, (_, from, until))| from < until)
        .flat_map(|(&token, &(_, from, until))| [(from, 1, token), (until, -1, token)])
        .collect();
    steps.sort();
    let mut open: Vec<u64> = Vec::new();
    // Whether the limit is passed now: one violation per episode.
    let mut over = false;
    for (_, step, token) in steps {
        if step < 0 {
            open.retain(|&o| o != token);
            over &= open.len() as u64 > u64::from(limit);
            continue;
        }
        open.push(token);
        report.most_valid_permits = report.most_valid_permits.max(open.len() as u64);
        if open.len() as u64 > u64::from(limit) && !over {
            over = true;
            if judged {
                let holders: Vec<String> = open
                    .iter()
                    .map(|o| format!("{o} (worker {})", windows[o].0))
                    .collect();
                report.violate(
                    Invariant::I7,
                    format!(
                        "{} permits valid at once with a limit of {limit}: tokens {}",
                        open.len(),
                        holders.join(", ")
                    ),
                );
            }
        }
    }
}

/// Holding periods (grant to release, or to the holder's last step) that overlap.
fn overlapping_holders(history: &[Record]) -> u64 {
    let mut periods: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
    let mut current: HashMap<u32, u64> = HashMap::new();
    for r in history {
        if let Event::Acquired { token, .. } = r.event {
            current.insert(r.w, token);
            periods.insert((r.w, token), (r.t, r.t));
        } else if let Some(&token) = current.get(&r.w)
            && let Some(period) = periods.get_mut(&(r.w, token))
        {
            period.1 = r.t;
            if matches!(r.event, Event::Released { .. }) {
                current.remove(&r.w);
            }
        }
    }
    let mut list: Vec<(u32, u64, u64)> = periods.iter().map(|(k, v)| (k.0, v.0, v.1)).collect();
    list.sort_by_key(|p| p.1);
    let mut overlaps = 0;
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            if b.1 >= a.2 {
                break;
            }
            if a.0 != b.0 {
                overlaps += 1;
            }
        }
    }
    overlaps
}
