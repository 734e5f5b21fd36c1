//! Leader election over the store: who leads, terms, and observers.

use std::time::Duration;

use fencelock_core::{AcquireOptions, Election, Leader, LeaderWatch, Leadership, OwnerLabel};
use tokio::time::{Instant, timeout_at};

use crate::{Ctx, settle};

/// How often the cases' observers read the leader when nothing is pushed.
const OBSERVE_EVERY: Duration = Duration::from_millis(50);

/// How long a case gives an observer to report a change that the store pushed or that its
/// next poll sees: many poll intervals, and a loaded 2-core machine.
const REPORTED_WITHIN: Duration = Duration::from_secs(10);

fn label(text: &str) -> OwnerLabel {
    OwnerLabel::new(text).expect("a valid label")
}

fn election(cx: &Ctx, suffix: &str) -> Election {
    cx.locker()
        .election(cx.name(suffix))
        .expect("a valid election name")
        .with_observe_interval(OBSERVE_EVERY)
}

/// Campaign options: renewed short leases, waiting long enough for an orphan of an attempt
/// with an unknown outcome to expire.
fn candidate(cx: &Ctx, name: &str) -> AcquireOptions {
    AcquireOptions::new()
        .with_ttl(cx.short_ttl())
        .with_timeout(cx.short_ttl() * 10 + Duration::from_secs(10))
        .with_label(label(name))
}

/// Campaigns until elected (transient errors asked again, as `settle` does).
async fn campaign(election: &Election, options: AcquireOptions, who: &str) -> Leadership {
    let what = format!("{who}'s campaign in `{}`", election.name());
    settle::definite(&what, || election.campaign(options.clone())).await
}

/// Resigns `leadership`, which must still hold; a transient error is followed by releases of
/// its lease, as `settle::release` does.
async fn resign(cx: &Ctx, leadership: Leadership, who: &str) {
    let lease = leadership.guard().lease();
    match leadership.resign().await {
        Ok(()) => {}
        Err(e) if e.is_transient() => {
            eprintln!(
                "{who}'s resignation (term {}): {e}; releasing again",
                lease.token()
            );
            settle::release(cx.store().as_ref(), &lease).await;
        }
        Err(e) => panic!("{who}'s resignation (term {}): {e}", lease.token()),
    }
}

