//! Holder-side regression detection, under paused tokio time: a token below one this client
//! already saw is an error and its grant is not used; the memory of seen tokens stays bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::Ordering;

use fencelock_core::{ErrorKind, FencingToken, LockName};
use support::{opts, setup};

#[tokio::test(start_paused = true)]
async fn token_regression_is_an_error_and_the_grant_is_not_used() {
    let (store, locker) = setup();
    store.regress.store(true, Ordering::SeqCst);
    let first = locker.acquire("job", opts()).await.unwrap();
    assert_eq!(first.token(), FencingToken::new(999));
    first.release().await.unwrap();
    let err = locker.acquire("job", opts()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TokenRegression, "{err}");
    assert!(
        err.to_string()
            .contains("token 998 after this client already saw token 999"),
        "{err}"
    );
    assert_eq!(
        locker.last_token(&LockName::new("job").unwrap()),
        Some(FencingToken::new(999))
    );
}

#[tokio::test(start_paused = true)]
async fn the_token_memory_keeps_the_latest_names_and_stays_bounded() {
    let (_store, locker) = setup();
    let locker = locker.with_token_memory(4);
    for i in 0..10 {
        let guard = locker.acquire(format!("job-{i}"), opts()).await.unwrap();
        guard.release().await.unwrap();
    }
    let name = |i: usize| LockName::new(format!("job-{i}")).unwrap();
    assert_eq!(
        locker.last_token(&name(0)),
        None,
        "the oldest name is forgotten"
    );
    for i in 8..10 {
        assert!(
            locker.last_token(&name(i)).is_some(),
            "job-{i} is remembered"
        );
    }
}
