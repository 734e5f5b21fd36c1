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
        })
        .collect())
}
