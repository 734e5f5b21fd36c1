//! The fence tier as a list of cases, for running them by hand: against a fence with a planted
//! bug, say, where the test is that some case fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::FenceCtx;

/// A running fence case.
pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One case of the fence tier: its name and how to run it on a context. A case that finds a
/// violation panics, as in the tests [`fence_suite!`](crate::fence_suite) stamps out.
#[derive(Clone, Copy, Debug)]
pub struct FenceCase {
    /// The case's name, as in `# Behavior` of `fencelock_core::Fence`.
    pub name: &'static str,
    /// Runs the case.
    pub run: fn(Arc<FenceCtx>) -> CaseFuture,
}

/// The cases `fence_suite!(fixture, in_process)` stamps out: every fence case but
/// `fence_dead_store_never_accepted`, which needs a store that can be down.
pub fn fence_cases() -> Vec<FenceCase> {
    crate::for_each_fence_case!(__fence_case_list!(()))
}

#[doc(hidden)]
#[macro_export]
macro_rules! __fence_case_list {
    (($($unused:tt)*); $($case:ident),* $(,)?) => {
        vec![$(
            $crate::FenceCase {
                name: stringify!($case),
                run: |cx| Box::pin(async move { $crate::cases::$case(&cx).await }),
            },
        )*]
    };
}
