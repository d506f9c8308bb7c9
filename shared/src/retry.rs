//! Retry policy as data plus pure functions: the schedule (exponential from a
//! first delay, capped, optionally with seeded jitter), the limits (attempts,
//! age, the longest Retry-After honoured) and what follows a failed attempt.
//!
//! Both workers use it: the sender for a failed send (jitter seeded from the
//! message id, so a decision is reproducible yet replicas that fail together
//! spread their retries), the router for its in-place retries. Nothing here
//! sleeps, reads a clock or touches a network, so every branch is tested
//! without them. The schedule is backon's `ExponentialBuilder`, used only as a
//! pure iterator of delays; backon's retry loop does not fit, because a retry
//! here is a decision about a message (put back in its lane, or retried in
//! place under keep-alives), not a loop around one future.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

/// A retry schedule and its limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt (before jitter).
    pub min_delay: Duration,
    /// The largest wait before jitter; jitter adds up to as much again.
    pub max_delay: Duration,
    /// Growth per attempt (1 keeps the wait fixed).
    pub factor: f32,
    /// Whether up to 100 % of the wait is added at random (seeded).
    pub jitter: bool,
    /// Attempts that may fail before giving up.
    pub max_attempts: u32,
    /// No retry is scheduled past this age.
    pub max_age: Duration,
    /// The longest Retry-After honoured; a larger one is clamped.
    pub max_retry_after: Duration,
}

/// A stable jitter seed from a message id (FNV-1a), so a decision is
/// reproducible yet the held messages of a process spread their retries.
pub fn jitter_seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Where a message stands when one of its attempts failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptContext {
    /// Attempts spent so far, this one included (1 after the first try).
    pub attempt: u32,
    /// Time since the message was first accepted.
    pub age: Duration,
    /// Seed for the jitter; derive it from the message id.
    pub jitter_seed: u64,
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAttempt {
    /// Try again after `delay`; `attempt` is the number the next try carries.
    Retry { delay: Duration, attempt: u32 },
    /// Give up: a limit was reached.
    GiveUp(Exhausted),
}

/// The limit that ended the retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// `attempts` failed tries, the limit.
    Attempts { attempts: u32 },
    /// The next retry would fall past the age limit.
    Age { age: Duration },
}

impl RetryPolicy {
    /// Doubling from `min_delay` up to `max_delay`, no jitter, no limits.
    pub const fn exponential(min_delay: Duration, max_delay: Duration) -> Self {
        Self {
            min_delay,
            max_delay,
            factor: 2.0,
            jitter: false,
            max_attempts: u32::MAX,
            max_age: Duration::MAX,
            max_retry_after: max_delay,
        }
    }

    /// The same wait after every attempt, no jitter, no limits.
    pub const fn fixed(delay: Duration) -> Self {
        let mut policy = Self::exponential(delay, delay);
        policy.factor = 1.0;
        policy
    }

