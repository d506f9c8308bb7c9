//! A token bucket kept as one instant (GCRA, the generic cell rate algorithm).
//!
//! Instead of a token count that must be refilled, the bucket stores the
//! *theoretical arrival time* of the next token. Everything is integer
//! arithmetic on instants, so "when is the next token?" has an exact answer:
//! the scheduler can report a wake-up instant at which a token really is
//! there, never one a rounding error short of it (which would busy-loop).

use std::time::Duration;

use tokio::time::Instant;

/// One minute in nanoseconds: every rate here is "per minute".
const MINUTE_NANOS: u128 = 60_000_000_000;

/// A rate limit: `per_minute` tokens a minute, at most `burst` at once.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Time between two tokens; `None` when the rate is zero (never a token).
    interval: Option<Duration>,
    /// Bucket size; at least 1.
    burst: u32,
    /// When the bucket is next "empty again"; `None` means full.
    tat: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket. A `burst` of 0 is treated as 1 (a bucket must hold the
    /// token it hands out); a rate of 0 never gives a token.
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        Self {
            interval: interval(per_minute),
            burst: burst.max(1),
            tat: None,
        }
    }

    /// Changes the rate and size, keeping what has been spent: a tenant whose
    /// plan changes does not get a fresh burst out of it.
    pub fn reconfigure(&mut self, per_minute: u32, burst: u32) {
        self.interval = interval(per_minute);
        self.burst = burst.max(1);
    }

    /// The earliest instant at which a token can be taken: `now` or earlier
    /// when one is there, `None` when the rate is zero.
    pub fn ready_at(&self, now: Instant) -> Option<Instant> {
        self.ready_at_holding(now, 1)
    }

    /// The earliest instant at which the bucket holds `tokens` (at most its
    /// `burst`; at least 1), `None` when the rate is zero.
    pub fn ready_at_holding(&self, now: Instant, tokens: u32) -> Option<Instant> {
        let interval = self.interval?;
        let Some(tat) = self.tat else {
            return Some(now);
        };
        // Holding k tokens when tat <= now + (burst - k) * interval.
        let tokens = tokens.clamp(1, self.burst);
        let slack = interval.saturating_mul(self.burst - tokens);
        Some(tat.checked_sub(slack).unwrap_or(now))
    }

    /// Whether a token is there at `now`.
    pub fn has_token(&self, now: Instant) -> bool {
        self.ready_at(now).is_some_and(|at| at <= now)
    }

    /// Takes a token if one is there at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let Some(interval) = self.interval else {
            return false;
        };
        if !self.has_token(now) {
            return false;
        }
        let base = self.tat.map_or(now, |tat| tat.max(now));
        self.tat = Some(base + interval);
        true
    }

    /// Gives back one token taken earlier (a send that never reached the
    /// provider). Never makes the bucket hold more than `burst`.
    pub fn refund(&mut self) {
        let (Some(interval), Some(tat)) = (self.interval, self.tat) else {
            return;
        };
        // Below `now` the next `try_take` clamps to `now`, so an early refund
        // cannot buy more than a full bucket.
        self.tat = tat.checked_sub(interval);
    }
}

/// The gap between tokens, rounded up so the rate is never exceeded.
fn interval(per_minute: u32) -> Option<Duration> {
    if per_minute == 0 {
        return None;
    }
    let nanos = MINUTE_NANOS.div_ceil(u128::from(per_minute));
    Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken_within(bucket: &mut TokenBucket, start: Instant, span: Duration) -> u32 {
        let step = Duration::from_millis(10);
        let mut now = start;
        let mut taken = 0;
        while now < start + span {
            while bucket.try_take(now) {
                taken += 1;
            }
            now += step;
        }
        taken
    }

    #[test]
    fn a_full_bucket_gives_its_burst_at_once_then_paces() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_minute(60, 5);
        for _ in 0..5 {
            assert!(bucket.try_take(start));
        }
        assert!(!bucket.try_take(start));
        assert_eq!(bucket.ready_at(start), Some(start + Duration::from_secs(1)));
        assert!(bucket.try_take(start + Duration::from_secs(1)));
    }

    #[test]
    fn over_a_minute_it_gives_burst_plus_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_minute(120, 10);
        let taken = taken_within(&mut bucket, start, Duration::from_secs(60));
        // 10 at once, then one every 500 ms for the remaining 59.99 s.
        assert!((129..=130).contains(&taken), "{taken}");
    }

    #[test]
    fn ready_at_is_exactly_when_a_token_is_there() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_minute(7, 1);
        assert!(bucket.try_take(start));
        let at = bucket.ready_at(start).unwrap();
        assert!(!bucket.has_token(at - Duration::from_nanos(1)));
        assert!(bucket.has_token(at));
    }

    #[test]
    fn a_zero_rate_never_gives_a_token() {
        let bucket = TokenBucket::per_minute(0, 10);
        assert_eq!(bucket.ready_at(Instant::now()), None);
    }

    #[test]
    fn a_refund_gives_back_one_token_but_never_more_than_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_minute(60, 2);
        assert!(bucket.try_take(start));
        assert!(bucket.try_take(start));
        bucket.refund();
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start));

        let later = start + Duration::from_secs(3600);
        bucket.refund();
        bucket.refund();
        assert!(bucket.try_take(later));
        assert!(bucket.try_take(later));
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn reconfiguring_keeps_what_was_spent() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_minute(60, 3);
        for _ in 0..3 {
            assert!(bucket.try_take(start));
        }
        bucket.reconfigure(60, 10);
        // The new size allows more at once, but the spent tokens are still spent.
        assert!(bucket.try_take(start));
        bucket.reconfigure(60, 1);
        assert!(!bucket.try_take(start));
    }
}
