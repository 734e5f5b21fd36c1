#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cases;
mod fence_fixture;
mod fence_list;
mod fixture;
pub mod harness;
pub mod history;
pub mod planted;
pub mod settle;

pub use fence_fixture::{FenceCtx, FenceFixture};
pub use fence_list::{CaseFuture, FenceCase, fence_cases};
pub use fixture::{Ctx, Fixture};

/// Runs one case on its own multi-threaded runtime (two workers), for the tests the suite
/// macros stamp out: the caller's crate needs no `tokio` dependency of its own.
#[doc(hidden)]
pub fn __run_case<F: std::future::Future<Output = ()>>(case: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the case")
        .block_on(case);
}

/// Every conformance case, in one list: `for_each_case!(callback!)` calls
/// `callback!(case1, case2, …)`. Used by [`conformance_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_case {
    ($callback:ident ! $args:tt) => {
        $crate::$callback! { $args;
            acquire_grants_when_free,
            acquire_is_exclusive,
            exclusive_until_local_deadline,
            concurrent_acquire_single_winner,
            tokens_increase_across_release,
            tokens_increase_across_expiry,
            renew_extends,
            renew_after_expiry_is_lost,
            renew_with_forged_holder_is_lost,
            renew_many_answers_each_lease,
            stale_release_never_frees_newer_holder,
            double_release_is_reported,
            ttl_validation,
            name_validation,
            hostile_names_round_trip_and_stay_isolated,
            inspect_reports_holder_and_remaining,
            label_round_trips,
            label_validation,
            list_sees_exactly_held_locks_under_prefix,
            list_prefix_is_literal,
            force_release_frees_and_reports_token,
            waiter_acquires_after_release,
            waiter_times_out,
            dropped_waiter_leaves_nothing_held,
            watchdog_keeps_lease_alive,
            lost_signal_fires_when_store_loses_lease,
            guarded_run_cancels_on_loss,
            diagnose_reports_findings,
            leader_reports_label_and_term,
            resigned_term_is_never_reused,
            observe_reports_leader_changes_in_order,
            contention_stress_no_stale_write_accepted,
        }
    };
}

/// Every semaphore case, in one list (see [`semaphore_suite!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_semaphore_case {
    ($callback:ident ! $args:tt) => {
        $crate::$callback! { $args;
            permit_limit_validation,
            permit_limit_is_enforced,
            permit_limit_mismatch_is_invalid_input,
            permit_expiry_frees_a_place,
            permit_renew_and_release_touch_only_that_permit,
            inspect_permits_shows_each_holder,
            permit_full_answers_the_next_expiry,
            permit_waiter_acquires_after_release,
            permit_waiter_acquires_after_expiry,
            permit_guard_renews_and_reports_loss,
            permit_stress_never_more_than_limit,
        }
    };
}

/// Stamps out the semaphore cases (one per `# Behavior` bullet of the semaphore contract:
/// `LeaseStore::try_acquire_permit` and its kin, `Locker::semaphore`, `Semaphore`) as named
/// tests, for a store that offers semaphores. `$fixture` is as for [`conformance_suite!`].
#[macro_export]
macro_rules! semaphore_suite {
    ($fixture:path) => {
        $crate::for_each_semaphore_case!(__conformance_tests!($fixture));
    };
}

/// The names of the cases in a list, as `&[&str]`: `for_each_case!(__case_names!(()))`. For
/// the suite's own checks (every case is a documented bullet).
#[doc(hidden)]
#[macro_export]
macro_rules! __case_names {
    ($args:tt; $($case:ident),* $(,)?) => {
        &[$(stringify!($case)),*]
    };
}

/// Stamps out the whole conformance suite as named `#[tokio::test]`s, one per case, so that
/// failures are named and independent.
///
/// `$fixture` is a path to an `async fn() -> Fixture`, called once per case.
///
/// ```no_run
/// async fn memory() -> fencelock_conformance::Fixture {
///     fencelock_conformance::Fixture::new(fencelock_core::MemoryLeaseStore::new())
/// }
/// fencelock_conformance::conformance_suite!(memory);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:path) => {
        $crate::for_each_case!(__conformance_tests!($fixture));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (($fixture:path); $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__run_case(async {
                    let fixture = $fixture().await;
                    let cx = $crate::Ctx::new(fixture);
                    $crate::cases::$case(&cx).await;
                });
            }
        )*
    };
}

/// Every fence case that a fence with a store behind it passes, in one list (see
/// [`fence_suite!`]); `fence_dead_store_never_accepted` comes last.
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_fence_case {
    ($callback:ident ! $args:tt) => {
        $crate::$callback! { $args;
            fence_equal_token_admitted,
            fence_lower_token_rejected,
            fence_higher_token_raises_mark,
            fence_concurrent_writers_never_regress,
            fence_read_after_rejected_write_returns_accepted,
            fence_hostile_keys_and_values,
        }
    };
}

/// Stamps out the fence tier as named tests, one per `# Behavior` bullet of
/// [`fencelock_core::Fence`].
///
/// `$fixture` is a path to an `async fn() -> FenceFixture`, called once per case. A fence over
/// a real store also passes `fence_dead_store_never_accepted` (give the fixture a dead twin
/// with [`FenceFixture::with_dead`]); an in-process fence, which has no store to lose, says
/// `fence_suite!(fixture, in_process)` and that case is not stamped out.
///
/// ```no_run
/// async fn memory() -> fencelock_conformance::FenceFixture {
///     fencelock_conformance::FenceFixture::new(fencelock_core::FenceGate::new())
/// }
/// fencelock_conformance::fence_suite!(memory, in_process);
/// ```
#[macro_export]
macro_rules! fence_suite {
    ($fixture:path) => {
        $crate::for_each_fence_case!(__fence_tests!($fixture));
        $crate::__fence_tests!(($fixture); fence_dead_store_never_accepted);
    };
    ($fixture:path, in_process) => {
        $crate::for_each_fence_case!(__fence_tests!($fixture));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __fence_tests {
    (($fixture:path); $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::__run_case(async {
                    let fixture = $fixture().await;
                    let cx = $crate::FenceCtx::new(fixture);
                    $crate::cases::$case(&cx).await;
                });
            }
        )*
    };
}
