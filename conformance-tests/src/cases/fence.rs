//! The fence tier: one case per `# Behavior` bullet of `Fence`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fencelock_core::{Error, ErrorKind, Fence, FencedValue, FencingToken};
use rand::Rng;

use crate::FenceCtx;

fn t(n: u64) -> FencingToken {
    FencingToken::new(n)
}

/// `write` that must be admitted.
async fn admitted(fence: &Arc<dyn Fence>, key: &str, token: u64, value: &[u8]) {
    if let Err(e) = fence.write(key, t(token), value).await {
        panic!(
            "{} fence: write of {key:?} with token {token} must be admitted: {e}",
            fence.backend()
        );
    }
}

/// `read` that must answer.
async fn read(fence: &Arc<dyn Fence>, key: &str) -> Option<FencedValue> {
    match fence.read(key).await {
        Ok(value) => value,
        Err(e) => panic!("{} fence: read of {key:?} failed: {e}", fence.backend()),
    }
}

/// Asserts `result` is `StaleToken` naming `presented` and `high_water`.
#[track_caller]
fn assert_stale(result: Result<(), Error>, presented: u64, high_water: u64, what: &str) {
    match result {
        Err(Error::StaleToken {
            presented: p,
            high_water: h,
            ..
        }) => assert_eq!(
            (p, h),
            (t(presented), t(high_water)),
            "{what}: StaleToken must name the presented and the accepted token"
        ),
        Err(e) => panic!("{what}: expected StaleToken({presented} < {high_water}), got {e}"),
        Ok(()) => panic!(
            "{what}: a write with token {presented} was ADMITTED below the accepted token {high_water}"
        ),
    }
}

/// A second write with the same token is admitted and replaces the value.
pub async fn fence_equal_token_admitted(cx: &FenceCtx) {
    let fence = cx.fence();
    let key = cx.key("equal");
    admitted(fence, &key, 5, b"first").await;
    admitted(fence, &key, 5, b"second").await;
    assert_eq!(
        read(fence, &key).await,
        Some(FencedValue::new(b"second".to_vec(), t(5))),
        "the same token writes again"
    );
}

/// A lower token is `StaleToken` naming both tokens; neither the value nor the mark changes.
pub async fn fence_lower_token_rejected(cx: &FenceCtx) {
    let fence = cx.fence();
    let key = cx.key("lower");
    admitted(fence, &key, 7, b"kept").await;
    assert_stale(
        fence.write(&key, t(6), b"stale").await,
        6,
        7,
        "token 6 after 7",
    );
    assert_stale(fence.write(&key, t(1), b"").await, 1, 7, "token 1 after 7");
    assert_eq!(
        read(fence, &key).await,
        Some(FencedValue::new(b"kept".to_vec(), t(7))),
        "a rejected write changes nothing"
    );
}

/// A higher token is admitted and becomes the mark, so the previous token is now stale.
pub async fn fence_higher_token_raises_mark(cx: &FenceCtx) {
    let fence = cx.fence();
    let key = cx.key("higher");
    admitted(fence, &key, 3, b"old").await;
    admitted(fence, &key, 9, b"new").await;
    assert_eq!(
        read(fence, &key).await,
        Some(FencedValue::new(b"new".to_vec(), t(9)))
    );
    assert_stale(
        fence.write(&key, t(3), b"late").await,
        3,
        9,
        "the old token",
    );
    assert_stale(
        fence.write(&key, t(8), b"late").await,
        8,
        9,
        "a token between",
    );
    // Keys are independent.
    let other = cx.key("higher-other");
    admitted(fence, &other, 1, b"own").await;
    assert_eq!(
        read(fence, &other).await,
        Some(FencedValue::new(b"own".to_vec(), t(1)))
    );
}