/// The observer's next answer, which must come within [`REPORTED_WITHIN`] (transient errors
/// are asked again).
async fn next_change(watch: &mut LeaderWatch, expected: &str) -> Option<Leader> {
    let what = format!("the observer of `{}` waiting for {expected}", watch.name());
    let until = Instant::now() + REPORTED_WITHIN;
    loop {
        match timeout_at(until, watch.changed()).await {
            Ok(Ok(change)) => return change,
            Ok(Err(e)) if e.is_transient() => {
                eprintln!("{what}: {e}; asking again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: nothing reported within {REPORTED_WITHIN:?}"),
        }
    }
}

/// Asserts that `seen` is `leadership`'s leader: its term and label.
#[track_caller]
fn assert_is(seen: Option<&Leader>, leadership: &Leadership, what: &str) {
    let Some(seen) = seen else {
        panic!(
            "{what}: shows no leader, expected term {} ({:?})",
            leadership.term(),
            leadership.label()
        );
    };
    assert_eq!(
        (seen.term, seen.label.as_ref()),
        (leadership.term(), leadership.label().as_ref()),
        "{what}: (left: the leader shown, right: the leadership)"
    );
}

/// `leader()` answers the leader's term and label while it leads (a plain lock holder leads
/// too), nobody else is elected meanwhile, and nobody leads after it resigned.
pub async fn leader_reports_label_and_term(cx: &Ctx) {
    let election = election(cx, "leader");
    let what = format!("leader() of `{}`", election.name());
    let before = settle::definite(&what, || election.leader()).await;
    assert_eq!(before, None, "{what} before any campaign");

    let first = campaign(&election, candidate(cx, "web-1:4711"), "web-1").await;
    let shown = settle::definite(&what, || election.leader()).await;
    assert_is(shown.as_ref(), &first, &format!("{what} while web-1 leads"));
    let left = shown.map_or(Duration::ZERO, |l| l.remaining);
    assert!(
        left > Duration::ZERO && left <= cx.short_ttl(),
        "{what}: the leader's lease has {left:?} left, TTL {:?}",
        cx.short_ttl()
    );
    let rival = settle::definite("web-2's try_campaign while web-1 leads", || {
        election.try_campaign(candidate(cx, "web-2"))
    })
    .await;
    assert!(
        rival.is_none(),
        "web-2 was elected while web-1 (term {}) leads",
        first.term()
    );
    resign(cx, first, "web-1").await;
    let after = settle::definite(&what, || election.leader()).await;
    assert_eq!(after, None, "{what} after web-1 resigned");

    // The holder of the lock of the same name leads its election.
    let holder = cx
        .guard(
            election.name(),
            candidate(cx, "plain-lock-holder").with_no_wait(),
        )
        .await;
    let shown = settle::definite(&what, || election.leader()).await;
    assert_eq!(
        shown.as_ref().map(|l| (l.term, l.label.clone())),
        Some((holder.token(), Some(label("plain-lock-holder")))),
        "{what} while a plain Locker holds the lock"
    );
    cx.release_guard_as(holder, "release of the plain lock holder")
        .await;
}

/// A resigned leader's term is never used again: the next leadership, the same candidate's
/// included, has a greater term, and `leader()` never shows the old one after.
pub async fn resigned_term_is_never_reused(cx: &Ctx) {
    let election = election(cx, "terms");
    let mut last = None;
    for round in 0..3 {
        for who in ["web-1", "web-2"] {
            let leadership = campaign(&election, candidate(cx, who), who).await;
            let term = leadership.term();
            if let Some(last) = last {
                super::assert_rises(term, last, &format!("{who}'s term in round {round}"));
            }
            cx.saw(election.name(), term);
            resign(cx, leadership, who).await;
            let shown = settle::definite("leader() after a resignation", || election.leader())
                .await
                .map(|l| l.term);
            assert_eq!(
                shown, None,
                "leader() after {who} resigned term {term} in round {round}"
            );
            last = Some(term);
        }
    }
}

/// An observer reports the vacancy, each leader with its label in the order they led (a
/// candidate waiting in its campaign when the leader resigns included), and the vacancies
/// between; its terms rise.
pub async fn observe_reports_leader_changes_in_order(cx: &Ctx) {
    let election = election(cx, "observe");
    let mut watch = election.observe().expect("a valid observe interval");
    assert_eq!(
        next_change(&mut watch, "the first answer").await,
        None,
        "the observer's first answer before any campaign"
    );
    let mut terms = Vec::new();
    for who in ["web-1", "web-2"] {
        let leadership = campaign(&election, candidate(cx, who), who).await;
        let seen = next_change(&mut watch, &format!("{who} elected")).await;
        assert_is(
            seen.as_ref(),
            &leadership,
            &format!("the observer after {who}'s election"),
        );
        terms.push(leadership.term());
        resign(cx, leadership, who).await;
        let seen = next_change(&mut watch, &format!("the vacancy after {who}")).await;
        assert_eq!(seen, None, "the observer after {who} resigned");
    }

    // A hand-over: web-4 waits in its campaign while web-3 leads, and leads once web-3 resigns.
    let web3 = campaign(&election, candidate(cx, "web-3"), "web-3").await;
    let seen = next_change(&mut watch, "web-3 elected").await;
    assert_is(seen.as_ref(), &web3, "the observer after web-3's election");
    terms.push(web3.term());
    let waiting = campaign(&election, candidate(cx, "web-4"), "web-4");
    let handover = async {
        // Real time: give web-4 a moment to queue; the assertions hold either way.
        tokio::time::sleep(Duration::from_millis(100)).await;
        resign(cx, web3, "web-3").await;
    };
    let (web4, ()) = tokio::join!(waiting, handover);
    let mut seen = next_change(&mut watch, "web-4 elected").await;
    if seen.is_none() {
        // The observer may have read the store between the resignation and the election.
        seen = next_change(&mut watch, "web-4 elected after the vacancy").await;
    }
    assert_is(
        seen.as_ref(),
        &web4,
        "the observer after the hand-over to web-4",
    );
    terms.push(web4.term());
    resign(cx, web4, "web-4").await;
    let seen = next_change(&mut watch, "the vacancy after web-4").await;
    assert_eq!(seen, None, "the observer after web-4 resigned");

    for pair in terms.windows(2) {
        super::assert_rises(pair[1], pair[0], "a later leader's term");
    }
}
