//! The arithmetic of the report: latency percentiles from HDR histograms,
//! shares, and Jain's fairness index.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in milliseconds, 1 ms to 1 hour, 3 significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000, 3)?)
}

/// Records `ms` (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, ms: u64) {
    h.saturating_record(ms.clamp(1, 3_600_000));
}

/// The figures of one latency distribution.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: h.value_at_quantile(0.50),
            p95_ms: h.value_at_quantile(0.95),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
        }
    }
}

/// Jain's fairness index of `x` (1 = perfectly even, 1/n = one takes all).
/// `None` with fewer than two values or when all are zero.
pub fn jain(x: &[f64]) -> Option<f64> {
    if x.len() < 2 {
        return None;
    }
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    (squares > 0.0).then(|| sum * sum / (x.len() as f64 * squares))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_for_equal_shares_and_one_over_n_when_one_takes_all() {
        assert_eq!(jain(&[2.0, 2.0, 2.0]), Some(1.0));
        assert!((jain(&[1.0, 0.0, 0.0, 0.0]).unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(jain(&[5.0]), None);
    }

    #[test]
    fn percentiles_of_an_empty_histogram_are_zero() {
        assert_eq!(Percentiles::of(&histogram().unwrap()).count, 0);
    }

    #[test]
    fn percentiles_read_the_recorded_values() {
        let mut h = histogram().unwrap();
        for ms in 1..=100 {
            record(&mut h, ms);
        }
        let p = Percentiles::of(&h);
        assert_eq!((p.count, p.p50_ms, p.p99_ms, p.max_ms), (100, 50, 99, 100));
    }
}