/// Of concurrent writers with interleaved tokens, no write is admitted with a token below one
/// already admitted, and the value left is the one the mark's write wrote.
pub async fn fence_concurrent_writers_never_regress(cx: &FenceCtx) {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 25;
    let fence = Arc::clone(cx.fence());
    let key = cx.key("concurrent");
    let next = Arc::new(AtomicU64::new(1));
    // The highest token whose admitted write has returned: a later write below it must fail.
    let completed = Arc::new(AtomicU64::new(0));
    let tasks = (0..WRITERS).map(|_| {
        let (fence, key, next, completed) = (
            Arc::clone(&fence),
            key.clone(),
            Arc::clone(&next),
            Arc::clone(&completed),
        );
        tokio::spawn(async move {
            let (mut admitted, mut stale, mut unknown) = (0u64, 0u64, 0u64);
            for _ in 0..WRITES {
                let token = next.fetch_add(1, Ordering::SeqCst);
                // Interleave: a writer may hold its token a while before using it.
                let pause = rand::rng().random_range(0..3);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let floor = completed.load(Ordering::SeqCst);
                match fence.write(&key, t(token), &token.to_be_bytes()).await {
                    Ok(()) => {
                        assert!(
                            token >= floor,
                            "token {token} was admitted after token {floor} had been admitted"
                        );
                        completed.fetch_max(token, Ordering::SeqCst);
                        admitted += 1;
                    }
                    Err(Error::StaleToken { .. }) => stale += 1,
                    // Under load a write may time out: its outcome is unknown, so it proves
                    // nothing either way, and the final check allows it to have landed.
                    Err(e) if e.is_transient() => unknown += 1,
                    Err(e) => panic!("concurrent write with token {token}: {e}"),
                }
            }
            (admitted, stale, unknown)
        })
    });
    let mut totals = (0, 0, 0);
    for task in futures::future::join_all(tasks).await {
        let (a, s, u) = task.expect("writer task");
        totals = (totals.0 + a, totals.1 + s, totals.2 + u);
    }
    let (admitted, stale, unknown) = totals;
    // How many writes are admitted depends on how the writers interleave (on a loaded machine
    // most hold their token long enough to be overtaken); what the case needs is that most
    // answers were definite, and that admissions happened at all, from several writers' turns.
    let total = WRITERS * WRITES;
    assert!(
        admitted + stale >= total * 3 / 4 && admitted >= WRITERS,
        "too few definite answers to prove anything: {admitted} admitted, {stale} stale, {unknown} unknown of {total}"
    );
    assert!(stale > 0, "interleaved tokens must produce stale writes");
    let last = read(&fence, &key).await.expect("written");
    assert!(
        last.token.get() >= completed.load(Ordering::SeqCst),
        "the mark {} fell below an admitted token",
        last.token
    );
    assert_eq!(
        last.value,
        last.token.get().to_be_bytes().to_vec(),
        "the value left must be the one written with the mark's token ({})",
        last.token
    );
}

/// After a rejected write, the read returns the value and token of the last admitted one; a
/// key never written is `None`.
pub async fn fence_read_after_rejected_write_returns_accepted(cx: &FenceCtx) {
    let fence = cx.fence();
    assert_eq!(read(fence, &cx.key("never")).await, None, "never written");
    let key = cx.key("read");
    admitted(fence, &key, 11, b"accepted").await;
    assert_stale(
        fence.write(&key, t(10), b"rejected").await,
        10,
        11,
        "older token",
    );
    assert_eq!(
        read(fence, &key).await,
        Some(FencedValue::new(b"accepted".to_vec(), t(11)))
    );
}

/// Hostile keys and values round-trip exactly (a key with NUL may be `InvalidInput`), each key
/// its own.
pub async fn fence_hostile_keys_and_values(cx: &FenceCtx) {
    let fence = cx.fence();
    let suffixes = [
        "plain",
        "quote'\"`",
        "lua]]..redis.call('FLUSHALL')--",
        "sql'); DROP TABLE fence; --",
        "{tag}",
        "{}",
        "%_*?[glob]",
        "spaces and\ttabs\nnewline",
        "ünïcødé ✓ 鍵",
        "back\\slash/and/slashes",
    ];
    let mut keys: Vec<String> = suffixes.iter().map(|s| cx.key(s)).collect();
    keys.push(cx.key(&"long".repeat(250)));
    for (i, key) in keys.iter().enumerate() {
        admitted(fence, key, 1 + i as u64, key.as_bytes()).await;
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            read(fence, key).await,
            Some(FencedValue::new(key.as_bytes().to_vec(), t(1 + i as u64))),
            "key {key:?} must hold its own value"
        );
    }
    let nul = cx.key("nul\0byte");
    match fence.write(&nul, t(1), b"v").await {
        Ok(()) => assert_eq!(
            read(fence, &nul).await,
            Some(FencedValue::new(b"v".to_vec(), t(1))),
            "a key with NUL that is admitted must round-trip"
        ),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "NUL key: {e}"),
    }
    let key = cx.key("values");
    let every_byte: Vec<u8> = (0..=255).collect();
    let big: Vec<u8> = (0..1 << 20).map(|_| rand::random::<u8>()).collect();
    for (token, value) in [(1, Vec::new()), (2, every_byte), (3, big)] {
        admitted(fence, &key, token, &value).await;
        let back = read(fence, &key).await.expect("written");
        assert_eq!(back.token, t(token));
        assert!(
            back.value == value,
            "a {}-byte value must round-trip exactly (got {} bytes)",
            value.len(),
            back.value.len()
        );
    }
}

/// With the store down, a write is `Unavailable` or `OutcomeUnknown`, never `Ok`.
pub async fn fence_dead_store_never_accepted(cx: &FenceCtx) {
    let Some(dead) = cx.dead() else {
        panic!(
            "this fixture has no dead store (FenceFixture::with_dead); an in-process fence uses fence_suite!(fixture, in_process)"
        );
    };
    let key = cx.key("dead");
    for token in [1, 2, u64::from(u32::MAX)] {
        match dead.write(&key, t(token), b"v").await {
            Ok(()) => panic!(
                "{} fence: a write to a dead store was ACCEPTED",
                dead.backend()
            ),
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::OutcomeUnknown),
                "a dead store must be Unavailable or OutcomeUnknown, got {:?}: {e}",
                e.kind()
            ),
        }
    }
    match dead.read(&key).await {
        Ok(v) => panic!("a read from a dead store answered {v:?}"),
        Err(e) => assert!(e.is_transient(), "read from a dead store: {e}"),
    }
}
