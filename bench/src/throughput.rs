//! Throughput under concurrency: many tasks, each looping acquire + release on its own name,
//! ours and the raw floor in alternating slices so both see the same machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cycle::Cycle;
use crate::error::Result;
use crate::stats::Summary;

/// Throughput of one variant.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Throughput {
    /// Completed cycles per second.
    pub ops_per_sec: f64,
    /// Latency of one cycle under this load.
    pub latency: Summary,
    /// `[tasks, cycles per second]` at fewer tasks too (shorter runs), ending with the full
    /// count: the throughput-vs-tasks curve (empty in runs saved before it was measured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_tasks: Vec<[f64; 2]>,
}

/// Runs `tasks` concurrent loops of `cycle` (called with the task's index, so each task keeps
/// its own name) for `slice`; returns completed cycles, their latencies and the time taken.
pub async fn slice(
    cycle: &Cycle,
    tasks: usize,
    slice: Duration,
) -> Result<(usize, Vec<Duration>, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let (cycle, stop) = (Arc::clone(cycle), Arc::clone(&stop));
        handles.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                cycle(task as u64).await?;
                samples.push(t.elapsed());
            }
            Ok::<_, crate::BenchError>(samples)
        }));
    }
    tokio::time::sleep(slice).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await??);
    }
    Ok((all.len(), all, started.elapsed()))
}

/// Alternates slices of each variant until each ran for `total`; returns one result per
/// variant, in order.
pub async fn alternating(
    variants: &[Cycle],
    tasks: usize,
    total: Duration,
    each: Duration,
) -> Result<Vec<Throughput>> {
    // Warm-up: one short slice each (connections, prepared statements, scripts).
    for cycle in variants {
        slice(cycle, tasks, each.min(Duration::from_millis(200))).await?;
    }
    let rounds = (total.as_secs_f64() / each.as_secs_f64()).ceil().max(1.0) as usize;
    let mut done = vec![(0usize, Vec::new(), Duration::ZERO); variants.len()];
    for _ in 0..rounds {
        for (cycle, acc) in variants.iter().zip(done.iter_mut()) {
            let (n, samples, took) = slice(cycle, tasks, each).await?;
            acc.0 += n;
            acc.1.extend(samples);
            acc.2 += took;
        }
    }
    Ok(done
        .into_iter()
        .map(|(n, samples, took)| Throughput {
            ops_per_sec: n as f64 / took.as_secs_f64(),
            latency: Summary::of(&samples),
            by_tasks: Vec::new(),
        })
        .collect())
}

/// The task counts below `tasks` the sweep also measures: 1, 4, 16, … (powers of 4).
pub fn sweep_counts(tasks: usize) -> Vec<usize> {
    std::iter::successors(Some(1usize), |n| n.checked_mul(4))
        .take_while(|&n| n < tasks)
        .collect()
}

/// [`alternating`] at `tasks`, then at each of [`sweep_counts`] for two slices per variant,
/// filling [`Throughput::by_tasks`].
pub async fn alternating_with_sweep(
    variants: &[Cycle],
    tasks: usize,
    total: Duration,
    each: Duration,
) -> Result<Vec<Throughput>> {
    let mut results = alternating(variants, tasks, total, each).await?;
    for n in sweep_counts(tasks) {
        let fewer = alternating(variants, n, each * 2, each).await?;
        for (result, at_n) in results.iter_mut().zip(fewer) {
            result.by_tasks.push([n as f64, at_n.ops_per_sec]);
        }
    }
    for result in &mut results {
        let full = [tasks as f64, result.ops_per_sec];
        result.by_tasks.push(full);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_counts_are_powers_of_four_below_the_full_count() {
        assert_eq!(sweep_counts(64), [1, 4, 16]);
        assert_eq!(sweep_counts(8), [1, 4]);
        assert_eq!(sweep_counts(1), Vec::<usize>::new());
    }
}
