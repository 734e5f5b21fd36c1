//! Granting: exclusivity and tokens.

use std::collections::HashSet;
use std::time::Duration;

use fencelock_core::{Error, Lease, LockName};
use tokio::time::Instant;

use crate::Ctx;

/// A free name is granted with a deadline measured from the send.
pub async fn acquire_grants_when_free(cx: &Ctx) {
    let name = cx.name("free");
    let ttl = cx.long_ttl();
    let before = Instant::now();
    // A free name is granted.
    let lease = cx.grant(&name, ttl).await;
    let after = Instant::now();
    assert_eq!(
        lease.name(),
        &name,
        "try_acquire: the lease names another lock"
    );
    assert!(
        lease.token().get() > 0,
        "try_acquire: token {} (tokens start above zero)",
        lease.token()
    );
    assert!(
        lease.ttl() >= ttl,
        "try_acquire: granted a TTL of {:?} for a requested {ttl:?}",
        lease.ttl()
    );
    assert!(
        lease.deadline() > before && lease.deadline() <= after + lease.ttl(),
        "try_acquire: the deadline must lie after the send and at most the TTL ({:?}) after \
         the answer; it is {:?} after the send and {:?} after the answer",
        lease.ttl(),
        lease.deadline().saturating_duration_since(before),
        lease.deadline().saturating_duration_since(after),
    );
    assert!(
        lease.is_locally_valid(),
        "try_acquire: a fresh lease with TTL {:?} is already past its deadline",
        lease.ttl()
    );
    super::expect_holder(cx, &name, Some(lease.token()), "after try_acquire").await;
    super::release(cx, &lease, "of a fresh grant").await;
}

/// While a grant holds, every other attempt is `Ok(None)`.
pub async fn acquire_is_exclusive(cx: &Ctx) {
    let name = cx.name("exclusive");
    let a = cx.grant(&name, cx.long_ttl()).await;
    for attempt in 1..=3 {
        let when = format!("(attempt {attempt} of 3) while held");
        super::expect_refused(cx, &name, a.token(), &when).await;
    }
    super::expect_holder(cx, &name, Some(a.token()), "after refused attempts").await;
    super::release(cx, &a, "of the first holder").await;
    // Free after release.
    let b = cx.grant(&name, cx.long_ttl()).await;
    super::assert_rises(b.token(), a.token(), "try_acquire after release");
    super::release(cx, &b, "of the second holder").await;
}

/// Of many simultaneous attempts, exactly one wins.
///
/// An attempt that failed transiently may have won without anyone learning it (or held the
/// name until its rollback), so a race with such an attempt and no known winner proves only
/// "at most one": then the race is run again on a fresh name, up to `RACES` times.
pub async fn concurrent_acquire_single_winner(cx: &Ctx) {
    const RACES: u32 = 5;
    for race in 1..=RACES {
        let name = cx.name(&format!("race-{race}"));
        let attempts = (0..16).map(|_| {
            let store = cx.store().clone();
            let name = name.clone();
            let ttl = cx.long_ttl();
            tokio::spawn(async move { store.try_acquire(&name, ttl).await })
        });
        let mut winners = Vec::new();
        let mut failed = Vec::new();
        for result in futures::future::join_all(attempts).await {
            match result.expect("an attempt's task") {
                Ok(Some(lease)) => winners.push(lease),
                Ok(None) => {}
                Err(e) if e.is_transient() => failed.push(e.to_string()),
                Err(e) => panic!("try_acquire on `{name}` racing 15 others: {e}"),
            }
        }
        let tokens: Vec<u64> = winners.iter().map(|l| l.token().get()).collect();
        assert!(
            winners.len() <= 1,
            "try_acquire: exactly one of 16 simultaneous attempts on `{name}` wins; granted \
             tokens {tokens:?} ({} more attempts failed transiently)",
            failed.len()
        );
        if let Some(winner) = winners.pop() {
            cx.saw(&name, winner.token());
            super::expect_holder(
                cx,
                &name,
                Some(winner.token()),
                "after the race (the winner must hold it)",
            )
            .await;
            super::release(cx, &winner, "of the race's winner").await;
            return;
        }
        assert!(
            !failed.is_empty(),
            "try_acquire: exactly one of 16 simultaneous attempts on free `{name}` wins; none \
             was granted, and every answer was definite"
        );
        eprintln!(
            "race {race} on `{name}`: no known winner, {} attempts failed transiently ({}); \
             racing again",
            failed.len(),
            failed[0]
        );
    }
    panic!(
        "try_acquire: each of {RACES} races of 16 simultaneous attempts had attempts that \
         failed transiently and no known winner"
    );
}

