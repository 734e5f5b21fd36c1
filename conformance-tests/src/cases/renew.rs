//! Renewal: extends only the exact grant, never resurrects.

use fencelock_core::{ErrorKind, HolderId, Lease};
use tokio::time::Instant;

use super::assert_kind;
use crate::Ctx;

/// Renewing before expiry keeps the grant past its original TTL.
pub async fn renew_extends(cx: &Ctx) {
    let name = cx.name("renew");
    let ttl = cx.short_ttl();
    let mut lease = cx.grant(&name, ttl).await;
    let first = lease.token();
    let started = Instant::now();
    while started.elapsed() < cx.past_short_ttl() {
        tokio::time::sleep(ttl / 4).await;
        lease = cx
            .store()
            .renew(&lease, ttl)
            .await
            .expect("renew before expiry");
        assert_eq!(lease.token(), first, "renew keeps the token");
    }
    assert!(
        cx.store().try_acquire(&name, ttl).await.unwrap().is_none(),
        "still held"
    );
    assert_eq!(
        cx.store().inspect(&name).await.unwrap().unwrap().token,
        first
    );
    cx.store().release(&lease).await.unwrap();
}

/// After expiry, renew is `LeaseLost` and does not bring the grant back.
pub async fn renew_after_expiry_is_lost(cx: &Ctx) {
    let name = cx.name("late-renew");
    let lease = cx.grant(&name, cx.short_ttl()).await;
    tokio::time::sleep(cx.past_short_ttl()).await;
    assert_kind(
        cx.store().renew(&lease, cx.long_ttl()).await,
        ErrorKind::LeaseLost,
        "late renew",
    );
    assert!(
        cx.store().inspect(&name).await.unwrap().is_none(),
        "not resurrected"
    );
    // Free.
    let next = cx.grant(&name, cx.long_ttl()).await;
    assert!(next.token() > lease.token());
    cx.store().release(&next).await.unwrap();
}

/// A lease whose holder id or token differs from the current grant cannot renew or release it.
pub async fn renew_with_forged_holder_is_lost(cx: &Ctx) {
    let name = cx.name("forged");
    let ttl = cx.long_ttl();
    let lease = cx.grant(&name, ttl).await;
    let now = Instant::now();
    let other_holder = Lease::granted(name.clone(), lease.token(), HolderId::random(), ttl, now);
    let other_token = Lease::granted(
        name.clone(),
        fencelock_core::FencingToken::new(lease.token().get() + 1),
        lease.holder(),
        ttl,
        now,
    );
    for forged in [&other_holder, &other_token] {
        assert_kind(
            cx.store().renew(forged, ttl).await,
            ErrorKind::LeaseLost,
            "forged renew",
        );
        assert_kind(
            cx.store().release(forged).await,
            ErrorKind::LeaseLost,
            "forged release",
        );
    }
    let lease = cx
        .store()
        .renew(&lease, ttl)
        .await
        .expect("the real holder still renews");
    assert_eq!(
        cx.store().inspect(&name).await.unwrap().unwrap().token,
        lease.token()
    );
    cx.store().release(&lease).await.unwrap();
}
