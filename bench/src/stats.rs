//! Latency samples and their percentiles, computed one way for ours, the raw floors and peers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// p50, p99 and mean of a set of latency samples, in microseconds, and enough of their
/// distribution to draw it (`docs/bench/*.svg`).
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
    /// The distribution (none in runs saved before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdf: Option<Cdf>,
}

/// How many quantiles a [`Cdf`] keeps: 0 %, 1 %, … 98 %, then 99 %, 99.5 %, 99.9 % and 100 %.
pub const CDF_LEN: usize = 103;

/// A latency distribution: the latency (µs) at each of [`CDF_LEN`] fixed quantiles, enough
/// to draw it. Saved as `[[quantile, µs], …]`; a fixed array keeps [`Summary`] `Copy`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cdf(pub [f64; CDF_LEN]);

impl Cdf {
    /// The `i`-th quantile kept (0 ≤ i < [`CDF_LEN`]).
    pub fn quantile(i: usize) -> f64 {
        const TAIL: [f64; 4] = [0.99, 0.995, 0.999, 1.0];
        match i {
            0..99 => i as f64 / 100.0,
            _ => TAIL[(i - 99).min(TAIL.len() - 1)],
        }
    }

    /// `(quantile, µs)` pairs, in order.
    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .map(|(i, &us)| (Self::quantile(i), us))
    }
}

impl Serialize for Cdf {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.points().map(|(q, us)| [q, us]))
    }
}

impl<'de> Deserialize<'de> for Cdf {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = Vec::<[f64; 2]>::deserialize(deserializer)?;
        let mut values = [0.0; CDF_LEN];
        if pairs.len() != CDF_LEN {
            return Err(serde::de::Error::invalid_length(
                pairs.len(),
                &"103 [quantile, µs] pairs",
            ));
        }
        for (i, ([q, us], value)) in pairs.into_iter().zip(&mut values).enumerate() {
            if (q - Self::quantile(i)).abs() > 1e-9 {
                return Err(serde::de::Error::custom(format!(
                    "cdf point {i} is at quantile {q}, expected {}",
                    Self::quantile(i)
                )));
            }
            *value = us;
        }
        Ok(Self(values))
    }
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
            cdf: Some(Cdf(std::array::from_fn(|i| at(Cdf::quantile(i))))),
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
        let cdf: Vec<(f64, f64)> = s.cdf.unwrap().points().collect();
        assert_eq!(cdf.len(), CDF_LEN);
        assert_eq!(cdf[0], (0.0, 1.0));
        assert_eq!(cdf[50], (0.5, s.p50_us));
        assert_eq!(cdf[99], (0.99, s.p99_us));
        assert_eq!(cdf[102], (1.0, 100.0));
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(Summary::of_micros(vec![]).n, 0);
        assert!(Summary::of_micros(vec![]).cdf.is_none());
    }

    #[test]
    fn cdf_round_trips_as_quantile_pairs_and_old_runs_read_without_one() {
        let s = Summary::of_micros((1..=1000).map(f64::from).collect());
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"cdf\":[[0.0,1.0],[0.01,11.0]"), "{json}");
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
        let old = r#"{"n":1,"p50_us":2.0,"p99_us":3.0,"mean_us":2.5}"#;
        assert_eq!(serde_json::from_str::<Summary>(old).unwrap().cdf, None);
        let short = r#"{"n":1,"p50_us":2.0,"p99_us":3.0,"mean_us":2.5,"cdf":[[0.0,1.0]]}"#;
        assert!(serde_json::from_str::<Summary>(short).is_err());
    }
}
