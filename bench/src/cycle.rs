//! One benchmarked operation ("a cycle": e.g. acquire + release), and the interleaved runner
//! that times several of them against the same server in the same run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::stats::Summary;

/// The future of one cycle.
pub type CycleFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// An operation to time; called with the iteration number (for fresh names).
pub type Cycle = Arc<dyn Fn(u64) -> CycleFuture + Send + Sync>;

/// Wraps an async closure as a [`Cycle`].
pub fn cycle<F, Fut>(f: F) -> Cycle
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    Arc::new(move |i| Box::pin(f(i)))
}

/// What a variant is, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    /// fencelock through `Locker` (what users call): the headline.
    Ours,
    /// fencelock's store directly (no `Locker`, no watchdog task).
    OursStore,
    /// The raw floor: the same server work issued by hand.
    Raw,
    /// For reference (round trips, other designs).
    Reference,
    /// A peer library.
    Peer,
}

/// One timed variant.
pub struct Variant {
    /// Row label.
    pub label: String,
    /// What it is.
    pub role: Role,
    /// Runs only every `every`th iteration (reference rows, to keep the run short).
    pub every: usize,
    /// The operation.
    pub cycle: Cycle,
}

impl Variant {
    /// A variant timed on every iteration.
    pub fn new(label: impl Into<String>, role: Role, cycle: Cycle) -> Self {
        Self {
            label: label.into(),
            role,
            every: 1,
            cycle,
        }
    }

    /// Runs only every `every`th iteration.
    #[must_use]
    pub fn every(mut self, every: usize) -> Self {
        self.every = every.max(1);
        self
    }
}

/// A measured row.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// Row label.
    pub label: String,
    /// What it is.
    pub role: Role,
    /// Latency of one cycle.
    pub latency: Summary,
}

/// Warms every variant up, then times them interleaved — iteration `i` runs variant 1, 2, …
/// back to back — so that drift in machine load hits all of them alike. Iteration numbers are
/// unique per call, so each cycle can use a fresh name.
pub async fn interleaved(
    variants: &[Variant],
    warmup: usize,
    iterations: usize,
) -> Result<Vec<Row>> {
    let samples = samples(variants, warmup, iterations, 0).await?;
    Ok(variants
        .iter()
        .zip(samples)
        .map(|(v, s)| Row {
            label: v.label.clone(),
            role: v.role,
            latency: Summary::of(&s),
        })
        .collect())
}

/// [`interleaved`]'s raw samples, one list per variant; iteration numbers start at `first`
/// (so that several calls can keep names fresh).
pub async fn samples(
    variants: &[Variant],
    warmup: usize,
    iterations: usize,
    first: usize,
) -> Result<Vec<Vec<Duration>>> {
    for i in 0..warmup {
        for v in variants {
            if i % v.every == 0 {
                (v.cycle)((first + i) as u64).await?;
            }
        }
    }
    let mut samples: Vec<Vec<Duration>> = variants
        .iter()
        .map(|v| Vec::with_capacity(iterations / v.every + 1))
        .collect();
    for i in 0..iterations {
        let n = (first + warmup + i) as u64;
        for (v, out) in variants.iter().zip(samples.iter_mut()) {
            if i % v.every == 0 {
                let started = Instant::now();
                (v.cycle)(n).await?;
                out.push(started.elapsed());
            }
        }
    }
    Ok(samples)
}
