//! Granting: exclusivity and tokens.

use std::collections::HashSet;
use std::time::Duration;

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
pub async fn concurrent_acquire_single_winner(cx: &Ctx) {
    let name = cx.name("race");
    let attempts = (0..16).map(|_| {
        let store = cx.store().clone();
        let name = name.clone();
        let ttl = cx.long_ttl();
        tokio::spawn(async move { store.try_acquire(&name, ttl).await })
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<_> = results
        .into_iter()
        .filter_map(|r| {
            r.expect("an attempt's task")
                .unwrap_or_else(|e| panic!("try_acquire on `{name}` racing 15 others: {e}"))
        })
        .collect();
    let tokens: Vec<u64> = winners.iter().map(|l| l.token().get()).collect();
    assert_eq!(
        winners.len(),
        1,
        "try_acquire: exactly one of 16 simultaneous attempts on `{name}` wins; granted \
         tokens {tokens:?}"
    );
    super::release(cx, &winners[0], "of the race's winner").await;
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
        cx.store().renew(&old, cx.long_ttl()).await,
        fencelock_core::ErrorKind::LeaseLost,
        &format!("renew of the expired lease (token {})", old.token()),
    );
    super::assert_kind(
        cx.store().release(&old).await,
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
pub async fn exclusive_until_local_deadline(cx: &Ctx) {
    let name = cx.name("until-deadline");
    let ttl = cx.short_ttl();
    let sent = Instant::now();
    let first = cx.grant(&name, ttl).await;
    let deadline = first.deadline();
    // Small steps sample the window between an early expiry and the deadline densely.
    let step = (ttl / 50).clamp(Duration::from_millis(2), Duration::from_millis(20));
    let give_up = deadline + cx.past_short_ttl();
    let mut refused_in_time = 0u32;
    let rival = loop {
        let attempt = cx.store().try_acquire(&name, ttl).await;
        let answered = Instant::now();
        match attempt {
            Ok(None) if answered < deadline => refused_in_time += 1,
            Ok(None) => {}
            Ok(Some(rival)) => {
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
            Err(e) => panic!("try_acquire on `{name}` while it is held: {e}"),
        }
        assert!(
            answered < give_up,
            "try_acquire never granted `{name}` to the rival in the {:?} after the first \
             lease's deadline (TTL {:?}): the grant did not expire",
            cx.past_short_ttl(),
            first.ttl()
        );
        tokio::time::sleep(step).await;
    };
    assert!(
        refused_in_time > 0,
        "no try_acquire on `{name}` was answered before the first lease's deadline ({:?} \
         after its send): the case proved nothing",
        deadline.saturating_duration_since(sent)
    );
    super::assert_rises(rival.token(), first.token(), "try_acquire after expiry");
    super::release(cx, &rival, "of the rival's grant").await;
}
