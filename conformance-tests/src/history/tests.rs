//! Synthetic histories: one clean, and one breaking each invariant.

use std::time::Duration;

use super::*;

const MS: u64 = 1_000_000;

fn bounds() -> Bounds {
    Bounds {
        ttl: Duration::from_millis(500),
        renew_every: Duration::from_millis(150),
        slack: Duration::from_millis(250),
        exclusive: true,
        permit_limit: None,
    }
}

fn rec(w: u32, t_ms: u64, event: Event) -> Record {
    Record {
        w,
        t: t_ms * MS,
        event,
    }
}

fn acquired(w: u32, t_ms: u64, token: u64) -> Record {
    rec(
        w,
        t_ms,
        Event::Acquired {
            token,
            sent: (t_ms - 1) * MS,
        },
    )
}

fn oracle(op: Op, worker: u32, token: u64, accepted: bool, high_water: Option<u64>) -> OracleOp {
    OracleOp {
        op,
        worker,
        token,
        accepted,
        high_water,
        slot: None,
    }
}

/// Two workers, one pause: worker 1 (token 10) reads, checks, is paused, worker 2 (token 11)
/// reads and writes, worker 1's late write is rejected.
fn clean() -> (Vec<Record>, OracleLog) {
    let history = vec![
        acquired(1, 10, 10),
        rec(
            1,
            11,
            Event::Read {
                token: 10,
                value: 0,
            },
        ),
        rec(
            1,
            12,
            Event::Check {
                token: 10,
                valid: true,
            },
        ),
        rec(
            0,
            13,
            Event::FaultInjected {
                fault: "pause".into(),
                holder: true,
            },
        ),
        acquired(2, 600, 11),
        rec(
            2,
            601,
            Event::Read {
                token: 11,
                value: 0,
            },
        ),
        rec(
            2,
            602,
            Event::Check {
                token: 11,
                valid: true,
            },
        ),
        rec(
            2,
            603,
            Event::WriteAccepted {
                token: 11,
                value: 1,
            },
        ),
        rec(
            2,
            604,
            Event::Released {
                token: 11,
                ok: true,
            },
        ),
        rec(
            0,
            1513,
            Event::FaultHealed {
                fault: "pause".into(),
            },
        ),
        rec(
            1,
            1514,
            Event::Rejected {
                op: Op::Write,
                token: 10,
                high_water: 11,
            },
        ),
        rec(
            1,
            1515,
            Event::Released {
                token: 10,
                ok: false,
            },
        ),
    ];
    let log = OracleLog {
        ops: vec![
            oracle(Op::Read, 1, 10, true, None),
            oracle(Op::Read, 2, 11, true, None),
            oracle(Op::Write, 2, 11, true, None),
            oracle(Op::Write, 1, 10, false, Some(11)),
        ],
        rejections_in_order: true,
        final_value: 1,
    };
    (history, log)
}

#[test]
fn clean_history_passes_with_its_figures() {
    let (history, log) = clean();
    let report = check(&history, &log, bounds());
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.writes_attempted, 2);
    assert_eq!(report.writes_accepted, 1);
    assert_eq!(report.stale_attempted, 1);
    assert_eq!(report.stale_accepted, 0);
    assert_eq!(report.tokens_issued, 2);
    assert_eq!(report.token_regressions, 0);
    assert_eq!(report.faults_injected, 1);
    assert_eq!(report.reacquire, vec![Duration::from_millis(587)]);
    assert_eq!(report.overlapping_holders, 1);
}

#[test]
fn i1_stale_write_accepted_is_caught() {
    let (history, mut log) = clean();
    log.ops[3].accepted = true;
    log.ops[3].high_water = None;
    log.final_value = 2;
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I1]);
    assert_eq!(report.stale_accepted, 1);
}

#[test]
fn i1_fresh_write_rejected_is_caught() {
    // A fence comparing with > instead of >=: the holder's second write with the same token
    // is refused.
    let (history, mut log) = clean();
    log.ops.insert(3, oracle(Op::Write, 2, 11, false, Some(11)));
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I1]);
    assert_eq!(report.fresh_rejected, 1);
    // Also when rejections were collected out of order (PostgreSQL oracle).
    log.rejections_in_order = false;
    let report = check(&history, &log, bounds());
    assert_eq!(report.fresh_rejected, 1);
}