/// Tokens strictly increase across acquire/release cycles.
pub async fn tokens_increase_across_release(cx: &Ctx) {
    let name = cx.name("cycle");
    let mut tokens = Vec::new();
    for cycle in 1..=5 {
        let lease = cx.grant(&name, cx.long_ttl()).await;
        tokens.push(lease.token());
        super::release(cx, &lease, &format!("in cycle {cycle}")).await;
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "try_acquire after release: tokens {tokens:?} of five cycles must strictly increase"
    );
    assert_eq!(
        tokens.iter().collect::<HashSet<_>>().len(),
        tokens.len(),
        "try_acquire after release: tokens {tokens:?} must be unique"
    );
}

/// A grant that expired is replaced by one with a greater token; the old holder can neither
/// renew nor release.
pub async fn tokens_increase_across_expiry(cx: &Ctx) {
    let (name, old, new) = super::expired_then_taken_over(cx, "expiry").await;
    super::assert_rises(new.token(), old.token(), "try_acquire after expiry");
    super::assert_kind(
        cx.renew(&old, cx.long_ttl()).await,
        fencelock_core::ErrorKind::LeaseLost,
        &format!("renew of the expired lease (token {})", old.token()),
    );
    super::assert_kind(
        cx.release_answer(&old).await,
        fencelock_core::ErrorKind::LeaseLost,
        &format!("release of the expired lease (token {})", old.token()),
    );
    super::expect_holder(
        cx,
        &name,
        Some(new.token()),
        "after the expired holder's renew and release",
    )
    .await;
    super::release(cx, &new, "of the new holder").await;
}

/// A rival trying in small steps is refused for as long as the first lease is locally valid,
/// and wins (within bounds) once the server let the grant expire.
///
/// This is the promise the local deadline rests on: a store that ends grants earlier than the
/// TTL its leases report (at ¾ of it, say) passes every other case, but hands the lock to a
/// rival while the first holder's `is_locally_valid()` still says true: two holders at once.
///
/// A rival's attempt answered with a transient error proves nothing either way: it is counted,
/// not failed, and what it may have been granted is looked up (a grant above the first one's
/// token seen before the deadline is two holders at once; after it, an orphan that is broken).
/// A round whose every answer before the deadline was transient proves nothing: then the case
/// runs another round on a fresh name, up to `ROUNDS` times.
pub async fn exclusive_until_local_deadline(cx: &Ctx) {
    const ROUNDS: u32 = 3;
    for round in 1..=ROUNDS {
        match exclusive_round(cx, round).await {
            Ok(()) => return,
            Err(why) => eprintln!("round {round} proved nothing: {why}"),
        }
    }
    panic!(
        "each of {ROUNDS} rounds had only transient answers to try_acquire before the first \
         lease's deadline: the case proved nothing"
    );
}

