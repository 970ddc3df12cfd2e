//! Latency samples and the figures printed from them.

use std::time::Duration;

/// Latencies of one variant, in the order they were taken.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Adds one latency.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// How many latencies.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds every latency of `other`.
    pub fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }

    /// The `q`-quantile (0..=1) in microseconds, nearest rank; NaN when empty.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1].as_secs_f64() * 1e6
    }

    /// Median in microseconds.
    pub fn p50(&self) -> f64 {
        self.quantile_us(0.50)
    }

    /// 99th percentile in microseconds.
    pub fn p99(&self) -> f64 {
        self.quantile_us(0.99)
    }
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}
