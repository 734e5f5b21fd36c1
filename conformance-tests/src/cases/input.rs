//! Bad and hostile input: typed errors, nothing sent, names kept apart.

use std::time::Duration;

use fencelock_core::{AcquireOptions, ErrorKind, LockName};

use super::{assert_kind, expect_holder, expect_refused, release};
use crate::{Ctx, settle};

/// Zero, sub-millisecond and above-maximum TTLs are `InvalidInput`, and nothing is granted.
pub async fn ttl_validation(cx: &Ctx) {
    let name = cx.name("ttl");
    let max = cx.store().ttl_limits().max();
    let bad = [
        Duration::ZERO,
        Duration::from_micros(999),
        max + Duration::from_millis(1),
        Duration::MAX,
    ];
    for ttl in bad {
        let what = format!("try_acquire with TTL {ttl:?} (the store's maximum is {max:?})");
        assert_kind(
            settle::settle(&what, || cx.store().try_acquire(&name, ttl)).await,
            ErrorKind::InvalidInput,
            &what,
        );
    }
    expect_holder(cx, &name, None, "after try_acquire with invalid TTLs").await;
    let lease = cx.grant(&name, cx.long_ttl()).await;
    for ttl in bad {
        assert_kind(
            cx.renew(&lease, ttl).await,
            ErrorKind::InvalidInput,
            &format!("renew with TTL {ttl:?} (the store's maximum is {max:?})"),
        );
    }
    // A rejected renew changes nothing.
    expect_holder(
        cx,
        &name,
        Some(lease.token()),
        "after renew with invalid TTLs",
    )
    .await;
    match cx
        .locker()
        .acquire(&name, AcquireOptions::new().with_ttl(Duration::ZERO))
        .await
    {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::InvalidInput,
            "Locker::acquire with a zero TTL: {e}"
        ),
        Ok(guard) => panic!(
            "Locker::acquire with a zero TTL granted token {}",
            guard.token()
        ),
    }
    release(cx, &lease, "after the TTL checks").await;
}

/// Empty, oversized and control-character names are `InvalidInput` before any store call.
pub async fn name_validation(cx: &Ctx) {
    let too_long = format!("{}{}", cx.prefix(), "x".repeat(LockName::MAX_LEN));
    for bad in [
        "",
        "nul\0byte",
        "new\nline",
        "\u{1b}[31m",
        too_long.as_str(),
    ] {
        assert_kind(
            LockName::new(bad),
            ErrorKind::InvalidInput,
            &format!("LockName::new({bad:?})"),
        );
        match cx
            .locker()
            .acquire(bad, AcquireOptions::new().with_no_wait())
            .await
        {
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::InvalidInput,
                "Locker::acquire({bad:?}): {e}"
            ),
            Ok(guard) => panic!(
                "Locker::acquire({bad:?}) granted token {} to an invalid name",
                guard.token()
            ),
        }
    }
}

/// Names that break quoting, patterns, Lua or SQL round-trip and stay distinct locks.
pub async fn hostile_names_round_trip_and_stay_isolated(cx: &Ctx) {
    let longest = format!(
        "{}{}",
        cx.prefix(),
        "é".repeat((LockName::MAX_LEN - cx.prefix().len()) / 2)
    );
    let suffixes = [
        "a",
        "ab",
        "a/b",
        "a/",
        "A",
        "a*",
        "a?",
        "[a]",
        "{a}",
        "{",
        "}",
        "'; DROP TABLE fencelock_leases; --",
        "\" OR 1=1 --",
        "]] .. redis.call('FLUSHALL') .. [[",
        "%s%n%d",
        "\\",
        "$1",
        " spaced ",
        "ünïcødé 🔒",
        "a:b",
    ];
    let mut names: Vec<LockName> = suffixes.iter().map(|s| cx.name(s)).collect();
    let longest = LockName::new(longest).expect("the longest valid name");
    assert!(longest.as_str().len() <= LockName::MAX_LEN);
    names.push(longest);
    let mut leases = Vec::new();
    for name in &names {
        let lease = cx
            .try_acquire_as(name, cx.long_ttl(), &format!("try_acquire on {name:?}"))
            .await
            .unwrap_or_else(|| {
                let taken: Vec<String> = leases
                    .iter()
                    .map(|l: &fencelock_core::Lease| format!("{:?}", l.name()))
                    .collect();
                panic!(
                    "try_acquire on {name:?} is refused: it must be a lock of its own, apart \
                     from those taken before it: {taken:?}"
                )
            });
        assert_eq!(
            lease.name(),
            name,
            "try_acquire on {name:?}: the lease names another lock"
        );
        leases.push(lease);
    }
    for (name, lease) in names.iter().zip(&leases) {
        let when = format!("after all {} names were taken", names.len());
        expect_holder(cx, name, Some(lease.token()), &when).await;
        expect_refused(cx, name, lease.token(), &when).await;
    }
    for lease in &leases {
        release(cx, lease, "of a hostile name").await;
    }
    for name in &names {
        expect_holder(cx, name, None, "after release").await;
    }
}
