//! Release, inspect and force-release.

use fencelock_core::ErrorKind;

use super::{assert_kind, assert_rises, expect_holder, expect_refused, release};
use crate::Ctx;
use crate::settle::ForceReleased;

/// Releasing an expired grant that was taken over is `LeaseLost` and leaves the newer holder.
pub async fn stale_release_never_frees_newer_holder(cx: &Ctx) {
    let (name, old, new) = super::expired_then_taken_over(cx, "stale-release").await;
    assert_kind(
        cx.release_answer(&old).await,
        ErrorKind::LeaseLost,
        &format!(
            "release of the expired lease (token {}) after token {} took over",
            old.token(),
            new.token()
        ),
    );
    let when = format!("after the stale release of token {}", old.token());
    expect_holder(cx, &name, Some(new.token()), &when).await;
    expect_refused(cx, &name, new.token(), &when).await;
    release(cx, &new, "of the newer holder").await;
}

/// Releasing twice is reported the second time.
pub async fn double_release_is_reported(cx: &Ctx) {
    let name = cx.name("double");
    let lease = cx.grant(&name, cx.long_ttl()).await;
    release(cx, &lease, "(the first time)").await;
    assert_kind(
        cx.release_answer(&lease).await,
        ErrorKind::LeaseLost,
        &format!("second release of token {}", lease.token()),
    );
    expect_holder(cx, &name, None, "after two releases").await;
}

/// Inspect shows the token and the server-judged time left; nothing once released.
pub async fn inspect_reports_holder_and_remaining(cx: &Ctx) {
    let name = cx.name("inspect");
    expect_holder(cx, &name, None, "of a name never held").await;
    let ttl = cx.long_ttl();
    let lease = cx.grant(&name, ttl).await;
    let Some(info) = cx
        .inspect_as(&name, &format!("inspect `{name}` while held"))
        .await
    else {
        panic!(
            "inspect `{name}` right after try_acquire granted token {}: shows nobody",
            lease.token()
        );
    };
    assert_eq!(
        info.token,
        lease.token(),
        "inspect `{name}`: the holder's token (left: inspect, right: the grant)"
    );
    if let Some(holder) = info.holder {
        assert_eq!(
            holder,
            lease.holder(),
            "inspect `{name}`: the holder id (left: inspect, right: the grant)"
        );
    }
    assert!(
        info.remaining <= lease.ttl() && info.remaining > lease.ttl() / 2,
        "inspect `{name}`: {:?} remaining of a {:?} grant just made (must be at most the TTL \
         and more than half of it)",
        info.remaining,
        lease.ttl()
    );
    release(cx, &lease, "of the inspected grant").await;
    expect_holder(cx, &name, None, "after release").await;
}

/// Breaking a grant reports its token; the broken holder is lost; the next token is greater.
///
/// A break whose outcome was unknown, answered again with "nothing held", cannot show which
/// token it broke: then the case breaks a new grant, up to `BREAKS` times.
pub async fn force_release_frees_and_reports_token(cx: &Ctx) {
    const BREAKS: u32 = 5;
    let name = cx.name("force");
    // `AnswerLost` too is the store's answer "nothing held", given to the next attempt.
    let nothing = cx.force_release(&name).await;
    assert!(
        matches!(
            nothing,
            ForceReleased::Answered(None) | ForceReleased::AnswerLost
        ),
        "force_release of `{name}`, never held: reports a broken token: {nothing:?}"
    );
    for attempt in 1..=BREAKS {
        let lease = cx.grant(&name, cx.long_ttl()).await;
        let broken = cx.force_release(&name).await;
        assert!(
            broken.broke(lease.token()),
            "force_release of `{name}` while held must report the holder's token {}: it \
             reported {broken:?}",
            lease.token()
        );
        assert_kind(
            cx.renew(&lease, cx.long_ttl()).await,
            ErrorKind::LeaseLost,
            &format!("renew of the broken lease (token {})", lease.token()),
        );
        // Free after break.
        let next = cx.grant(&name, cx.long_ttl()).await;
        assert_rises(
            next.token(),
            lease.token(),
            "try_acquire after force_release",
        );
        release(
            cx,
            &next,
            &format!("of the grant after the break (break {attempt} of {BREAKS})"),
        )
        .await;
        if broken == ForceReleased::Answered(Some(lease.token())) {
            return;
        }
    }
    panic!(
        "force_release of `{name}`: each of {BREAKS} breaks had an unknown outcome: none \
         reported its token"
    );
}