    /// The wait after failed attempt number `attempt` (1-based): from
    /// `min_delay`, growing by `factor`, capped at `max_delay`, plus up to
    /// 100 % jitter when enabled; never shorter than the provider's
    /// Retry-After (itself capped at `max_retry_after`).
    pub fn retry_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter_seed: u64,
    ) -> Duration {
        let step = usize::try_from(attempt.max(1) - 1).unwrap_or(usize::MAX);
        let mut schedule = ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_jitter_seed(jitter_seed)
            .without_max_times();
        if self.jitter {
            schedule = schedule.with_jitter();
        }
        let backoff = schedule.build().nth(step).unwrap_or(self.max_delay);
        match retry_after {
            Some(asked) => backoff.max(self.clamp_retry_after(asked)),
            None => backoff,
        }
    }

    /// A wait the other side asked for, within `max_retry_after`.
    pub fn clamp_retry_after(&self, asked: Duration) -> Duration {
        asked.min(self.max_retry_after)
    }

    /// After a failed attempt: retry with backoff while attempts and age allow.
    pub fn after_failure(
        &self,
        failed: AttemptContext,
        retry_after: Option<Duration>,
    ) -> NextAttempt {
        if failed.attempt >= self.max_attempts {
            return NextAttempt::GiveUp(Exhausted::Attempts {
                attempts: failed.attempt,
            });
        }
        let delay = self.retry_delay(failed.attempt, retry_after, failed.jitter_seed);
        if failed.age.saturating_add(delay) > self.max_age {
            return NextAttempt::GiveUp(Exhausted::Age { age: failed.age });
        }
        NextAttempt::Retry {
            delay,
            attempt: failed.attempt + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sender's defaults: 2 s doubling to 5 min with jitter, 8 attempts, 1 h.
    fn policy() -> RetryPolicy {
        RetryPolicy {
            jitter: true,
            max_attempts: 8,
            max_age: Duration::from_secs(3600),
            ..RetryPolicy::exponential(Duration::from_secs(2), Duration::from_secs(300))
        }
    }

    fn failed(attempt: u32, age_secs: u64) -> AttemptContext {
        AttemptContext {
            attempt,
            age: Duration::from_secs(age_secs),
            jitter_seed: 42,
        }
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_bounded_jitter() {
        let p = policy();
        for attempt in 1..=12u32 {
            let base = p
                .min_delay
                .saturating_mul(2u32.saturating_pow(attempt - 1))
                .min(p.max_delay);
            for seed in 0..50 {
                let d = p.retry_delay(attempt, None, seed);
                assert!(
                    d >= base && d <= base * 2,
                    "attempt {attempt}: {d:?} vs {base:?}"
                );
            }
        }
    }

    #[test]
    fn jitter_is_reproducible_per_seed_and_spreads_across_seeds() {
        let p = policy();
        assert_eq!(p.retry_delay(3, None, 7), p.retry_delay(3, None, 7));
        let distinct: std::collections::HashSet<Duration> =
            (0..20).map(|seed| p.retry_delay(3, None, seed)).collect();
        assert!(distinct.len() > 15);
    }

    #[test]
    fn a_retry_after_longer_than_the_backoff_wins_and_is_capped() {
        let p = policy();
        assert_eq!(
            p.retry_delay(1, Some(Duration::from_secs(90)), 1),
            Duration::from_secs(90)
        );
        assert_eq!(
            p.retry_delay(1, Some(Duration::from_secs(10_000)), 1),
            Duration::from_secs(300)
        );
        let short = p.retry_delay(1, Some(Duration::from_millis(1)), 1);
        assert!(short >= p.min_delay);
    }

    #[test]
    fn without_jitter_the_wait_doubles_exactly_up_to_the_cap() {
        let base = Duration::from_millis(500);
        let p = RetryPolicy::exponential(base * 2, base * 64);
        for attempt in 1..=10u32 {
            let expected = base.saturating_mul(1 << attempt.min(6));
            for seed in [0, 1, 99] {
                assert_eq!(p.retry_delay(attempt, None, seed), expected, "{attempt}");
            }
        }
    }

    #[test]
    fn a_fixed_policy_waits_the_same_after_every_attempt() {
        let p = RetryPolicy::fixed(Duration::from_millis(500));
        for attempt in [1, 2, 7, 40] {
            assert_eq!(p.retry_delay(attempt, None, 3), Duration::from_millis(500));
        }
    }

    #[test]
    fn a_failure_before_the_limits_is_retried_with_the_next_attempt_number() {
        let NextAttempt::Retry { delay, attempt } = policy().after_failure(failed(1, 10), None)
        else {
            panic!("expected a retry");
        };
        assert_eq!(attempt, 2);
        assert!(delay >= Duration::from_secs(2) && delay < Duration::from_secs(4));
    }

    #[test]
    fn at_the_attempt_limit_the_retries_end() {
        assert_eq!(
            policy().after_failure(failed(8, 10), None),
            NextAttempt::GiveUp(Exhausted::Attempts { attempts: 8 })
        );
        assert!(matches!(
            policy().after_failure(failed(7, 10), None),
            NextAttempt::Retry { attempt: 8, .. }
        ));
    }

    #[test]
    fn a_retry_that_would_land_past_the_age_limit_ends_the_retries() {
        assert_eq!(
            policy().after_failure(failed(2, 3599), None),
            NextAttempt::GiveUp(Exhausted::Age {
                age: Duration::from_secs(3599)
            })
        );
    }

    #[test]
    fn without_limits_a_policy_retries_forever() {
        let p = RetryPolicy::exponential(Duration::from_millis(200), Duration::from_secs(2));
        assert_eq!(
            p.after_failure(failed(1_000, 86_400), None),
            NextAttempt::Retry {
                delay: Duration::from_secs(2),
                attempt: 1_001
            }
        );
    }
}
