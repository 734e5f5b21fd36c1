//! Release, inspect and force-release.

use fencelock_core::ErrorKind;

use super::assert_kind;
use crate::Ctx;
use crate::settle::ForceReleased;

/// Releasing an expired grant that was taken over is `LeaseLost` and leaves the newer holder.
pub async fn stale_release_never_frees_newer_holder(cx: &Ctx) {
    let (name, old, new) = super::expired_then_taken_over(cx, "stale-release").await;
    assert_kind(
        cx.release_answer(&old).await,
        ErrorKind::LeaseLost,
        "stale release",
    );
    let info = cx.inspect(&name).await.expect("newer holder untouched");
    assert_eq!(info.token, new.token());
    let other = cx.try_acquire(&name, cx.long_ttl()).await;
    assert!(
        other.is_none(),
        "granted while {} holds: {other:?}",
        new.token()
    );
    cx.release(&new).await;
}

/// Releasing twice is reported the second time.
pub async fn double_release_is_reported(cx: &Ctx) {
    let name = cx.name("double");
    let lease = cx.grant(&name, cx.long_ttl()).await;
    cx.release(&lease).await;
    assert_kind(
        cx.release_answer(&lease).await,
        ErrorKind::LeaseLost,
        "second release",
    );
    assert_eq!(cx.inspect(&name).await, None);
}

/// Inspect shows the token and the server-judged time left; nothing once released.
pub async fn inspect_reports_holder_and_remaining(cx: &Ctx) {
    let name = cx.name("inspect");
    assert_eq!(cx.inspect(&name).await, None, "never held");
    let ttl = cx.long_ttl();
    let lease = cx.grant(&name, ttl).await;
    let info = cx.inspect(&name).await.expect("held");
    assert_eq!(info.token, lease.token());
    if let Some(holder) = info.holder {
        assert_eq!(holder, lease.holder());
    }
    assert!(
        info.remaining <= lease.ttl() && info.remaining > lease.ttl() / 2,
        "remaining {:?} of {:?}",
        info.remaining,
        lease.ttl()
    );
    cx.release(&lease).await;
    assert_eq!(cx.inspect(&name).await, None, "released");
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
        "nothing to break, yet: {nothing:?}"
    );
    for _ in 0..BREAKS {
        let lease = cx.grant(&name, cx.long_ttl()).await;
        let broken = cx.force_release(&name).await;
        assert!(
            broken.broke(lease.token()),
            "broke {broken:?}, held by {}",
            lease.token()
        );
        assert_kind(
            cx.renew(&lease, cx.long_ttl()).await,
            ErrorKind::LeaseLost,
            "broken renew",
        );
        // Free after break.
        let next = cx.grant(&name, cx.long_ttl()).await;
        assert!(
            next.token() > lease.token(),
            "{} after {}",
            next.token(),
            lease.token()
        );
        cx.release(&next).await;
        if broken == ForceReleased::Answered(Some(lease.token())) {
            return;
        }
    }
    panic!("each of {BREAKS} breaks had an unknown outcome: none reported its token");
}