#[test]
fn i2_duplicate_and_backwards_tokens_are_caught() {
    let (mut history, log) = clean();
    // Worker 2's grant reuses token 10.
    history[4] = acquired(2, 600, 10);
    let report = check(&history, &log, bounds());
    assert!(report.broken().contains(&Invariant::I2), "{report:?}");
    // A later grant with a lower token (counter lost), not overlapping the earlier one.
    let (mut history, log) = clean();
    history.push(acquired(3, 2000, 5));
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I2]);
    assert_eq!(report.token_regressions, 1);
    // Overlapping requests may come back in either order: not a regression.
    let (mut history, log) = clean();
    history.push(rec(
        3,
        2000,
        Event::Acquired {
            token: 20,
            sent: 1990 * MS,
        },
    ));
    history.push(rec(
        4,
        2001,
        Event::Acquired {
            token: 19,
            sent: 1995 * MS,
        },
    ));
    history.sort_by_key(|r| r.t);
    assert!(check(&history, &log, bounds()).is_clean());
    // A client-side regression report counts too.
    let (mut history, log) = clean();
    history.push(rec(
        3,
        2000,
        Event::AcquireFailed {
            kind: "TokenRegression".into(),
            error: "token 3 after 11".into(),
        },
    ));
    assert_eq!(
        check(&history, &log, bounds()).broken(),
        vec![Invariant::I2]
    );
}

#[test]
fn i2_observer_terms_must_rise_and_have_been_granted() {
    let observed = |t_ms, term| rec(9, t_ms, Event::LeaderObserved { term });
    // The observer sees term 10, a vacancy, then term 11: clean.
    let (mut history, log) = clean();
    history.extend([
        observed(15, Some(10)),
        observed(550, None),
        observed(620, Some(11)),
    ]);
    history.sort_by_key(|r| r.t);
    let report = check(&history, &log, bounds());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.leaders_observed, 2);
    // Term 10 again after 11: backwards.
    history.push(observed(700, Some(10)));
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I2], "{report:?}");
    assert_eq!(
        (report.token_regressions, report.observed_regressions),
        (1, 1)
    );
    // Another observer's own order is its own: term 10 after observer 9's 11 is fine.
    let (mut history, log) = clean();
    history.extend([
        observed(620, Some(11)),
        rec(8, 700, Event::LeaderObserved { term: Some(10) }),
    ]);
    assert!(check(&history, &log, bounds()).is_clean());
    // A term nobody was granted.
    let (mut history, log) = clean();
    history.push(observed(700, Some(12)));
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I2], "{report:?}");
}

#[test]
fn i3_lost_write_is_caught() {
    let (history, mut log) = clean();
    log.final_value = 0;
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I3]);
    assert_eq!(report.lost_writes, 1);
}

#[test]
fn i4_write_after_invalid_guard_is_caught() {
    let (mut history, log) = clean();
    history[2] = rec(
        1,
        12,
        Event::Check {
            token: 10,
            valid: false,
        },
    );
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I4]);
    assert_eq!(report.writes_after_invalid, 1);
}

#[test]
fn i5_slow_or_missing_recovery_is_caught() {
    // Worker 2 only gets the lock 1.2 s after the holder was paused (bound 0.9 s).
    let (mut history, log) = clean();
    history[4] = acquired(2, 1213, 11);
    history.sort_by_key(|r| r.t);
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I5]);
    // A server fault measures from its heal, and no grant after it at all is a violation.
    let (mut history, log) = clean();
    history.push(rec(
        0,
        3000,
        Event::FaultInjected {
            fault: "server kill".into(),
            holder: false,
        },
    ));
    history.push(rec(
        0,
        3500,
        Event::FaultHealed {
            fault: "server kill".into(),
        },
    ));
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I5]);
    assert!(report.violations[0].detail.contains("never"), "{report:?}");
    history.push(acquired(2, 3600, 12));
    let report = check(&history, &log, bounds());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.reacquire[1], Duration::from_millis(100));
}

#[test]
fn oracle_log_is_read_from_coordinator_records() {
    let history = vec![rec(
        0,
        1,
        Event::Oracle {
            op: Op::Write,
            worker: 3,
            token: 9,
            accepted: false,
            high_water: Some(10),
            value: 4,
            slot: None,
        },
    )];
    let log = OracleLog::from_history(&history, 4);
    assert_eq!(log.ops, vec![oracle(Op::Write, 3, 9, false, Some(10))]);
    assert!(log.rejections_in_order);
}

#[test]
fn i6_two_guards_valid_at_once_is_caught_only_where_the_server_kept_its_state() {
    // Worker 1's guard still says valid after worker 2 was granted token 11 (a renew that
    // never asked the server).
    let (mut history, log) = clean();
    history.push(rec(
        1,
        1516,
        Event::Check {
            token: 10,
            valid: true,
        },
    ));
    let report = check(&history, &log, bounds());
    assert_eq!(report.broken(), vec![Invariant::I6]);
    assert_eq!(report.overlapping_validity, 1);
    // Where the server may have lost the lease (Redis restarted without persistence), the
    // same history is legitimate and I6 is not checked.
    let lossy = Bounds {
        exclusive: false,
        ..bounds()
    };
    assert!(check(&history, &log, lossy).is_clean());
}

#[test]
fn i6_clean_history_with_an_invalid_guard_after_the_pause_passes() {
    // The paused holder's guard says invalid after worker 2's grant: no overlap.
    let (mut history, log) = clean();
    history.push(rec(
        1,
        1516,
        Event::Check {
            token: 10,
            valid: false,
        },
    ));
    let report = check(&history, &log, bounds());
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.overlapping_validity, 0);
    assert_eq!(report.invalid_checks, 1);
}

