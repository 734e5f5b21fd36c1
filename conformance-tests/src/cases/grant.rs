//! Granting: exclusivity and tokens.

use std::collections::HashSet;

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
    assert_eq!(lease.name(), &name);
    assert!(lease.token().get() > 0, "tokens start above zero");
    assert!(
        lease.ttl() >= ttl,
        "granted {:?} for requested {ttl:?}",
        lease.ttl()
    );
    assert!(lease.deadline() > before && lease.deadline() <= after + lease.ttl());
    assert!(lease.is_locally_valid());
    let info = cx.inspect(&name).await.expect("inspect shows the holder");
    assert_eq!(info.token, lease.token());
    cx.release(&lease).await;
}

/// While a grant holds, every other attempt is `Ok(None)`.
pub async fn acquire_is_exclusive(cx: &Ctx) {
    let name = cx.name("exclusive");
    let a = cx.grant(&name, cx.long_ttl()).await;
    for _ in 0..3 {
        let other = cx.try_acquire(&name, cx.long_ttl()).await;
        assert!(
            other.is_none(),
            "granted while {} holds: {other:?}",
            a.token()
        );
    }
    assert_eq!(cx.inspect(&name).await.map(|i| i.token), Some(a.token()));
    cx.release(&a).await;
    // Free after release.
    let b = cx.grant(&name, cx.long_ttl()).await;
    assert!(b.token() > a.token(), "{} after {}", b.token(), a.token());
    cx.release(&b).await;
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
            match result.expect("task") {
                Ok(Some(lease)) => winners.push(lease),
                Ok(None) => {}
                Err(e) if e.is_transient() => failed.push(e.to_string()),
                Err(e) => panic!("no store error: {e}"),
            }
        }
        let tokens: Vec<_> = winners.iter().map(|l| l.token()).collect();
        assert!(
            winners.len() <= 1,
            "{} of 16 simultaneous attempts won: tokens {tokens:?}",
            winners.len()
        );
        if let Some(winner) = winners.pop() {
            cx.saw(&name, winner.token());
            assert_eq!(
                cx.inspect(&name).await.map(|i| i.token),
                Some(winner.token()),
                "the winner holds the name"
            );
            cx.release(&winner).await;
            return;
        }
        assert!(
            !failed.is_empty(),
            "none of 16 simultaneous attempts on a free name won, and every answer was definite"
        );
        eprintln!(
            "race {race}: no known winner, {} attempts failed transiently ({}); racing again",
            failed.len(),
            failed[0]
        );
    }
    panic!("each of {RACES} races had attempts that failed transiently and no known winner");
}

/// Tokens strictly increase across acquire/release cycles.
pub async fn tokens_increase_across_release(cx: &Ctx) {
    let name = cx.name("cycle");
    let mut tokens = Vec::new();
    for _ in 0..5 {
        let lease = cx.grant(&name, cx.long_ttl()).await;
        tokens.push(lease.token());
        cx.release(&lease).await;
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens {tokens:?} must strictly increase"
    );
    assert_eq!(tokens.iter().collect::<HashSet<_>>().len(), tokens.len());
}

/// A grant that expired is replaced by one with a greater token; the old holder can neither
/// renew nor release.
pub async fn tokens_increase_across_expiry(cx: &Ctx) {
    let (name, old, new) = super::expired_then_taken_over(cx, "expiry").await;
    assert!(
        new.token() > old.token(),
        "{} must exceed {}",
        new.token(),
        old.token()
    );
    super::assert_kind(
        cx.renew(&old, cx.long_ttl()).await,
        fencelock_core::ErrorKind::LeaseLost,
        "old renew",
    );
    super::assert_kind(
        cx.release_answer(&old).await,
        fencelock_core::ErrorKind::LeaseLost,
        "old release",
    );
    assert_eq!(cx.inspect(&name).await.map(|i| i.token), Some(new.token()));
    cx.release(&new).await;
}
