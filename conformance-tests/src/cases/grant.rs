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
    let info = cx
        .store()
        .inspect(&name)
        .await
        .unwrap()
        .expect("inspect shows the holder");
    assert_eq!(info.token, lease.token());
    cx.store().release(&lease).await.unwrap();
}

/// While a grant holds, every other attempt is `Ok(None)`.
pub async fn acquire_is_exclusive(cx: &Ctx) {
    let name = cx.name("exclusive");
    let a = cx.grant(&name, cx.long_ttl()).await;
    for _ in 0..3 {
        assert!(
            cx.store()
                .try_acquire(&name, cx.long_ttl())
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(
        cx.store().inspect(&name).await.unwrap().unwrap().token,
        a.token()
    );
    cx.store().release(&a).await.unwrap();
    // Free after release.
    let b = cx.grant(&name, cx.long_ttl()).await;
    assert!(b.token() > a.token());
    cx.store().release(&b).await.unwrap();
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
        .filter_map(|r| r.expect("task").expect("no store error"))
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 16 simultaneous attempts wins"
    );
    cx.store().release(&winners[0]).await.unwrap();
}

/// Tokens strictly increase across acquire/release cycles.
pub async fn tokens_increase_across_release(cx: &Ctx) {
    let name = cx.name("cycle");
    let mut tokens = Vec::new();
    for _ in 0..5 {
        let lease = cx.grant(&name, cx.long_ttl()).await;
        tokens.push(lease.token());
        cx.store().release(&lease).await.unwrap();
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
        cx.store().renew(&old, cx.long_ttl()).await,
        fencelock_core::ErrorKind::LeaseLost,
        "old renew",
    );
    super::assert_kind(
        cx.store().release(&old).await,
        fencelock_core::ErrorKind::LeaseLost,
        "old release",
    );
    assert_eq!(
        cx.store().inspect(&name).await.unwrap().unwrap().token,
        new.token()
    );
    cx.store().release(&new).await.unwrap();
}
