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

/// Warms every variant up, then times them interleaved — each iteration runs every variant
/// due in it once, back to back, in an order shuffled per iteration — so that drift in machine
/// load hits all of them alike, and none always runs right after the same neighbour (on these
/// machines the operation just before shifts a cycle's latency by 10–20 µs). Iteration numbers
/// are unique per call, so each cycle can use a fresh name.
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
    let mut order = Order::new(variants.len());
    for i in 0..warmup {
        for &k in order.next(variants, i) {
            (variants[k].cycle)((first + i) as u64).await?;
        }
    }
    let mut samples: Vec<Vec<Duration>> = variants
        .iter()
        .map(|v| Vec::with_capacity(iterations / v.every + 1))
        .collect();
    for i in 0..iterations {
        let n = (first + warmup + i) as u64;
        for &k in order.next(variants, i) {
            let started = Instant::now();
            (variants[k].cycle)(n).await?;
            samples[k].push(started.elapsed());
        }
    }
    Ok(samples)
}

/// The order variants run in within each iteration: those due, shuffled by a fixed-seed
/// generator (the same sequence every run).
struct Order {
    state: u64,
    due: Vec<usize>,
}

impl Order {
    fn new(capacity: usize) -> Self {
        Self {
            state: 0x5eed_f00d_cafe_d00d,
            due: Vec::with_capacity(capacity),
        }
    }

    /// The variants due in iteration `i`, in a fresh random order.
    fn next(&mut self, variants: &[Variant], i: usize) -> &[usize] {
        self.due.clear();
        self.due
            .extend((0..variants.len()).filter(|&k| i.is_multiple_of(variants[k].every)));
        for k in (1..self.due.len()).rev() {
            let j = (self.random() % (k as u64 + 1)) as usize;
            self.due.swap(k, j);
        }
        &self.due
    }

    /// splitmix64.
    fn random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(every: usize) -> Variant {
        Variant::new("v", Role::Reference, cycle(|_| async { Ok(()) })).every(every)
    }

    #[test]
    fn every_order_runs_each_due_variant_once_and_no_variant_always_leads() {
        let variants: Vec<Variant> = [1, 1, 1, 5].into_iter().map(variant).collect();
        let mut order = Order::new(variants.len());
        let mut led = [0usize; 4];
        for i in 0..1_000 {
            let mut due = order.next(&variants, i).to_vec();
            led[due[0]] += 1;
            due.sort_unstable();
            let expected: Vec<usize> = if i % 5 == 0 {
                vec![0, 1, 2, 3]
            } else {
                vec![0, 1, 2]
            };
            assert_eq!(due, expected, "iteration {i}");
        }
        for (k, &n) in led[..3].iter().enumerate() {
            assert!(
                (250..=420).contains(&n),
                "variant {k} led {n} of 1000 iterations"
            );
        }
    }
}
