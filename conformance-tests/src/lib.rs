#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cases;
mod fixture;
pub mod harness;
pub mod history;
pub mod settle;

pub use fixture::{Ctx, Fixture};

/// Every conformance case, in one list: `for_each_case!(callback!)` calls
/// `callback!(case1, case2, …)`. Used by [`conformance_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_case {
    ($callback:ident ! $args:tt) => {
        $crate::$callback! { $args;
            acquire_grants_when_free,
            acquire_is_exclusive,
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
            force_release_frees_and_reports_token,
            waiter_acquires_after_release,
            waiter_times_out,
            dropped_waiter_leaves_nothing_held,
            watchdog_keeps_lease_alive,
            lost_signal_fires_when_store_loses_lease,
            guarded_run_cancels_on_loss,
            contention_stress_no_stale_write_accepted,
        }
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
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture().await;
                let cx = $crate::Ctx::new(fixture);
                $crate::cases::$case(&cx).await;
            }
        )*
    };
}
