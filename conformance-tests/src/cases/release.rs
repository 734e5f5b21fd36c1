//! Release, inspect and force-release.

use fencelock_core::ErrorKind;

use super::assert_kind;
use crate::Ctx;

/// Releasing an expired grant that was taken over is `LeaseLost` and leaves the newer holder.
pub async fn stale_release_never_frees_newer_holder(cx: &Ctx) {
    let (name, old, new) = super::expired_then_taken_over(cx, "stale-release").await;
    assert_kind(
        cx.store().release(&old).await,
        ErrorKind::LeaseLost,
        "stale release",
    );
    let info = cx
        .store()
        .inspect(&name)
        .await
        .unwrap()
        .expect("newer holder untouched");
    assert_eq!(info.token, new.token());
    assert!(
        cx.store()
            .try_acquire(&name, cx.long_ttl())
            .await
            .unwrap()
            .is_none()
    );
    cx.store().release(&new).await.unwrap();
}

/// Releasing twice is reported the second time.
pub async fn double_release_is_reported(cx: &Ctx) {
    let name = cx.name("double");
    let lease = cx.grant(&name, cx.long_ttl()).await;
    cx.store().release(&lease).await.unwrap();
    assert_kind(
        cx.store().release(&lease).await,
        ErrorKind::LeaseLost,
        "second release",
    );
    assert!(cx.store().inspect(&name).await.unwrap().is_none());
}

/// Inspect shows the token and the server-judged time left; nothing once released.
pub async fn inspect_reports_holder_and_remaining(cx: &Ctx) {
    let name = cx.name("inspect");
    assert!(
        cx.store().inspect(&name).await.unwrap().is_none(),
        "never held"
    );
    let ttl = cx.long_ttl();
    let lease = cx.grant(&name, ttl).await;
    let info = cx.store().inspect(&name).await.unwrap().expect("held");
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
    cx.store().release(&lease).await.unwrap();
    assert!(
        cx.store().inspect(&name).await.unwrap().is_none(),
        "released"
    );
}

/// Breaking a grant reports its token; the broken holder is lost; the next token is greater.
pub async fn force_release_frees_and_reports_token(cx: &Ctx) {
    let name = cx.name("force");
    assert_eq!(
        cx.store().force_release(&name).await.unwrap(),
        None,
        "nothing to break"
    );
    let lease = cx.grant(&name, cx.long_ttl()).await;
    assert_eq!(
        cx.store().force_release(&name).await.unwrap(),
        Some(lease.token())
    );
    assert_kind(
        cx.store().renew(&lease, cx.long_ttl()).await,
        ErrorKind::LeaseLost,
        "broken renew",
    );
    // Free after break.
    let next = cx.grant(&name, cx.long_ttl()).await;
    assert!(next.token() > lease.token());
    cx.store().release(&next).await.unwrap();
}
