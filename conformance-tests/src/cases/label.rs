//! Owner labels and listings: who holds what, for operators and tools.

use std::time::Duration;

use fencelock_core::{AcquireOptions, ErrorKind, HeldLock, ListQuery, LockName, OwnerLabel};

use super::{assert_kind, release};
use crate::Ctx;

/// Labels a store must keep byte for byte: the longest, multi-byte, and ones that break
/// separators, Lua, SQL and etcd values.
fn hostile_labels() -> Vec<OwnerLabel> {
    let longest = format!("{}é", "x".repeat(OwnerLabel::MAX_LEN - 2));
    [
        longest.as_str(),
        "web-3:4711",
        "a:b:c:",
        "'; DROP TABLE fencelock_leases; --",
        "]] .. redis.call('FLUSHALL') .. [[",
        "ünïcødé 🔒 {tag} *?[%_\\",
    ]
    .into_iter()
    .map(|l| OwnerLabel::new(l).expect("a valid label"))
    .collect()
}

/// A label is stored with the grant and comes back in the lease, `inspect` and `list`; a grant
/// without one shows none; the next holder's label replaces the last one's.
pub async fn label_round_trips(cx: &Ctx) {
    let name = cx.name("label");
    for label in hostile_labels() {
        let lease = cx.grant_labeled(&name, cx.long_ttl(), Some(&label)).await;
        assert_eq!(
            lease.label(),
            Some(&label),
            "the lease try_acquire_as granted carries its label"
        );
        let info = cx.inspect(&name).await.unwrap_or_else(|| {
            panic!("inspect `{name}` right after a grant to {label:?}: shows nobody")
        });
        assert_eq!(
            info.label.as_ref(),
            Some(&label),
            "inspect `{name}` shows the holder's label (left: inspect, right: the grant's)"
        );
        let listing = cx
            .list(&ListQuery::prefix(name.as_str()).expect("a valid prefix"))
            .await;
        if let Ok(listing) = listing {
            let shown: Vec<_> = listing.locks.iter().map(|l| l.label.as_ref()).collect();
            assert_eq!(
                shown,
                [Some(&label)],
                "list under `{name}` shows its one holder's label"
            );
        }
        release(cx, &lease, "of a labelled grant").await;
    }
    let lease = cx.grant_labeled(&name, cx.long_ttl(), None).await;
    assert_eq!(lease.label(), None, "a grant without a label carries none");
    let info = cx.inspect(&name).await;
    assert_eq!(
        info.as_ref().map(|i| i.label.as_ref()),
        Some(None),
        "inspect `{name}` after an unlabelled grant replaced a labelled one: {info:?}"
    );
    release(cx, &lease, "of an unlabelled grant").await;
}

/// Invalid labels are `InvalidInput` before any store call; a locker labels its grants with
/// the options' label, host and pid by default.
pub async fn label_validation(cx: &Ctx) {
    let too_long = "x".repeat(OwnerLabel::MAX_LEN + 1);
    for bad in [
        "",
        "nul\0byte",
        "new\nline",
        "\u{1b}[31m",
        too_long.as_str(),
    ] {
        assert_kind(
            OwnerLabel::new(bad),
            ErrorKind::InvalidInput,
            &format!("OwnerLabel::new({bad:?})"),
        );
    }
    let options = AcquireOptions::new().with_ttl(cx.long_ttl()).with_no_wait();
    let worker = OwnerLabel::new("worker 7 of `jobs`").expect("a valid label");
    for (options, expected) in [
        (options.clone(), Some(OwnerLabel::this_process())),
        (options.clone().with_label(worker.clone()), Some(worker)),
        (options.without_label(), None),
    ] {
        let name = cx.name("locker-label");
        let guard = cx.guard(&name, options).await;
        let info = cx.inspect(&name).await;
        assert_eq!(
            info.as_ref().map(|i| i.label.clone()),
            Some(expected.clone()),
            "inspect `{name}` held by a locker labelling {expected:?}: {info:?}"
        );
        cx.release_guard(guard).await;
    }
}

/// The held locks of a listing, as `(name, token, label)`.
fn shown(locks: &[HeldLock]) -> Vec<(String, u64, Option<String>)> {
    locks
        .iter()
        .map(|l| {
            (
                l.name.to_string(),
                l.token.get(),
                l.label.as_ref().map(ToString::to_string),
            )
        })
        .collect()
}

