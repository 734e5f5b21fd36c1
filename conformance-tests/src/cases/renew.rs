//! Renewal: extends only the exact grant, never resurrects.

use std::time::Duration;

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
            .renew(&lease, ttl)
            .await
            .unwrap_or_else(|e| panic!("renew before expiry: {e}"));
        assert_eq!(lease.token(), first, "renew keeps the token");
    }
    let other = cx.try_acquire(&name, ttl).await;
    assert!(
        other.is_none(),
        "still held by {first}, yet granted: {other:?}"
    );
    assert_eq!(cx.inspect(&name).await.map(|i| i.token), Some(first));
    cx.release(&lease).await;
}

/// After expiry, renew is `LeaseLost` and does not bring the grant back.
pub async fn renew_after_expiry_is_lost(cx: &Ctx) {
    let name = cx.name("late-renew");
    let lease = cx.grant(&name, cx.short_ttl()).await;
    tokio::time::sleep(cx.past_short_ttl()).await;
    assert_kind(
        cx.renew(&lease, cx.long_ttl()).await,
        ErrorKind::LeaseLost,
        "late renew",
    );
    assert_eq!(cx.inspect(&name).await, None, "not resurrected");
    // Free.
    let next = cx.grant(&name, cx.long_ttl()).await;
    assert!(
        next.token() > lease.token(),
        "{} after {}",
        next.token(),
        lease.token()
    );
    cx.release(&next).await;
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
            cx.renew(forged, ttl).await,
            ErrorKind::LeaseLost,
            "forged renew",
        );
        assert_kind(
            cx.release_answer(forged).await,
            ErrorKind::LeaseLost,
            "forged release",
        );
    }
    let lease = cx
        .renew(&lease, ttl)
        .await
        .unwrap_or_else(|e| panic!("the real holder still renews: {e}"));
    assert_eq!(
        cx.inspect(&name).await.map(|i| i.token),
        Some(lease.token())
    );
    cx.release(&lease).await;
}

/// `renew_many` renews exactly the held leases of a batch and answers `LeaseLost` for each other
/// one, in order; the same lease twice is renewed twice; an empty batch is an empty answer; an
/// invalid TTL is `InvalidInput` for every lease.
pub async fn renew_many_answers_each_lease(cx: &Ctx) {
    let (taken, expired, newer) = super::expired_then_taken_over(cx, "many-expired").await;
    let ttl = cx.short_ttl();
    let mut a = cx.grant(&cx.name("many-a"), ttl).await;
    let mut b = cx.grant(&cx.name("many-b"), ttl).await;
    let released = cx.grant(&cx.name("many-released"), cx.long_ttl()).await;
    cx.release(&released).await;
    let forged = Lease::granted(
        a.name().clone(),
        fencelock_core::FencingToken::new(a.token().get() + 1),
        a.holder(),
        ttl,
        Instant::now(),
    );
    let (token_a, token_b) = (a.token(), b.token());
    let started = Instant::now();
    // Renewed as a batch, `a` and `b` outlive their first TTL several times over.
    while started.elapsed() < cx.past_short_ttl() {
        tokio::time::sleep(ttl / 4).await;
        let batch = [
            a.clone(),
            expired.clone(),
            released.clone(),
            forged.clone(),
            b.clone(),
            a.clone(),
        ];
        let mut answers = cx.renew_many(&batch, ttl).await.into_iter();
        assert_eq!(answers.len(), batch.len(), "one answer per lease");
        a = answers.next().unwrap().expect("held lease a renews");
        for what in ["expired", "released", "forged"] {
            assert_kind(answers.next().unwrap(), ErrorKind::LeaseLost, what);
        }
        b = answers.next().unwrap().expect("held lease b renews");
        let again = answers
            .next()
            .unwrap()
            .expect("a, listed twice, renews twice");
        assert_eq!(
            (a.token(), b.token(), again.token()),
            (token_a, token_b, token_a)
        );
        assert!(a.deadline() > started + ttl / 4, "the deadline moved on");
    }
    for lease in [&a, &b] {
        let info = cx.inspect(lease.name()).await;
        assert_eq!(info.map(|i| i.token), Some(lease.token()), "still held");
    }
    let holder = cx.inspect(&taken).await;
    assert_eq!(
        holder.map(|i| i.token),
        Some(newer.token()),
        "newer holder kept"
    );
    assert!(
        cx.store().renew_many(&[], ttl).await.is_empty(),
        "empty batch"
    );
    for answer in cx
        .store()
        .renew_many(&[a.clone(), b.clone()], Duration::ZERO)
        .await
    {
        assert_kind(answer, ErrorKind::InvalidInput, "zero TTL");
    }
    for lease in [&a, &b, &newer] {
        cx.release(lease).await;
    }
}
