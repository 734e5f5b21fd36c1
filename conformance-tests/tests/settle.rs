//! The settling helpers against a store whose faults are scripted: each resolves what an
//! attempt with an unknown outcome left behind, and none hides a definite failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use fencelock_conformance::settle::{self, ForceReleased};
use fencelock_core::{
    Error, ErrorKind, FencingToken, Lease, LeaseInfo, LeaseStore, LockName, MemoryLeaseStore,
    Operation, OwnerLabel, TtlLimits, async_trait,
};

const TTL: Duration = Duration::from_secs(60);

/// How the next call of an operation fails.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Not applied: `Unavailable`.
    Refused,
    /// Applied, then the reply is lost: `OutcomeUnknown`.
    ReplyLost,
}

/// The memory store, failing the calls its script names, in order.
#[derive(Debug, Default)]
struct Scripted {
    inner: MemoryLeaseStore,
    script: Mutex<VecDeque<(Operation, Fault)>>,
}

impl Scripted {
    fn fail(&self, op: Operation, fault: Fault) {
        self.script.lock().unwrap().push_back((op, fault));
    }

    /// Runs `call` for `op`, or fails it as the script says.
    async fn run<T>(
        &self,
        op: Operation,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let fault = {
            let mut script = self.script.lock().unwrap();
            match script.front() {
                Some((next, _)) if *next == op => script.pop_front().map(|(_, f)| f),
                _ => None,
            }
        };
        match fault {
            None => call.await,
            Some(Fault::Refused) => Err(Error::unavailable("scripted", op, "refused")),
            Some(Fault::ReplyLost) => {
                let _applied = call.await;
                Err(Error::outcome_unknown("scripted", op, "reply lost"))
            }
        }
    }

    fn script_done(&self) -> bool {
        self.script.lock().unwrap().is_empty()
    }
}

#[async_trait]
impl LeaseStore for Scripted {
    fn backend(&self) -> &'static str {
        "scripted"
    }
    fn ttl_limits(&self) -> TtlLimits {
        self.inner.ttl_limits()
    }
    async fn try_acquire_as(
        &self,
        name: &LockName,
        ttl: Duration,
        label: Option<&OwnerLabel>,
    ) -> Result<Option<Lease>, Error> {
        self.run(
            Operation::Acquire,
            self.inner.try_acquire_as(name, ttl, label),
        )
        .await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, Error> {
        self.run(Operation::Renew, self.inner.renew(lease, ttl))
            .await
    }
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        self.run(Operation::Release, self.inner.release(lease))
            .await
    }
    async fn inspect(&self, name: &LockName) -> Result<Option<LeaseInfo>, Error> {
        self.run(Operation::Inspect, self.inner.inspect(name)).await
    }
    async fn force_release(&self, name: &LockName) -> Result<Option<FencingToken>, Error> {
        self.run(Operation::ForceRelease, self.inner.force_release(name))
            .await
    }
}

fn name(what: &str) -> LockName {
    LockName::new(format!("settle/{what}")).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_grant_whose_reply_was_lost_is_broken_and_the_acquire_made_again() {
    let store = Scripted::default();
    let n = name("orphan");
    store.fail(Operation::Acquire, Fault::ReplyLost);
    store.fail(Operation::Acquire, Fault::Refused);
    let lease = settle::grant(&store, &n, TTL, None).await;
    assert!(store.script_done());
    // The orphan had token 1; the grant in hand is the one that holds.
    assert_eq!(lease.token(), FencingToken::new(2));
    let holder = store.inspect(&n).await.unwrap().unwrap();
    assert_eq!(holder.token, lease.token());
    assert_eq!(holder.holder, Some(lease.holder()));
}

#[tokio::test(start_paused = true)]
async fn a_holder_the_test_knows_is_contention_not_an_orphan() {
    let store = Scripted::default();
    let n = name("known");
    let held = settle::grant(&store, &n, TTL, None).await;
    store.fail(Operation::Acquire, Fault::ReplyLost);
    let other = settle::try_acquire(&store, &n, TTL, Some(held.token())).await;
    assert!(other.is_none(), "{other:?}");
    assert_eq!(
        store.inspect(&n).await.unwrap().map(|i| i.token),
        Some(held.token()),
        "the known holder was not broken"
    );
}

#[tokio::test(start_paused = true)]
async fn a_release_whose_reply_was_lost_counts_as_released() {
    let store = Scripted::default();
    let n = name("release");
    let lease = settle::grant(&store, &n, TTL, None).await;
    store.fail(Operation::Release, Fault::ReplyLost);
    store.fail(Operation::Inspect, Fault::Refused);
    settle::release(&store, &lease).await;
    assert!(store.script_done());
    assert_eq!(store.inspect(&n).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "lease on `settle/refused-release` lost")]
async fn a_lease_lost_behind_a_refused_release_still_fails() {
    let store = Scripted::default();
    let n = name("refused-release");
    let lease = settle::grant(&store, &n, TTL, None).await;
    store.inner.force_release(&n).await.unwrap();
    // `Unavailable` applied nothing, so the `LeaseLost` that follows is the store's verdict.
    store.fail(Operation::Release, Fault::Refused);
    settle::release(&store, &lease).await;
}

#[tokio::test(start_paused = true)]
async fn a_break_whose_reply_was_lost_is_reported_as_such() {
    let store = Scripted::default();
    let n = name("break");
    let lease = settle::grant(&store, &n, TTL, None).await;
    store.fail(Operation::ForceRelease, Fault::ReplyLost);
    let broken = settle::force_release(&store, &n).await;
    assert_eq!(broken, ForceReleased::AnswerLost);
    assert!(broken.broke(lease.token()));
    assert!(!ForceReleased::Answered(None).broke(lease.token()));
    let next = settle::grant(&store, &n, TTL, Some(lease.token())).await;
    assert_eq!(
        settle::force_release(&store, &n).await,
        ForceReleased::Answered(Some(next.token()))
    );
}

#[tokio::test(start_paused = true)]
async fn renew_many_asks_again_while_an_answer_is_transient() {
    let store = Scripted::default();
    let a = settle::grant(&store, &name("many-a"), TTL, None).await;
    let b = settle::grant(&store, &name("many-b"), TTL, None).await;
    store.inner.release(&b).await.unwrap();
    store.fail(Operation::Renew, Fault::ReplyLost);
    let answers = settle::renew_many(&store, &[a.clone(), b.clone()], TTL).await;
    assert!(store.script_done());
    assert_eq!(answers[0].as_ref().unwrap().token(), a.token());
    assert_eq!(
        answers[1].as_ref().unwrap_err().kind(),
        ErrorKind::LeaseLost
    );
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "still no definite answer after 10s")]
async fn answers_transient_for_longer_than_the_patience_fail_the_test() {
    let store = Scripted::default();
    for _ in 0..10_000 {
        store.fail(Operation::Inspect, Fault::Refused);
    }
    settle::inspect(&store, &name("patience")).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "must be granted, but it is held")]
async fn a_held_name_fails_a_grant() {
    let store = Scripted::default();
    let n = name("held");
    let _held = settle::grant(&store, &n, TTL, None).await;
    settle::grant(&store, &n, TTL, None).await;
}