#[test]
fn i6_a_probe_saying_valid_after_a_later_grant_is_caught() {
    // While the pause holds worker 1, the harness asks its guard: still valid after worker 2
    // was granted token 11 (the store ended the grant before the guard's deadline).
    let (mut history, log) = clean();
    history.push(rec(
        1,
        700,
        Event::Probe {
            token: 10,
            valid: true,
        },
    ));
    history.sort_by_key(|r| r.t);
    let report = check(&history, &log, bounds());
    assert_eq!(
        report.broken(),
        vec![Invariant::I6],
        "{:?}",
        report.violations
    );
    assert!(report.violations[0].detail.contains("token 10"));
}

#[test]
fn a_probe_saying_invalid_before_the_frozen_holders_write_is_not_i4() {
    // The holder decided to write before the fault froze it: a probe is the harness's
    // question, not the holder's, so the write that follows is no I4 violation.
    let (mut history, log) = clean();
    history.push(rec(
        1,
        1200,
        Event::Probe {
            token: 10,
            valid: false,
        },
    ));
    history.sort_by_key(|r| r.t);
    let report = check(&history, &log, bounds());
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(
        report.invalid_checks, 0,
        "probes are not the holder's checks"
    );
}

fn valid_until(w: u32, t_ms: u64, token: u64, until_ms: u64) -> Record {
    rec(
        w,
        t_ms,
        Event::ValidUntil {
            token,
            until: until_ms * MS,
        },
    )
}

/// Three permit holders under a limit of 2: workers 1 and 2 hold together; worker 3 is
/// granted after worker 1's window ended (its deadline, recorded at its last check).
fn permits() -> Vec<Record> {
    vec![
        acquired(1, 10, 10),
        acquired(2, 20, 11),
        valid_until(1, 30, 10, 400),
        valid_until(2, 40, 11, 500),
        acquired(3, 450, 12),
        valid_until(2, 460, 11, 460),
        valid_until(3, 700, 12, 700),
    ]
}

fn permit_bounds(limit: u32) -> Bounds {
    Bounds {
        permit_limit: Some(limit),
        ..bounds()
    }
}

#[test]
fn i7_permits_within_the_limit_pass() {
    let report = check(&permits(), &OracleLog::default(), permit_bounds(2));
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.most_valid_permits, 2);
}

#[test]
fn i7_a_third_permit_valid_under_a_limit_of_two_is_caught_only_where_the_server_kept_its_state() {
    // Worker 1's last record says it took its permit as valid until 480 ms: past worker 3's
    // grant at 450 ms, while worker 2 still held.
    let mut history = permits();
    history.push(valid_until(1, 440, 10, 480));
    history.sort_by_key(|r| r.t);
    let report = check(&history, &OracleLog::default(), permit_bounds(2));
    assert_eq!(report.broken(), vec![Invariant::I7]);
    assert_eq!(report.most_valid_permits, 3);
    assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    // A server that lost its state: reported, not judged.
    let lossy = Bounds {
        exclusive: false,
        ..permit_bounds(2)
    };
    let report = check(&history, &OracleLog::default(), lossy);
    assert!(report.is_clean());
    assert_eq!(report.most_valid_permits, 3);
    // A window ends at its holder's last record: released at 430 ms, no overlap.
    let mut history = permits();
    history.push(valid_until(1, 440, 10, 430));
    history.sort_by_key(|r| r.t);
    assert!(check(&history, &OracleLog::default(), permit_bounds(2)).is_clean());
}

#[test]
fn i1_each_place_has_its_own_mark() {
    let at = |op, worker, token, accepted, high_water, slot| OracleOp {
        slot: Some(slot),
        ..oracle(op, worker, token, accepted, high_water)
    };
    // Tokens 11 and 10 hold places 1 and 0 together: the lower token at its own place is
    // fresh. Token 12 takes place 0 after token 10 expired; token 10's late write there is
    // stale and rejected.
    let log = OracleLog {
        ops: vec![
            at(Op::Read, 2, 11, true, None, 1),
            at(Op::Read, 1, 10, true, None, 0),
            at(Op::Write, 2, 11, true, None, 1),
            at(Op::Read, 3, 12, true, None, 0),
            at(Op::Write, 1, 10, false, Some(12), 0),
            at(Op::Write, 3, 12, true, None, 0),
        ],
        rejections_in_order: true,
        final_value: 2,
    };
    let report = check(&[], &log, bounds());
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!((report.stale_attempted, report.stale_accepted), (1, 0));
    // Unfenced, the late write lands: caught.
    let mut unfenced = log.clone();
    unfenced.ops[4] = at(Op::Write, 1, 10, true, None, 0);
    unfenced.final_value = 3;
    let report = check(&[], &unfenced, bounds());
    assert_eq!(report.broken(), vec![Invariant::I1]);
    assert_eq!((report.stale_attempted, report.stale_accepted), (1, 1));
}
