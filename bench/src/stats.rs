//! Latency samples and their percentiles, computed one way for ours, the raw floors and peers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// p50, p99 and mean of a set of latency samples, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Summary {
    /// Summarizes samples given in microseconds (nearest rank at `(n - 1) * q`).
    pub fn of_micros(mut samples: Vec<f64>) -> Self {
        samples.retain(|s| s.is_finite());
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let index = ((samples.len() - 1) as f64 * q).round() as usize;
            samples.get(index).copied().unwrap_or(f64::NAN)
        };
        Self {
            n: samples.len(),
            p50_us: at(0.5),
            p99_us: at(0.99),
            mean_us: samples.iter().sum::<f64>() / samples.len() as f64,
        }
    }

    /// Summarizes durations.
    pub fn of(samples: &[Duration]) -> Self {
        Self::of_micros(samples.iter().map(|d| d.as_secs_f64() * 1e6).collect())
    }

    /// Sequential operations per second implied by the mean (one connection, one at a time).
    pub fn sequential_ops_per_sec(&self) -> f64 {
        if self.mean_us > 0.0 {
            1e6 / self.mean_us
        } else {
            0.0
        }
    }
}

/// `ours / floor`, or NaN when the floor is missing.
pub fn ratio(ours: f64, floor: f64) -> f64 {
    if floor > 0.0 { ours / floor } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s = Summary::of_micros((1..=100).map(f64::from).collect());
        assert_eq!(s.n, 100);
        assert_eq!(s.p50_us, 51.0); // index round(99 * 0.5) = 50
        assert_eq!(s.p99_us, 99.0); // index round(99 * 0.99) = 98
        assert!((s.mean_us - 50.5).abs() < 1e-9);
        assert_eq!(Summary::of_micros(vec![]).n, 0);
    }
}