/// One round of [`exclusive_until_local_deadline`]: `Err` says why it proved nothing.
async fn exclusive_round(cx: &Ctx, round: u32) -> Result<(), String> {
    let name = cx.name(&format!("until-deadline-{round}"));
    let ttl = cx.short_ttl();
    let sent = Instant::now();
    let first = cx.grant(&name, ttl).await;
    let deadline = first.deadline();
    // Small steps sample the window between an early expiry and the deadline densely.
    let step = (ttl / 50).clamp(Duration::from_millis(2), Duration::from_millis(20));
    let give_up = deadline + cx.past_short_ttl();
    let mut refused_in_time = 0u32;
    // Attempts answered with a transient error: in all, and before the deadline.
    let (mut failed, mut failed_in_time) = (0u32, 0u32);
    let mut last_failure: Option<Error> = None;
    let rival = loop {
        let attempt = cx.store().try_acquire(&name, ttl).await;
        let answered = Instant::now();
        match attempt {
            Ok(None) if answered < deadline => refused_in_time += 1,
            Ok(None) => {
                // After a failed attempt, the holder may be that attempt's orphan.
                let orphan = failed > 0 && break_lost_grant(cx, &name, &first, sent).await;
                assert!(
                    orphan || answered < give_up,
                    "try_acquire never granted `{name}` to the rival in the {:?} after the \
                     first lease's deadline (TTL {:?}): the grant did not expire ({failed} \
                     attempts failed transiently; last: {last_failure:?})",
                    cx.past_short_ttl(),
                    first.ttl()
                );
            }
            Ok(Some(rival)) => {
                cx.saw(&name, rival.token());
                // Answered before the deadline means granted before it: two holders at once.
                // (A grant answered after the deadline may still have been sent before it;
                // the server may have judged it after its expiry, which is fine.)
                assert!(
                    answered >= deadline,
                    "try_acquire granted `{name}` to a rival (token {}) {:?} after the first \
                     grant (token {}) was sent, while that lease was still locally valid for \
                     {:?}: two holders at once. The first lease reports a TTL of {:?} (asked \
                     {ttl:?}); the store must keep the grant at least that long",
                    rival.token(),
                    answered.saturating_duration_since(sent),
                    first.token(),
                    deadline.saturating_duration_since(answered),
                    first.ttl(),
                );
                break rival;
            }
            // Neither a refusal nor a grant the case can see: counted, not failed.
            Err(e) if e.is_transient() => {
                failed += 1;
                if answered < deadline {
                    failed_in_time += 1;
                }
                assert!(
                    answered < give_up + crate::settle::PATIENCE,
                    "try_acquire on `{name}`: no definite answer in the {:?} after the first \
                     lease's deadline ({failed} attempts failed transiently; last: {e})",
                    answered.saturating_duration_since(deadline)
                );
                last_failure = Some(e);
                break_lost_grant(cx, &name, &first, sent).await;
            }
            Err(e) => panic!("try_acquire on `{name}` while it is held: {e}"),
        }
        tokio::time::sleep(step).await;
    };
    super::assert_rises(rival.token(), first.token(), "try_acquire after expiry");
    super::release(cx, &rival, "of the rival's grant").await;
    if refused_in_time == 0 {
        assert!(
            failed_in_time > 0,
            "no try_acquire on `{name}` was answered before the first lease's deadline ({:?} \
             after its send): the case proved nothing",
            deadline.saturating_duration_since(sent)
        );
        return Err(format!(
            "every try_acquire on `{name}` answered before the first lease's deadline \
             ({failed_in_time}) failed transiently (last: {last_failure:?})"
        ));
    }
    if failed > 0 {
        eprintln!(
            "try_acquire on `{name}`: {failed} attempts failed transiently ({failed_in_time} \
             before the deadline), {refused_in_time} refused before it; last: {last_failure:?}"
        );
    }
    Ok(())
}

/// After a rival's attempt of [`exclusive_until_local_deadline`] failed transiently, it may
/// have been granted: a holder of `name` above the `first` grant's token can only be such a
/// grant (no one else asks for the name). Seen before the first lease's deadline, it is two
/// holders at once; after it, an orphan no one can use, which is broken. Returns whether one
/// was broken.
async fn break_lost_grant(cx: &Ctx, name: &LockName, first: &Lease, sent: Instant) -> bool {
    let what = format!("inspect `{name}` after a rival's try_acquire failed transiently");
    let holder = cx.inspect_as(name, &what).await;
    let seen = Instant::now();
    let Some(holder) = holder.filter(|h| h.token > first.token()) else {
        return false;
    };
    assert!(
        seen >= first.deadline(),
        "try_acquire granted `{name}` to a rival whose answer was lost (token {}, shown by \
         inspect {:?} after the first grant was sent) while the first lease (token {}) was \
         still locally valid for {:?}: two holders at once. The first lease reports a TTL of \
         {:?}; the store must keep the grant at least that long",
        holder.token,
        seen.saturating_duration_since(sent),
        first.token(),
        first.deadline().saturating_duration_since(seen),
        first.ttl(),
    );
    let broken = cx.force_release(name).await;
    eprintln!(
        "`{name}`: broke token {} (above the first grant's {}), granted to a rival's attempt \
         that failed; {broken:?}",
        holder.token,
        first.token()
    );
    true
}
