//! Renewal: extends only the exact grant, never resurrects.

use std::time::Duration;

use fencelock_core::backend::granted_lease;
use fencelock_core::{ErrorKind, HolderId};
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
    let mut renewals = 0;
    while started.elapsed() < cx.past_short_ttl() {
        tokio::time::sleep(ttl / 4).await;
        renewals += 1;
        lease = cx.renew(&lease, ttl).await.unwrap_or_else(|e| {
            panic!(
                "renew {renewals} of `{name}` (token {first}, TTL {ttl:?}) {:?} after the \
                 grant, each a quarter TTL after the last: {e}",
                started.elapsed()
            )
        });
        assert_eq!(
            lease.token(),
            first,
            "renew {renewals} of `{name}` changed the token (left: renewed, right: granted)"
        );
    }
    let when = format!("after {renewals} renewals over {:?}", started.elapsed());
    super::expect_refused(cx, &name, first, &when).await;
    super::expect_holder(cx, &name, Some(first), &when).await;
    super::release(cx, &lease, "of the renewed lease").await;
}

/// After expiry, renew is `LeaseLost` and does not bring the grant back.
pub async fn renew_after_expiry_is_lost(cx: &Ctx) {
    let name = cx.name("late-renew");
    let lease = cx.grant(&name, cx.short_ttl()).await;
    tokio::time::sleep(cx.past_short_ttl()).await;
    let old = lease.token();
    assert_kind(
        cx.renew(&lease, cx.long_ttl()).await,
        ErrorKind::LeaseLost,
        &format!(
            "renew of `{name}` (token {old}) {:?} after a {:?} grant",
            cx.past_short_ttl(),
            lease.ttl()
        ),
    );
    // Tell a resurrected grant (try_acquire refused) from an inspect that reports an expired
    // one (try_acquire granted while inspect shows the old token).
    let shown = super::inspect_token(cx, &name, "after the late renew").await;
    let what = format!("try_acquire on `{name}` after the late renew of token {old}");
    match cx.try_acquire_as(&name, cx.long_ttl(), &what).await {
        None => panic!(
            "try_acquire on `{name}` is refused after its grant (token {old}) expired and the \
             late renew failed (inspect shows {shown:?}): the renew brought the grant back, or \
             try_acquire ignores expiry"
        ),
        Some(next) => {
            assert!(
                shown.is_none(),
                "inspect `{name}` after expiry shows token {} as the holder, yet try_acquire \
                 then granted token {}: inspect reports an expired grant",
                shown.map_or(0, |t| t.get()),
                next.token()
            );
            super::assert_rises(next.token(), old, "try_acquire after expiry");
            super::release(cx, &next, "of the grant after expiry").await;
        }
    }
}

/// A lease whose holder id or token differs from the current grant cannot renew or release it.
pub async fn renew_with_forged_holder_is_lost(cx: &Ctx) {
    let name = cx.name("forged");
    let ttl = cx.long_ttl();
    let lease = cx.grant(&name, ttl).await;
    let now = Instant::now();
    let other_holder = granted_lease(name.clone(), lease.token(), HolderId::random(), ttl, now);
    let other_token = granted_lease(
        name.clone(),
        fencelock_core::FencingToken::new(lease.token().get() + 1),
        lease.holder(),
        ttl,
        now,
    );
    for (forged, how) in [
        (&other_holder, "another holder id"),
        (&other_token, "the next token"),
    ] {
        let what = |op| {
            format!(
                "{op} of a lease forged with {how} (token {}, holder {}) while token {} \
                 (holder {}) holds",
                forged.token(),
                forged.holder(),
                lease.token(),
                lease.holder()
            )
        };
        assert_kind(
            cx.renew(forged, ttl).await,
            ErrorKind::LeaseLost,
            &what("renew"),
        );
        assert_kind(
            cx.release_answer(forged).await,
            ErrorKind::LeaseLost,
            &what("release"),
        );
    }
    let lease = cx.renew(&lease, ttl).await.unwrap_or_else(|e| {
        panic!(
            "renew of the real holder's lease (token {}) after the forged attempts: {e}",
            lease.token()
        )
    });
    super::expect_holder(cx, &name, Some(lease.token()), "after the forged attempts").await;
    super::release(cx, &lease, "of the real holder").await;
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
    super::release(cx, &released, "before renew_many is asked to renew it").await;
    let forged = granted_lease(
        a.name().clone(),
        fencelock_core::FencingToken::new(a.token().get() + 1),
        a.holder(),
        ttl,
        Instant::now(),
    );
    let (token_a, token_b) = (a.token(), b.token());
    let started = Instant::now();
    let mut round = 0;
    // Renewed as a batch, `a` and `b` outlive their first TTL several times over.
    while started.elapsed() < cx.past_short_ttl() {
        tokio::time::sleep(ttl / 4).await;
        round += 1;
        let batch = [
            a.clone(),
            expired.clone(),
            released.clone(),
            forged.clone(),
            b.clone(),
            a.clone(),
        ];
        let answers = cx.renew_many(&batch, ttl).await;
        assert_eq!(
            answers.len(),
            batch.len(),
            "renew_many (round {round}): one answer per lease; answers {answers:?}"
        );
        let mut answers = answers.into_iter();
        let mut next = |what: &str| {
            answers
                .next()
                .unwrap_or_else(|| panic!("renew_many (round {round}): no answer for {what}"))
        };
        a = next("lease a")
            .unwrap_or_else(|e| panic!("renew_many (round {round}): held lease a: {e}"));
        for (what, token) in [
            ("expired", expired.token()),
            ("released", released.token()),
            ("forged", forged.token()),
        ] {
            assert_kind(
                next(what),
                ErrorKind::LeaseLost,
                &format!("renew_many (round {round}): the {what} lease (token {token})"),
            );
        }
        b = next("lease b")
            .unwrap_or_else(|e| panic!("renew_many (round {round}): held lease b: {e}"));
        let again = next("a's second entry")
            .unwrap_or_else(|e| panic!("renew_many (round {round}): a, listed twice: {e}"));
        assert_eq!(
            (a.token(), b.token(), again.token()),
            (token_a, token_b, token_a),
            "renew_many (round {round}) changed tokens (left: renewed a, b, a again; right: \
             granted)"
        );
        assert!(
            a.deadline() > started + ttl / 4,
            "renew_many (round {round}): lease a's deadline did not move on ({:?} after the \
             first round started)",
            a.deadline().saturating_duration_since(started)
        );
    }
    for lease in [&a, &b] {
        let when = format!("after {round} rounds of renew_many");
        super::expect_holder(cx, lease.name(), Some(lease.token()), &when).await;
    }
    super::expect_holder(
        cx,
        &taken,
        Some(newer.token()),
        "after renew_many was asked to renew the expired grant it replaced",
    )
    .await;
    let empty = cx.renew_many(&[], ttl).await;
    assert!(
        empty.is_empty(),
        "renew_many of an empty batch must answer nothing; answered {empty:?}"
    );
    for (i, answer) in cx
        .renew_many(&[a.clone(), b.clone()], Duration::ZERO)
        .await
        .into_iter()
        .enumerate()
    {
        assert_kind(
            answer,
            ErrorKind::InvalidInput,
            &format!("renew_many with a zero TTL, lease {i}"),
        );
    }
    for lease in [&a, &b, &newer] {
        super::release(cx, lease, "after renew_many").await;
    }
}
