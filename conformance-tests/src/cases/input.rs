//! Bad and hostile input: typed errors, nothing sent, names kept apart.

use std::time::Duration;

use fencelock_core::{AcquireOptions, ErrorKind, LockName};

use super::assert_kind;
use crate::Ctx;

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
        assert_kind(
            cx.store().try_acquire(&name, ttl).await,
            ErrorKind::InvalidInput,
            "acquire ttl",
        );
    }
    assert_eq!(cx.inspect(&name).await, None, "nothing granted");
    let lease = cx.grant(&name, cx.long_ttl()).await;
    for ttl in bad {
        assert_kind(
            cx.store().renew(&lease, ttl).await,
            ErrorKind::InvalidInput,
            "renew ttl",
        );
    }
    // A rejected renew changes nothing.
    assert_eq!(
        cx.inspect(&name).await.map(|i| i.token),
        Some(lease.token())
    );
    let err = cx
        .locker()
        .acquire(&name, AcquireOptions::new().with_ttl(Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    cx.release(&lease).await;
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
        assert_kind(LockName::new(bad), ErrorKind::InvalidInput, "LockName::new");
        let err = cx
            .locker()
            .acquire(bad, AcquireOptions::new().with_no_wait())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
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
    names.push(LockName::new(longest).unwrap());
    assert!(names.last().unwrap().as_str().len() <= LockName::MAX_LEN);
    let mut leases = Vec::new();
    for name in &names {
        let lease = cx
            .try_acquire(name, cx.long_ttl())
            .await
            .unwrap_or_else(|| panic!("{name:?} must be a lock of its own"));
        assert_eq!(lease.name(), name, "name round-trips");
        leases.push(lease);
    }
    for (name, lease) in names.iter().zip(&leases) {
        let info = cx.inspect(name).await.expect("held");
        assert_eq!(info.token, lease.token(), "{name:?} sees its own holder");
        let other = cx.try_acquire(name, cx.long_ttl()).await;
        assert!(other.is_none(), "{name:?} granted twice: {other:?}");
    }
    for lease in &leases {
        cx.release(lease).await;
    }
    for name in &names {
        assert_eq!(cx.inspect(name).await, None, "{name:?} released");
    }
}
