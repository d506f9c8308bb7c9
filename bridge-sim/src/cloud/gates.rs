//! Meta's three send gates as small pure pieces, so each can be tested
//! without a clock: the customer-service window, the pair rate (a token
//! bucket per number and user) and the number's throughput (a sliding window).

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

/// Whether a free-form message may go out: the user wrote within `window`.
pub(crate) fn window_open(last_inbound: Option<Instant>, now: Instant, window: Duration) -> bool {
    last_inbound.is_some_and(|at| now.saturating_duration_since(at) < window)
}

/// The pair-rate bucket of one (number, user): `burst` tokens, one more per `interval`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairBucket {
    tokens: f64,
    at: Instant,
}

impl PairBucket {
    pub fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant, interval: Duration, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let per_token = interval.as_secs_f64().max(f64::EPSILON);
        self.tokens = (self.tokens + elapsed / per_token).min(f64::from(burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts one send against `mps` per `window`, given the accepted sends' times.
pub(crate) fn throughput_take(
    recent: &mut VecDeque<Instant>,
    now: Instant,
    window: Duration,
    mps: u32,
) -> bool {
    while recent
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        recent.pop_front();
    }
    if recent.len() >= usize::try_from(mps).unwrap_or(usize::MAX) {
        return false;
    }
    recent.push_back(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_open_only_after_an_inbound_and_until_it_ages_out() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        assert!(!window_open(None, t0, w));
        assert!(window_open(Some(t0), t0 + Duration::from_secs(9), w));
        assert!(!window_open(Some(t0), t0 + w, w));
    }

    #[test]
    fn the_pair_bucket_allows_a_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let i = Duration::from_secs(6);
        let mut b = PairBucket::full(2, t0);
        assert!(b.take(t0, i, 2));
        assert!(b.take(t0, i, 2));
        assert!(!b.take(t0, i, 2));
        assert!(!b.take(t0 + Duration::from_secs(5), i, 2));
        assert!(b.take(t0 + Duration::from_secs(6), i, 2));
    }

    #[test]
    fn throughput_counts_within_the_sliding_window() {
        let t0 = Instant::now();
        let w = Duration::from_secs(1);
        let mut recent = VecDeque::new();
        assert!(throughput_take(&mut recent, t0, w, 2));
        assert!(throughput_take(&mut recent, t0, w, 2));
        assert!(!throughput_take(
            &mut recent,
            t0 + Duration::from_millis(999),
            w,
            2
        ));
        assert!(throughput_take(&mut recent, t0 + w, w, 2));
    }
}