/// Lists `prefix` a page of `limit` at a time to the end; `None` when the store cannot list.
async fn list_all(cx: &Ctx, prefix: &str, limit: usize) -> Option<Vec<HeldLock>> {
    let mut query = ListQuery::prefix(prefix)
        .and_then(|q| q.with_limit(limit))
        .expect("a valid query");
    let mut all = Vec::new();
    for _ in 0..100 {
        let page = match cx.list(&query).await {
            Ok(page) => page,
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                eprintln!("skipped: {} cannot list ({e})", cx.store().backend());
                return None;
            }
            Err(e) => panic!("list under {prefix:?}: {e}"),
        };
        assert!(
            page.locks.len() <= limit,
            "list under {prefix:?} with limit {limit} answered {} locks",
            page.locks.len()
        );
        all.extend(page.locks);
        let Some(next) = page.next else {
            return Some(all);
        };
        query = query.with_after(next);
    }
    panic!("list under {prefix:?} did not end after 100 pages of {limit}");
}

/// A listing shows exactly the held locks under the prefix, with token, time left and label,
/// in name order, page after page; not released or expired ones, not other prefixes.
pub async fn list_sees_exactly_held_locks_under_prefix(cx: &Ctx) {
    let ttl = cx.long_ttl();
    let label = OwnerLabel::new("lister").expect("a valid label");
    let mut held = Vec::new();
    for suffix in ["list/c", "list/a", "list/b/deep"] {
        held.push(cx.grant_labeled(&cx.name(suffix), ttl, Some(&label)).await);
    }
    held.push(cx.grant(&cx.name("list/d"), ttl).await);
    let released = cx.grant(&cx.name("list/released"), ttl).await;
    release(cx, &released, "of a lock the listing must not show").await;
    let _expired = cx.grant(&cx.name("list/expired"), cx.short_ttl()).await;
    let _outside = [
        cx.grant(&cx.name("list"), ttl).await,
        cx.grant(&cx.name("lisT/a"), ttl).await,
        cx.grant(&cx.name("listing/a"), ttl).await,
    ];
    tokio::time::sleep(cx.past_short_ttl()).await;

    let prefix = cx.name("list/");
    let Some(listed) = list_all(cx, prefix.as_str(), 2).await else {
        return;
    };
    held.sort_by(|a, b| a.name().cmp(b.name()));
    let expected: Vec<_> = held
        .iter()
        .map(|l| {
            (
                l.name().to_string(),
                l.token().get(),
                l.label().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(
        shown(&listed),
        expected,
        "list under {prefix:?} in pages of 2 (left) shows exactly the held locks (right), in name \
         order: not the released or expired ones, not the ones outside the prefix"
    );
    for lock in &listed {
        assert!(
            lock.remaining <= ttl && lock.remaining > Duration::ZERO,
            "list shows {:?} left on `{}`, a grant of {ttl:?}",
            lock.remaining,
            lock.name
        );
    }
    let everything = list_all(cx, cx.prefix(), ListQuery::MAX_LIMIT)
        .await
        .unwrap_or_default();
    assert_eq!(
        everything.len(),
        held.len() + 3,
        "list under the case's prefix shows its {} held locks: {:?}",
        held.len() + 3,
        shown(&everything)
    );
}

/// `*`, `?`, `[`, `%`, `_`, `{` and `\` in a prefix are plain text: each lists only the name
/// that holds that very character, never the names a glob or LIKE pattern would match.
pub async fn list_prefix_is_literal(cx: &Ctx) {
    const HOSTILE: [&str; 9] = ["*", "?", "[", "]", "%", "_", "{", "}", "\\"];
    let ttl = cx.long_ttl();
    let mut names: Vec<LockName> = HOSTILE.iter().map(|c| cx.name(&format!("a{c}"))).collect();
    names.push(cx.name("ab"));
    names.push(cx.name("a[b]"));
    for name in &names {
        cx.grant(name, ttl).await;
    }
    for c in HOSTILE {
        let prefix = format!("{}a{c}", cx.prefix());
        let Some(listed) = list_all(cx, &prefix, 50).await else {
            return;
        };
        let mut expected = vec![prefix.clone()];
        if c == "[" {
            expected.push(format!("{}a[b]", cx.prefix()));
        }
        let got: Vec<String> = listed.iter().map(|l| l.name.to_string()).collect();
        assert_eq!(
            got, expected,
            "list under {prefix:?} must treat {c:?} as plain text"
        );
    }
    let all = list_all(cx, &format!("{}a", cx.prefix()), 3)
        .await
        .unwrap_or_default();
    assert_eq!(
        all.len(),
        names.len(),
        "list under the case's `a` shows all {} names: {:?}",
        names.len(),
        shown(&all)
    );
}
